package cli

import (
	"archive/tar"
	"bytes"
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
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"mxedge/edge/control"
	"mxedge/edge/mgmt"
)

// ErrRestore marks an archive restore refuses (bad checksum, unknown file, wrong schema).
var ErrRestore = errors.New("restore")

func newRestoreCmd() *cobra.Command { return newRestoreCmdEnv(defaultBackupEnv()) }

func newRestoreCmdEnv(env backupEnv) *cobra.Command {
	var file, stateDir, socket string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore -f FILE",
		Short: "Install a backup archive into the state directory of a stopped edge",
		Long: `restore checks an archive written by mxedge backup and installs its files into the state directory.

It refuses while mxedge runs (its control socket answers, or a database in the state directory is
locked): stop it first (systemctl stop mxedge). Every file must match the manifest's size and
SHA-256, be one of the files a backup holds, and each database must pass bbolt's consistency
check; nothing is installed until all of them do. Files are written next to their targets and
renamed into place with their modes (0600, certificates 0644) and the state directory's owner.
Files the state directory already has are replaced only with --force; those the archive does not
hold are left alone.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("%w: restore needs -f FILE", ErrUsage)
			}
			m, err := restoreBackup(cmd.Context(), file, stateDir, socket, force, env)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "restored %s (taken %s on %s) into %s:\n", file, m.CreatedAt, orDash(m.Hostname), stateDir)
			for _, e := range m.Files {
				fmt.Fprintf(out, "  %-14s %s  mode %s\n", e.Name, formatBytes(e.SizeBytes), e.Mode)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "archive written by mxedge backup")
	cmd.Flags().StringVar(&stateDir, "state-dir", mgmt.DefaultStateDir, "state directory to install into")
	cmd.Flags().StringVar(&socket, "socket", control.DefaultPath, "control socket of the mxedge that must not be running")
	cmd.Flags().BoolVar(&force, "force", false, "replace files the state directory already has")
	return cmd
}

func restoreBackup(ctx context.Context, file, stateDir, socket string, force bool, env backupEnv) (*backupManifest, error) {
	c := control.Dial(socket)
	c.Timeout = env.timeout
	if err := c.Probe(ctx); err == nil {
		return nil, fmt.Errorf("%w: mxedge is running (control socket %s answers): stop it first", ErrRestore, socket)
	} else if !errors.Is(err, control.ErrNoDaemon) {
		return nil, fmt.Errorf("%w: cannot tell whether mxedge runs: control socket %s: %w", ErrRestore, socket, err)
	}
	for _, name := range backupDatabases {
		if err := checkUnlocked(filepath.Join(stateDir, name)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	staged := map[string]string{} // name -> staged path in stateDir
	defer func() {
		for _, p := range staged {
			_ = os.Remove(p)
		}
	}()
	m, err := stageArchive(f, file, stateDir, staged)
	if err != nil {
		return nil, err
	}
	var exist []string
	for _, e := range m.Files {
		if _, err := os.Lstat(filepath.Join(stateDir, e.Name)); err == nil {
			exist = append(exist, e.Name)
		}
	}
	if len(exist) > 0 && !force {
		return nil, fmt.Errorf("%w: %s already has %s: use --force to replace them", ErrRestore, stateDir, strings.Join(exist, ", "))
	}
	for _, e := range m.Files {
		p := staged[e.Name]
		if err := os.Chmod(p, backupMode(e.Name)); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		giveToDirOwner(p)
	}
	for _, e := range m.Files {
		if err := os.Rename(staged[e.Name], filepath.Join(stateDir, e.Name)); err != nil {
			return nil, fmt.Errorf("restore: install %s: %w", e.Name, err)
		}
		delete(staged, e.Name)
	}
	if d, err := os.Open(stateDir); err == nil {
		_ = d.Sync() // the renames survive a crash
		d.Close()
	}
	return m, nil
}

// stageArchive reads the archive, writes each file to a hidden temporary file in stateDir and
// checks it against the manifest; the map gets every staged path, also on error.
func stageArchive(r io.Reader, file, stateDir string, staged map[string]string) (*backupManifest, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrRestore, file, fmt.Sprintf(format, a...))
	}
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil {
		return nil, bad("not a backup archive: %v", err)
	}
	if h.Name != manifestName || h.Size > maxManifest {
		return nil, bad("not a backup archive: the first entry is %q, not %s", h.Name, manifestName)
	}
	mb, err := io.ReadAll(io.LimitReader(tr, maxManifest))
	if err != nil {
		return nil, bad("manifest: %v", err)
	}
	var m backupManifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, bad("manifest: %v", err)
	}
	if m.Schema != backupSchema {
		return nil, bad("manifest schema %q: this mxedge reads %s", m.Schema, backupSchema)
	}
	want := map[string]backupEntry{}
	for _, e := range m.Files {
		kind, ok := backupKnown(e.Name)
		switch {
		case !ok:
			return nil, bad("manifest lists %q, which is not a file a backup holds", e.Name)
		case kind != e.Kind:
			return nil, bad("manifest says %s is %q, want %q", e.Name, e.Kind, kind)
		case e.SizeBytes < 0 || e.SizeBytes > maxBackupEntry:
			return nil, bad("manifest size of %s: %d", e.Name, e.SizeBytes)
		}
		if _, dup := want[e.Name]; dup {
			return nil, bad("manifest lists %s twice", e.Name)
		}
		want[e.Name] = e
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad("%v", err)
		}
		e, ok := want[h.Name]
		switch {
		case !ok:
			return nil, bad("entry %q is not in the manifest", h.Name)
		case staged[h.Name] != "":
			return nil, bad("entry %s appears twice", h.Name)
		case h.Typeflag != tar.TypeReg:
			return nil, bad("entry %s is not a regular file", h.Name)
		case h.Size != e.SizeBytes:
			return nil, bad("%s is %d bytes, the manifest says %d", h.Name, h.Size, e.SizeBytes)
		}
		tmp, err := os.CreateTemp(stateDir, ".restore-"+h.Name+"-")
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		staged[h.Name] = tmp.Name()
		sum := sha256.New()
		_, err = io.Copy(io.MultiWriter(tmp, sum), io.LimitReader(tr, e.SizeBytes))
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("restore: %s: %w", h.Name, err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != e.SHA256 {
			return nil, bad("%s: SHA-256 %s, the manifest says %s (the archive is damaged)", h.Name, got, e.SHA256)
		}
		if e.Kind == "bbolt" {
			if err := checkBolt(tmp.Name()); err != nil {
				return nil, bad("%s: %v", h.Name, err)
			}
		}
	}
	for _, e := range m.Files {
		if staged[e.Name] == "" {
			return nil, bad("%s is in the manifest but not in the archive (truncated?)", e.Name)
		}
	}
	return &m, nil
}

// checkUnlocked fails when a process holds the database's lock (bbolt uses flock(2)): an mxedge
// running with another socket path.
func checkUnlocked(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is locked by a running mxedge: stop it first", ErrRestore, path)
		}
		return fmt.Errorf("restore: lock %s: %w", path, err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
