package mgmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"mxedge/pki"
)

// ServerTLSFiles are the local EAP-TLS listener's files that certificate sync replaces.
type ServerTLSFiles struct {
	CertFile, KeyFile, CAFile string
	// KeyPassword opens a passphrase-protected delivered key (key_passphrase_file); it redacts
	// itself in logs.
	KeyPassword pki.Password
}

// syncServerTLS pulls the org CA and the listener's certificate and key, checks them
// (pki.ParseServerBundle), writes each file atomically and has the daemon apply them. A bundle
// that fails any step is rejected, logged and counted, and the files that were serving stay (or
// are put back): the last good bundle keeps serving.
func (s *Syncer) syncServerTLS(ctx context.Context) error {
	s.mu.Lock()
	etag := s.st.ServerCertsETag
	s.mu.Unlock()
	bundle, newTag, notModified, err := s.client.Certificates(ctx, s.reg.EdgeID, etag)
	if err != nil {
		s.logFailure("server certificates not fetched", err)
		return err
	}
	if notModified {
		return nil
	}
	if bundle == nil {
		s.log.Debug("no server certificates in the cloud")
		return nil
	}
	f := s.o.ServerTLS
	files := []pendingFile{
		// The CA first, the key and certificate last and next to each other: a crash between two
		// renames is the only moment the pair on disk can disagree.
		{path: f.CAFile, data: []byte(bundle.OrgCA), mode: pki.CertFileMode},
		{path: f.KeyFile, data: []byte(bundle.Key), mode: pki.KeyFileMode},
		{path: f.CertFile, data: []byte(bundle.Certificate), mode: pki.CertFileMode},
	}
	parsed, err := pki.ParseServerBundle(files[0].data, files[2].data, files[1].data, f.KeyPassword, s.o.Now())
	if err != nil {
		return s.rejectServerTLS(err, newTag)
	}
	leaf := parsed.Certificate.Leaf
	if unchanged(files) {
		s.mu.Lock()
		s.st.ServerCertsETag = newTag
		s.st.ServerCertNotAfter = leaf.NotAfter
		s.mu.Unlock()
		s.log.Debug("server certificates unchanged", "etag", newTag)
		return nil
	}
	sw, err := writeFiles(files)
	if err != nil {
		s.log.Error("server certificates not written: keeping the last good", "err", err)
		return fmt.Errorf("certificates: %w", err)
	}
	if err := s.o.ApplyServerTLS(); err != nil {
		if rerr := sw.restore(); rerr != nil {
			s.log.Error("previous server certificates not restored", "err", rerr)
		}
		return s.rejectServerTLS(fmt.Errorf("apply: %w", err), newTag)
	}
	sw.done()
	s.mu.Lock()
	s.st.ServerCertsETag = newTag
	s.st.ServerCertsApplied = s.o.Now()
	s.st.ServerCertNotAfter = leaf.NotAfter
	s.mu.Unlock()
	s.log.Info("server certificates applied", "etag", newTag, "subject", leaf.Subject.CommonName,
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return nil
}

// rejectServerTLS counts and logs a refused bundle. Its ETag is not remembered, so the next round
// fetches it again and says so again until the controller sends a good one.
func (s *Syncer) rejectServerTLS(err error, etag string) error {
	s.mu.Lock()
	s.st.ServerCertsRejected++
	s.mu.Unlock()
	// Error: the controller sent material the edge cannot serve; an operator must fix it there.
	s.log.Error("server certificates rejected: keeping the last good", "reason", err, "etag", etag)
	return fmt.Errorf("certificates: %w: %w", ErrCertificatesRejected, err)
}

// pendingFile is one file of a bundle to install.
type pendingFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// unchanged reports whether every file already holds its data (after a restart the first
// round downloads the bundle again: an identical one is not written or applied again).
func unchanged(files []pendingFile) bool {
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil || !bytes.Equal(b, f.data) {
			return false
		}
	}
	return true
}

// swap is an installed set of files with the previous versions kept as hard links until done or
// restore.
type swap struct {
	files   []pendingFile
	backups map[string]string // path -> backup; absent: the file did not exist
}

// writeFiles writes each file to a temporary file in its own directory (same file system, so
// rename is atomic; mode set before any byte is written, fsynced), keeps a hard link to the
// current file, then renames them into place in order. A failure puts back what it renamed.
func writeFiles(files []pendingFile) (*swap, error) {
	sw := &swap{backups: map[string]string{}}
	var temps []string
	cleanup := func() {
		for _, t := range temps {
			_ = os.Remove(t)
		}
		for _, b := range sw.backups {
			_ = os.Remove(b)
		}
	}
	for _, f := range files {
		tmp, err := writeTemp(f)
		if err != nil {
			cleanup()
			return nil, err
		}
		temps = append(temps, tmp)
		bak := tmp + ".old"
		if err := os.Link(f.path, bak); err == nil {
			sw.backups[f.path] = bak
		} else if !errors.Is(err, fs.ErrNotExist) {
			cleanup()
			return nil, fmt.Errorf("mgmt: keep %s: %w", f.path, err)
		}
	}
	for i, f := range files {
		if err := os.Rename(temps[i], f.path); err != nil {
			sw.files = files[:i]
			_ = sw.restore()
			cleanup()
			return nil, fmt.Errorf("mgmt: install %s: %w", f.path, err)
		}
	}
	sw.files = files
	syncDirs(files)
	return sw, nil
}

func writeTemp(f pendingFile) (string, error) {
	t, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".sync*")
	if err != nil {
		return "", fmt.Errorf("mgmt: write %s: %w", f.path, err)
	}
	err = t.Chmod(f.mode)
	if err == nil {
		_, err = t.Write(f.data)
	}
	if err == nil {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(t.Name())
		return "", fmt.Errorf("mgmt: write %s: %w", f.path, err)
	}
	return t.Name(), nil
}

// restore puts the previous files back (removing files that did not exist before).
func (sw *swap) restore() error {
	var errs []error
	for _, f := range sw.files {
		if bak, ok := sw.backups[f.path]; ok {
			if err := os.Rename(bak, f.path); err != nil {
				errs = append(errs, err)
			}
			delete(sw.backups, f.path)
		} else if err := os.Remove(f.path); err != nil {
			errs = append(errs, err)
		}
	}
	syncDirs(sw.files)
	sw.done()
	return errors.Join(errs...)
}

// done drops the backups.
func (sw *swap) done() {
	for _, b := range sw.backups {
		_ = os.Remove(b)
	}
	sw.backups = map[string]string{}
}

func syncDirs(files []pendingFile) {
	seen := map[string]bool{}
	for _, f := range files {
		if d := filepath.Dir(f.path); !seen[d] {
			seen[d] = true
			_ = syncDir(d)
		}
	}
}
