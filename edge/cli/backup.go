package cli

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"mxedge/edge/control"
	"mxedge/edge/mgmt"
)

// The state a backup holds: the files of the state directory (/var/lib/mxedge) that an edge
// cannot rebuild by itself. A new database or file adds one line here (and, for a database the
// daemon holds open, one in edge/backup.go).
var (
	// backupDatabases are bbolt files, copied from one read transaction each.
	backupDatabases = []string{"cache.db", "spool.db", "sessions.db"}
	// backupFiles are copied as they are; the daemon replaces them by rename, never in place.
	backupFiles = []string{mgmt.RegfileName, mgmt.KeyName, mgmt.CertName, mgmt.CABundleName, mgmt.CloudCAName, mgmt.CloudConfigName}
)

// backupMode is the mode a restored file gets, whatever the archive says: keys, the regfile, the
// cloud configuration (it holds NAS secrets) and the databases are the mxedge user's alone.
func backupMode(name string) fs.FileMode {
	switch name {
	case mgmt.CertName, mgmt.CABundleName, mgmt.CloudCAName:
		return 0o644
	}
	return 0o600
}

func backupKnown(name string) (kind string, ok bool) {
	switch {
	case slices.Contains(backupDatabases, name):
		return "bbolt", true
	case slices.Contains(backupFiles, name):
		return "file", true
	}
	return "", false
}

// backupSchema names the manifest format; restore refuses any other.
const (
	backupSchema   = "mxedge.backup.v1"
	manifestName   = "manifest.json"
	maxManifest    = 1 << 20
	maxBackupEntry = 64 << 30 // the spool's own ceiling (spool.MaxMaxBytes)
)

// backupManifest is the first entry of the archive.
type backupManifest struct {
	Schema    string        `json:"schema"`
	CreatedAt string        `json:"created_at"`
	Version   string        `json:"mxedge_version"`
	Hostname  string        `json:"hostname"`
	Source    string        `json:"source"` // daemon: databases copied by the running mxedge; files: read directly
	Files     []backupEntry `json:"files"`
}

type backupEntry struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // bbolt, file
	Mode      string `json:"mode"`
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// backupEnv is what tests inject.
type backupEnv struct {
	now         func() time.Time
	timeout     time.Duration // control socket no-progress timeout
	openTimeout time.Duration // bbolt lock wait on a direct read
}

func defaultBackupEnv() backupEnv {
	return backupEnv{now: time.Now, timeout: control.DefaultTimeout, openTimeout: time.Second}
}

func newBackupCmd(info BuildInfo) *cobra.Command { return newBackupCmdEnv(info, defaultBackupEnv()) }

func newBackupCmdEnv(info BuildInfo, env backupEnv) *cobra.Command {
	var file, stateDir, socket string
	cmd := &cobra.Command{
		Use:   "backup -f FILE",
		Short: "Write the edge's state (cache, spool, registration, keys) into one archive",
		Long: `backup writes one tar archive (mode 0600: it holds the edge's private key) of the state directory:
the databases (` + strings.Join(backupDatabases, ", ") + `) and the files
` + strings.Join(backupFiles, ", ") + `, those that exist, after a manifest with each one's size and SHA-256.

While mxedge runs it holds each database's lock, so the running daemon copies them through its
control socket, each from one read transaction: a consistent snapshot taken while requests are
served, with every write committed before it began. With no daemon they are read directly, under
a shared lock. Each copy is checked (bbolt's consistency check) before it is archived.
mxedge restore installs the archive.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("%w: backup needs -f FILE", ErrUsage)
			}
			m, err := writeBackup(cmd.Context(), file, stateDir, socket, info, env)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "backup %s (%s):\n", file, m.Source)
			for _, e := range m.Files {
				fmt.Fprintf(out, "  %-14s %s  sha256 %s\n", e.Name, formatBytes(e.SizeBytes), e.SHA256)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "archive to write (replaced atomically)")
	cmd.Flags().StringVar(&stateDir, "state-dir", mgmt.DefaultStateDir, "state directory of the edge")
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	return cmd
}

// writeBackup collects the state into a temporary directory next to file, checks it, and writes
// the archive by rename.
func writeBackup(ctx context.Context, file, stateDir, socket string, info BuildInfo, env backupEnv) (*backupManifest, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(file), ".mxedge-backup-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp)
	host, _ := os.Hostname()
	m := &backupManifest{Schema: backupSchema, CreatedAt: env.now().UTC().Format(time.RFC3339), Version: orDash(info.Version),
		Hostname: host, Source: "files"}

	c := control.Dial(socket)
	c.Timeout = env.timeout
	perr := c.Probe(ctx)
	switch {
	case perr == nil:
		m.Source = "daemon"
		names, err := c.SnapshotNames(ctx)
		if err != nil {
			return nil, fmt.Errorf("backup: the running mxedge cannot copy its databases: %w", err)
		}
		for _, name := range names {
			if kind, ok := backupKnown(name); !ok || kind != "bbolt" {
				return nil, fmt.Errorf("backup: the daemon offers a database %q this mxedge does not know", name)
			}
			if err := copyTo(filepath.Join(tmp, name), func(w io.Writer) error {
				_, err := c.Snapshot(ctx, name, w)
				return err
			}); err != nil {
				return nil, fmt.Errorf("backup: %s from the daemon: %w", name, err)
			}
		}
		// A database the daemon does not hold (sessions.db of a build without sessions) is read
		// directly below.
		for _, name := range backupDatabases {
			if slices.Contains(names, name) {
				continue
			}
			if err := snapshotFile(filepath.Join(stateDir, name), filepath.Join(tmp, name), env.openTimeout); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	case errors.Is(perr, control.ErrNoDaemon):
		for _, name := range backupDatabases {
			if err := snapshotFile(filepath.Join(stateDir, name), filepath.Join(tmp, name), env.openTimeout); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("backup: control socket %s: %w", socket, perr)
	}
	for _, name := range backupFiles {
		b, err := os.ReadFile(filepath.Join(stateDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	for _, name := range append(slices.Clone(backupDatabases), backupFiles...) {
		path := filepath.Join(tmp, name)
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		kind, _ := backupKnown(name)
		if kind == "bbolt" {
			if err := checkBolt(path); err != nil {
				return nil, fmt.Errorf("backup: the copy of %s: %w", name, err)
			}
		}
		sum, err := sha256File(path)
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		m.Files = append(m.Files, backupEntry{Name: name, Kind: kind, Mode: fmt.Sprintf("%04o", backupMode(name)),
			SizeBytes: fi.Size(), SHA256: sum})
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("backup: nothing to back up in %s (no database, regfile or key)", stateDir)
	}
	if err := writeArchive(file, tmp, m); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// snapshotFile copies the bbolt file src into dst from one read transaction. bbolt takes a shared
// lock for it: a database a daemon holds (exclusively) is ErrLocked after timeout.
func snapshotFile(src, dst string, timeout time.Duration) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("backup: %s is locked by a running mxedge whose control socket does not answer (check --socket)", src)
	}
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", src, err)
	}
	defer db.Close()
	return copyTo(dst, func(w io.Writer) error {
		return db.View(func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(w)
			return err
		})
	})
}

// copyTo writes a new 0600 file through fn and syncs it.
func copyTo(path string, fn func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = fn(f)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// checkBolt runs bbolt's consistency check (every page reachable once, free list sound) on a copy.
func checkBolt(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("not a bbolt database: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
			if len(errs) == 5 {
				break
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("inconsistent: %w", errors.Join(errs...))
		}
		return nil
	})
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeArchive writes manifest and files as a tar into file+".new" (0600) and renames it.
func writeArchive(file, dir string, m *backupManifest) (err error) {
	tmp := file + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // an existing .new may have had another mode
		return err
	}
	tw := tar.NewWriter(f)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	mb = append(mb, '\n')
	created, _ := time.Parse(time.RFC3339, m.CreatedAt)
	hdr := func(name string, size int64, mode fs.FileMode) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: int64(mode), ModTime: created, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(manifestName, int64(len(mb)), 0o600)); err != nil {
		return err
	}
	if _, err := tw.Write(mb); err != nil {
		return err
	}
	for _, e := range m.Files {
		if err := tw.WriteHeader(hdr(e.Name, e.SizeBytes, backupMode(e.Name))); err != nil {
			return err
		}
		src, err := os.Open(filepath.Join(dir, e.Name))
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
