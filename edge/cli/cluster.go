package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/control"
)

func newClusterCmd() *cobra.Command { return newClusterCmdEnv(defaultOpsEnv()) }

func newClusterCmdEnv(env opsEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "The cluster of edges: members, who reaches the cloud, replication; keys",
		Long: `cluster shows this edge's view of its cluster (docs/cluster.md) and makes cluster keys.
Edges of a cluster share what they learned from the cloud and forward through each other when
their own WAN link is down.`,
		Args: cacheArgs(cobra.NoArgs),
	}
	var socket, output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the members, their state, who reaches the cloud and the replication counters",
		Long: `status asks the running mxedge for its view of the cluster: every member with its state
(alive, suspect), whether it reaches the cloud, its RadSec listener, and the replication counters
(records merged from peers, conflicts lost to newer decisions, anti-entropy rounds, the lag from a
decision on one edge to its merge here). -o json prints the mxedge.cluster.v1 document
(docs/cluster.md).

Exit status: 0 printed; 1 the daemon runs without a cluster, or is not running.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := dialDaemon(socket, env).Cluster(cmd.Context())
			if err != nil {
				var re *control.RemoteError
				if errors.As(err, &re) && re.Status == 503 {
					return errors.New("cluster: this edge is not in a cluster (cluster.enabled is off)")
				}
				return notRunning(socket, err)
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				_, err := out.Write(append(bytes.TrimSpace(raw), '\n'))
				return err
			case "", "text":
				var st edge.ClusterStatus
				if err := json.Unmarshal(raw, &st); err != nil {
					return fmt.Errorf("cluster: decode the daemon's answer: %w", err)
				}
				return writeClusterStatus(out, st)
			}
			return fmt.Errorf("%w: -o %q: want text or json", ErrUsage, output)
		},
	}
	status.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	status.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")

	var file string
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Make a cluster key (32 random octets, base64) for cluster.key_files",
		Long: `keygen writes a new AES-256 cluster key, base64 on one line, to the file given with -f
(created 0600, never overwritten) or to standard output. Copy the same file to every edge of the
cluster and list it under cluster.key_files. To rotate: add the new file on every edge as the
second key, reload, move it first, reload, then remove the old one.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return err
			}
			line := base64.StdEncoding.EncodeToString(k) + "\n"
			if file == "" {
				_, err := io.WriteString(cmd.OutOrStdout(), line)
				return err
			}
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("cluster keygen: %w", err)
			}
			if _, err := f.WriteString(line); err != nil {
				f.Close()
				return fmt.Errorf("cluster keygen: %w", err)
			}
			return f.Close()
		},
	}
	keygen.Flags().StringVarP(&file, "file", "f", "", "write the key to this file (0600, must not exist)")
	cmd.AddCommand(status, keygen)
	return cmd
}

func writeClusterStatus(w io.Writer, st edge.ClusterStatus) error {
	fmt.Fprintf(w, "Cluster member %s, %d members\n\n", st.Name, len(st.Members))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATE\tRTT\tCLOUD\tRADSEC\tSITE")
	for _, m := range st.Members {
		name := m.Name
		if m.Self {
			name += " (this edge)"
		}
		cloud := "no"
		if m.ReachesCloud {
			cloud = "yes"
		}
		rtt := "-"
		if m.RTTSeconds > 0 {
			rtt = fmt.Sprintf("%.1fms", m.RTTSeconds*1000)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, m.Address, m.State, rtt, cloud, dash(m.RadSec), dash(m.Site))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	r := st.Replication
	last := "never"
	if r.LastMergeAt != "" {
		last = r.LastMergeAt
	}
	fmt.Fprintf(w, "\nReplication: %d merged, %d conflicts, %d refused (%d clock skew), %d forgets, %d tombstones\n",
		r.Merged, r.Conflicts, r.Refused, r.SkewRefused, r.Forgets, r.Tombstones)
	fmt.Fprintf(w, "  last merge %s, lag last %.3fs mean %.3fs\n", last, r.LastLagSeconds, r.MeanLagSeconds)
	fmt.Fprintf(w, "  sent %d messages (%d bytes), received %d (%d bytes), %d malformed, %d dropped\n",
		r.MessagesSent, r.BytesSent, r.MessagesReceived, r.BytesReceived, r.Malformed, r.Dropped)
	fmt.Fprintf(w, "  anti-entropy: %d rounds, %d buckets pulled, %d records sent to peers\n", r.SyncRounds, r.BucketsPulled, r.SyncRecordsSent)
	if s := r.Sessions; s != nil {
		fmt.Fprintf(w, "Sessions: %d sent, %d received, %d merged, %d conflicts, %d refused, %d dropped, %d sent by anti-entropy; lag last %.3fs mean %.3fs\n",
			s.Sent, s.Received, s.Merged, s.Conflicts, s.Refused, s.Dropped, s.SyncSent, s.LastLagSeconds, s.MeanLagSeconds)
		fmt.Fprintf(w, "  reconciliation: %d sessions admitted locally waiting, %d of them this edge's to reconcile\n", s.NeedReconcile, s.Owned)
	}
	if p := st.WANViaPeer; p != nil {
		peers := "none"
		if len(p.Peers) > 0 {
			peers = strings.Join(p.Peers, ", ")
		}
		fmt.Fprintf(w, "WAN via peer: peers reaching the cloud %s; %d forwarded, %d answered, %d failed\n", peers, p.Forwarded, p.Answered, p.Failed)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
