// Package install owns what mxedge puts on a machine: the systemd unit, sysusers and tmpfiles
// snippets and the default configuration, embedded in the binary so `mxedge install` and the .deb
// ship the same bytes, and the install/uninstall logic that places them under a root directory.
//
// Nothing here touches the running system unless Options.Root is "/" (or a Host is given): tests
// install into a temporary directory and compare it with a golden tree.
package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
)

// DefaultConfig is the annotated default configuration (/etc/mxedge/mxedge.yaml).
//
//go:embed mxedge.yaml
var DefaultConfig []byte

// Unit is the systemd service unit (/usr/lib/systemd/system/mxedge.service).
//
//go:embed mxedge.service
var Unit []byte

// Sysusers is the sysusers.d(5) snippet that creates the mxedge user and group
// (/usr/lib/sysusers.d/mxedge.conf).
//
//go:embed mxedge.sysusers
var Sysusers []byte

// Tmpfiles is the tmpfiles.d(5) snippet for /etc/mxedge and /var/lib/mxedge
// (/usr/lib/tmpfiles.d/mxedge.conf).
//
//go:embed mxedge.tmpfiles
var Tmpfiles []byte

// Paths, relative to the root, where an install puts things. The .deb uses the same paths.
const (
	BinaryPath   = "/usr/bin/mxedge"
	UnitPath     = "/usr/lib/systemd/system/mxedge.service"
	SysusersPath = "/usr/lib/sysusers.d/mxedge.conf"
	TmpfilesPath = "/usr/lib/tmpfiles.d/mxedge.conf"
	ConfigDir    = "/etc/mxedge"
	ConfigPath   = "/etc/mxedge/mxedge.yaml"
	StateDir     = "/var/lib/mxedge"
	RuntimeDir   = "/run/mxedge"
	// GuidePath is the install guide the unit's Documentation= names (docs/install.md; the .deb
	// ships the same file).
	GuidePath = "/usr/share/doc/mxedge/install.md"
	// UnitName is the name systemctl knows the service by.
	UnitName = "mxedge.service"
	// User and Group the service runs as (created by Sysusers).
	User = "mxedge"
)

// Errors.
var (
	// ErrNoBinary: Install was not told which binary to install.
	ErrNoBinary = errors.New("install: no binary to install")
	// ErrRoot: Root is not an absolute path.
	ErrRoot = errors.New("install: root must be an absolute directory")
)

// Options say where to install and what to do besides placing files.
type Options struct {
	// Root is the directory everything is installed under; "" means "/".
	Root string
	// Binary is the mxedge executable copied to /usr/bin/mxedge (Install only). The CLI passes
	// os.Executable() unless --binary is given.
	Binary string
	// NoEnable leaves the service disabled and stopped (Install only).
	NoEnable bool
	// Purge also removes /etc/mxedge, /var/lib/mxedge and the mxedge user (Uninstall only).
	Purge bool
	// Guide is the install guide placed at GuidePath (Install only): docs/install.md, which the
	// binary embeds (main.go). Nil places none.
	Guide []byte
	// Out receives one line per action ("installed /usr/bin/mxedge"); nil discards.
	Out io.Writer
	// Host runs the commands that act on the live system (create the user, apply tmpfiles, drive
	// systemd). Nil means: detect with DetectHost when Root is "/", and touch nothing otherwise.
	Host *Host
}

// Host is the live-system side of an install.
type Host struct {
	// Run executes a command and returns its error (with its output in it); nil runs it with os/exec.
	Run func(ctx context.Context, name string, args ...string) error
	// LookPath reports whether a command exists; nil uses exec.LookPath.
	LookPath func(name string) bool
	// UserExists reports whether the mxedge user exists already; nil looks it up with os/user.
	UserExists func(name string) bool
	// Systemd reports that systemd is the running service manager (/run/systemd/system exists):
	// only then are daemon-reload, enable and start attempted.
	Systemd bool
}

// DetectHost describes the running system: commands run with os/exec, systemd is detected the way
// sd_booted(3) does it.
func DetectHost() *Host {
	_, err := os.Stat("/run/systemd/system")
	return &Host{Systemd: err == nil}
}

func (h *Host) run(ctx context.Context, name string, args ...string) error {
	if h.Run != nil {
		return h.Run(ctx, name, args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (h *Host) userExists(name string) bool {
	if h.UserExists != nil {
		return h.UserExists(name)
	}
	_, err := user.Lookup(name)
	return err == nil
}

func (h *Host) has(name string) bool {
	if h.LookPath != nil {
		return h.LookPath(name)
	}
	_, err := exec.LookPath(name)
	return err == nil
}

// file is one file an install places.
type file struct {
	path    string
	mode    fs.FileMode
	content []byte
	// keep: never overwrite an existing file (the operator's configuration).
	keep bool
}

// files returns the embedded files an install places (all but the binary), in install order.
func files() []file {
	return []file{
		{path: UnitPath, mode: 0o644, content: Unit},
		{path: SysusersPath, mode: 0o644, content: Sysusers},
		{path: TmpfilesPath, mode: 0o644, content: Tmpfiles},
		{path: ConfigPath, mode: 0o640, content: DefaultConfig, keep: true},
	}
}

type installer struct {
	opts Options
	root string
	out  io.Writer
	host *Host
}

func newInstaller(opts Options) (*installer, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("%w: %q", ErrRoot, root)
	}
	root = filepath.Clean(root)
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("install: root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %q", ErrRoot, root)
	}
	in := &installer{opts: opts, root: root, out: opts.Out, host: opts.Host}
	if in.out == nil {
		in.out = io.Discard
	}
	if in.host == nil && root == "/" {
		in.host = DetectHost()
	}
	return in, nil
}

func (in *installer) abs(p string) string { return filepath.Join(in.root, p) }

func (in *installer) say(format string, args ...any) {
	fmt.Fprintf(in.out, format+"\n", args...)
}

// Install places the binary, unit, sysusers and tmpfiles snippets and the default configuration
// under opts.Root, never overwriting an existing configuration. On the live system (Root "/") it
// then creates the user, applies the tmpfiles snippet and, where systemd runs and !NoEnable, reloads
// systemd and enables and starts the service. Running it again changes nothing that is up to date.
func Install(ctx context.Context, opts Options) error {
	in, err := newInstaller(opts)
	if err != nil {
		return err
	}
	if opts.Binary == "" {
		return ErrNoBinary
	}
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return fmt.Errorf("install: binary: %w", err)
	}
	if err := in.place(file{path: BinaryPath, mode: 0o755, content: bin}); err != nil {
		return err
	}
	for _, f := range files() {
		if f.path == ConfigPath {
			if err := in.mkdir(ConfigDir, 0o750); err != nil {
				return err
			}
		}
		if err := in.place(f); err != nil {
			return err
		}
	}
	if opts.Guide != nil {
		if err := in.place(file{path: GuidePath, mode: 0o644, content: opts.Guide}); err != nil {
			return err
		}
	}
	if err := in.mkdir(StateDir, 0o750); err != nil {
		return err
	}
	if in.host == nil {
		in.say("skipped user, tmpfiles and systemd: %s is not the running system", in.root)
		return nil
	}
	return in.activate(ctx)
}

// activate does the live-system part of Install.
func (in *installer) activate(ctx context.Context) error {
	h := in.host
	switch {
	case h.userExists(User):
		in.say("kept existing user %s", User)
	case h.has("systemd-sysusers"):
		if err := h.run(ctx, "systemd-sysusers", SysusersPath); err != nil {
			return fmt.Errorf("install: create user: %w", err)
		}
		in.say("created user %s (systemd-sysusers)", User)
	case h.has("useradd"):
		if err := h.run(ctx, "useradd", "--system", "--user-group", "--home-dir", StateDir, "--no-create-home", "--shell", "/usr/sbin/nologin", User); err != nil {
			return fmt.Errorf("install: create user: %w", err)
		}
		in.say("created user %s (useradd)", User)
	default:
		return errors.New("install: create user: neither systemd-sysusers nor useradd found")
	}
	if h.has("systemd-tmpfiles") {
		if err := h.run(ctx, "systemd-tmpfiles", "--create", TmpfilesPath); err != nil {
			return fmt.Errorf("install: tmpfiles: %w", err)
		}
	} else {
		// The same ownership the tmpfiles snippet sets.
		for _, c := range [][]string{
			{"chown", "root:" + User, ConfigDir, ConfigPath},
			{"chown", User + ":" + User, StateDir},
		} {
			if err := h.run(ctx, c[0], c[1:]...); err != nil {
				return fmt.Errorf("install: tmpfiles: %w", err)
			}
		}
	}
	in.say("applied %s", TmpfilesPath)
	if !h.Systemd {
		in.say("skipped enabling %s: systemd is not running", UnitName)
		return nil
	}
	if err := h.run(ctx, "systemctl", "daemon-reload"); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	in.say("reloaded systemd")
	if in.opts.NoEnable {
		in.say("left %s disabled (--no-enable)", UnitName)
		return nil
	}
	if err := h.run(ctx, "systemctl", "enable", UnitName); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	in.say("enabled %s", UnitName)
	// restart, not start: a reinstall must run the new binary.
	if err := h.run(ctx, "systemctl", "restart", UnitName); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	in.say("started %s", UnitName)
	if b, err := os.ReadFile(in.abs(ConfigPath)); err == nil && bytes.Equal(b, DefaultConfig) {
		// The unit's ExecCondition= skips the start on a configuration that serves nobody.
		in.say("note: %s is the shipped default: unless the edge is registered, %s is not configured and its start is skipped; edit the file or run `mxedge register`, then `systemctl restart mxedge`", ConfigPath, UnitName)
	}
	return nil
}

// place writes f under the root unless it is already there with the same content and mode (or, for
// a kept file, exists at all). The write goes to a temporary file renamed into place so a running
// binary is replaced, not overwritten (ETXTBSY), and a crash never leaves half a file.
func (in *installer) place(f file) error {
	dst := in.abs(f.path)
	st, err := os.Lstat(dst)
	switch {
	case err == nil && f.keep:
		in.say("kept existing %s", f.path)
		return nil
	case err == nil && st.Mode().IsRegular() && st.Mode().Perm() == f.mode:
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, f.content) {
			in.say("unchanged %s", f.path)
			return nil
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("install: %w", err)
	}
	if err := in.mkdir(filepath.Dir(f.path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".mxedge-install-*")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(f.content); err != nil {
		tmp.Close()
		return fmt.Errorf("install: %s: %w", f.path, err)
	}
	// Chmod after create: the umask must not decide the installed mode.
	if err := tmp.Chmod(f.mode); err != nil {
		tmp.Close()
		return fmt.Errorf("install: %s: %w", f.path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("install: %s: %w", f.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install: %s: %w", f.path, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	in.say("installed %s", f.path)
	return nil
}

// mkdir creates p (and missing parents, 0755) under the root; p itself gets mode when created.
// An existing directory keeps its mode: the operator may have tightened it.
func (in *installer) mkdir(p string, mode fs.FileMode) error {
	dst := in.abs(p)
	if st, err := os.Stat(dst); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("install: %s exists and is not a directory", p)
		}
		return nil
	}
	if err := in.mkdir(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dst, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	return nil
}

// Uninstall reverses Install: on the live system it stops and disables the service, then removes
// the binary, unit and snippets. /etc/mxedge and /var/lib/mxedge stay unless opts.Purge, which also
// removes them and (on the live system) the mxedge user. Running it again is harmless.
func Uninstall(ctx context.Context, opts Options) error {
	in, err := newInstaller(opts)
	if err != nil {
		return err
	}
	h := in.host
	if h != nil && h.Systemd {
		// disable --now works whether or not the unit is enabled or running.
		if err := h.run(ctx, "systemctl", "disable", "--now", UnitName); err != nil {
			in.say("could not stop %s: %v", UnitName, err)
		} else {
			in.say("stopped and disabled %s", UnitName)
		}
	}
	for _, p := range []string{UnitPath, SysusersPath, TmpfilesPath, BinaryPath, GuidePath} {
		if err := in.remove(p); err != nil {
			return err
		}
	}
	// The guide's directory, if the install made it and nothing else is in it.
	if err := os.Remove(in.abs(filepath.Dir(GuidePath))); err == nil {
		in.say("removed %s", filepath.Dir(GuidePath))
	}
	if h != nil && h.Systemd {
		if err := h.run(ctx, "systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("uninstall: %w", err)
		}
		in.say("reloaded systemd")
	}
	if !opts.Purge {
		for _, p := range []string{ConfigDir, StateDir} {
			if _, err := os.Stat(in.abs(p)); err == nil {
				in.say("kept %s (--purge removes it)", p)
			}
		}
		return nil
	}
	for _, p := range []string{ConfigDir, StateDir, RuntimeDir} {
		if err := in.removeAll(p); err != nil {
			return err
		}
	}
	if h != nil {
		if !h.userExists(User) {
			in.say("already absent user %s", User)
			return nil
		}
		// userdel also removes the user's own group (USERGROUPS_ENAB, the Debian default).
		if err := h.run(ctx, "userdel", User); err != nil {
			return fmt.Errorf("uninstall: remove user: %w", err)
		}
		in.say("removed user %s", User)
	}
	return nil
}

func (in *installer) remove(p string) error {
	err := os.Remove(in.abs(p))
	switch {
	case err == nil:
		in.say("removed %s", p)
	case errors.Is(err, fs.ErrNotExist):
		in.say("already absent %s", p)
	default:
		return fmt.Errorf("uninstall: %w", err)
	}
	return nil
}

func (in *installer) removeAll(p string) error {
	dst := in.abs(p)
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		in.say("already absent %s", p)
		return nil
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	in.say("removed %s", p)
	return nil
}

// assetName names embedded content, so golden trees do not change every time the default
// configuration gains a comment. It returns "" for other content.
func assetName(content []byte) string {
	sum := sha256.Sum256(content)
	for name, b := range map[string][]byte{
		"mxedge.service": Unit, "mxedge.sysusers": Sysusers, "mxedge.tmpfiles": Tmpfiles, "mxedge.yaml": DefaultConfig,
	} {
		if sha256.Sum256(b) == sum {
			return name
		}
	}
	return ""
}
