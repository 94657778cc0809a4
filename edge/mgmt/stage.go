package mgmt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// stagePrefix names the staging directory register creates inside the state directory. A crash
// can leave one behind; the next register removes it.
const stagePrefix = ".register-"

// stage is an all-or-nothing write of several files into one directory: every file is written
// and fsynced under a staging directory (same file system, so rename is atomic), the staged set is
// validated where relative paths already resolve, and commit renames them into place in order,
// the regfile last. A failure before commit leaves the directory as it was; a rename failing
// during commit (it cannot, short of a dying disk) puts the previous files back.
type stage struct {
	dir, tmp string
	created  bool     // dir did not exist: a failed register removes it again
	names    []string // in commit order
	modes    map[string]fs.FileMode
}

func newStage(dir string) (*stage, error) {
	_, err := os.Stat(dir)
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("mgmt: state dir: %w", err)
	}
	removeStale(dir)
	tmp, err := os.MkdirTemp(dir, stagePrefix)
	if err != nil {
		return nil, fmt.Errorf("mgmt: state dir: %w", err)
	}
	return &stage{dir: dir, tmp: tmp, created: created, modes: map[string]fs.FileMode{}}, nil
}

func removeStale(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), stagePrefix) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// path is where a staged file is readable before commit.
func (s *stage) path(name string) string { return filepath.Join(s.tmp, name) }

func (s *stage) add(name string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(s.path(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("mgmt: write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode) // umask
	}
	if err == nil {
		err = chownLikeDir(f, s.dir)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mgmt: write %s: %w", name, err)
	}
	s.names = append(s.names, name)
	s.modes[name] = mode
	return nil
}

// chownLikeDir gives a file written by root (register runs as root) the owner and group of the
// directory it goes to (mxedge:mxedge for /var/lib/mxedge, install/mxedge.tmpfiles), so the
// daemon, which runs as mxedge, can read its 0600 key. Unprivileged callers keep their own ids.
func chownLikeDir(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}

// commit moves every staged file into place, in the order added.
func (s *stage) commit() error {
	if err := syncDir(s.tmp); err != nil {
		return err
	}
	// Keep the previous files (--force) as hard links so a failed rename can be undone.
	backups := map[string]string{}
	for _, n := range s.names {
		dst := filepath.Join(s.dir, n)
		bak := s.path(n + ".old")
		if err := os.Link(dst, bak); err == nil {
			backups[n] = bak
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mgmt: commit %s: %w", n, err)
		}
	}
	for i, n := range s.names {
		if err := os.Rename(s.path(n), filepath.Join(s.dir, n)); err != nil {
			s.undo(s.names[:i], backups)
			return fmt.Errorf("mgmt: commit %s: %w", n, err)
		}
	}
	return syncDir(s.dir)
}

func (s *stage) undo(done []string, backups map[string]string) {
	for _, n := range done {
		dst := filepath.Join(s.dir, n)
		if bak, ok := backups[n]; ok {
			_ = os.Rename(bak, dst)
		} else {
			_ = os.Remove(dst)
		}
	}
}

// cleanup removes the staging directory (after commit it holds only the backups) and, when
// nothing was committed into a state directory this stage created, that directory too.
func (s *stage) cleanup(committed bool) {
	_ = os.RemoveAll(s.tmp)
	if s.created && !committed {
		_ = os.Remove(s.dir) // only if empty
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mgmt: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mgmt: sync %s: %w", dir, err)
	}
	return nil
}
