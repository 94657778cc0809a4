package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"mxedge/cache"
	"mxedge/edge/control"
	"mxedge/proxy/packet"
)

// cacheEnv is what tests inject into the cache commands.
type cacheEnv struct {
	now         func() time.Time // "expires in", and the clock of a directly opened store
	timeout     time.Duration    // control socket no-progress timeout (control.DefaultTimeout)
	openTimeout time.Duration    // bbolt lock wait on a direct open (1 s)
}

// cacheArgs marks a wrong argument count as a usage error (exit 2).
func cacheArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return nil
	}
}

// cacheFlags are the persistent flags of `mxedge cache`.
type cacheFlags struct {
	socket string
	db     string
	ttl    time.Duration
}

func newCacheCmd() *cobra.Command {
	return newCacheCmdEnv(cacheEnv{now: time.Now, timeout: control.DefaultTimeout, openTimeout: time.Second})
}

func newCacheCmdEnv(env cacheEnv) *cobra.Command {
	f := &cacheFlags{}
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and manage the cache of authorized clients",
		Long: `cache reads and changes the client cache: the clients the cloud NAC authorized, with the reply
attributes mxedge replays to them while the WAN is down.

While mxedge runs it holds the database's file lock, so these commands go through its control socket
(--socket). When no daemon listens there they open the database (--db) themselves: read-only for
stats, list, show and export, read-write for delete, purge and import. They never wait on the file
lock for more than a second: a database locked by an mxedge whose socket does not answer is an error
that says so.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.socket, "socket", control.DefaultPath, "control socket of the running mxedge")
	pf.StringVar(&f.db, "db", cache.DefaultPath, "cache database, opened directly when no mxedge runs")
	pf.DurationVar(&f.ttl, "ttl", cache.DefaultTTL, "the daemon's cache TTL, used only when opening the database directly")
	cmd.AddCommand(
		newCacheStatsCmd(f, env),
		newCacheListCmd(f, env),
		newCacheShowCmd(f, env),
		newCacheDeleteCmd(f, env),
		newCachePurgeCmd(f, env),
		newCacheExportCmd(f, env),
		newCacheImportCmd(f, env),
	)
	return cmd
}

func newCacheStatsCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	var asJSON bool
	var o outputFlag
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print the number of entries, database size and writer counters",
		Long: `stats prints the number of entries, the database size and the writer's counters. -o json and
-o yaml print mxedge.cache.stats.v1 (docs/output.md); --json the control socket's older form.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			b, err := f.open(cmd.Context(), env, openRead)
			if err != nil {
				return err
			}
			defer b.close()
			st, err := b.stats(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONLine(out, control.StatsJSON(st))
			}
			if format != formatText {
				source := "file"
				if _, ok := b.(remoteCache); ok {
					source = "daemon"
				}
				return writeDoc(out, format, cacheStatsToDoc(st, source))
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			last := "never"
			if !st.LastSweep.IsZero() {
				last = fmt.Sprintf("%s (removed %d)", st.LastSweep.UTC().Format(time.RFC3339), st.LastSweepCount)
			}
			for _, row := range [][2]string{
				{"source", b.source()},
				{"entries", strconv.Itoa(st.Entries)},
				{"expired, not yet swept", strconv.Itoa(st.ExpiredPending)},
				{"database size", formatBytes(st.DBSize)},
				{"writer queue", strconv.Itoa(st.QueueDepth)},
				{"committed", fmt.Sprintf("%d operations in %d commits", st.Committed, st.Commits)},
				{"write errors", strconv.FormatUint(st.WriteErrors, 10)},
				{"dropped", strconv.FormatUint(st.Drops, 10)},
				{"swept", strconv.FormatUint(st.Swept, 10)},
				{"last sweep", last},
			} {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the control socket's JSON (see -o json)")
	addOutputFlag(cmd, &o, false)
	return cmd
}

func newCacheListCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	var asJSON bool
	var limit int
	var o outputFlag
	var filter cacheFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List unexpired entries in key order",
		Long: `list prints one line per unexpired entry: MAC, identity, method, VLAN (Tunnel-Private-Group-Id),
NAS, site, last authorization (UTC) and time to expiry.

--mac, --user, --site, --nas, --method and --expiring-within select entries (all must match);
--limit then counts the matching entries. -o json prints JSON Lines of mxedge.cache.entry.v1, -o
yaml a YAML stream (docs/output.md); --json prints JSON Lines in the export format (cache export),
which cache import reads.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("%w: --limit must not be negative", ErrUsage)
			}
			if err := filter.compile(); err != nil {
				return err
			}
			b, err := f.open(cmd.Context(), env, openRead)
			if err != nil {
				return err
			}
			defer b.close()
			out := cmd.OutOrStdout()
			now := env.now()
			var emit func(cache.Record) bool
			var done func() error
			switch {
			case asJSON:
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				var werr error
				emit = func(r cache.Record) bool {
					werr = enc.Encode(control.RecordToWire(r))
					return werr == nil
				}
				done = func() error { return werr }
			case format != formatText:
				sw := &streamWriter{w: out, format: format}
				var werr error
				emit = func(r cache.Record) bool {
					werr = sw.write(cacheEntryToDoc(r, now))
					return werr == nil
				}
				done = func() error { return werr }
			default:
				t := newListTable(out, now)
				emit, done = t.row, t.flush
			}
			// The limit counts matches, so the backend is walked without one and stopped here.
			n := 0
			err = b.list(cmd.Context(), 0, func(r cache.Record) bool {
				if !filter.match(r, now) {
					return true
				}
				n++
				return emit(r) && (limit == 0 || n < limit)
			})
			return errors.Join(err, done())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON Lines in the export format (cache import reads it)")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most N (matching) entries (0: all)")
	filter.register(cmd.Flags())
	addOutputFlag(cmd, &o, false)
	_ = cmd.RegisterFlagCompletionFunc("mac", completeCacheMACs(&f.socket, opsEnv{now: env.now, timeout: env.timeout}))
	_ = cmd.RegisterFlagCompletionFunc("site", completeSites(&f.socket, opsEnv{now: env.now, timeout: env.timeout}))
	_ = cmd.RegisterFlagCompletionFunc("nas", completeNAS(&f.socket, opsEnv{now: env.now, timeout: env.timeout}))
	_ = cmd.RegisterFlagCompletionFunc("method", fixedCompletions("mab", "eap-tls"))
	return cmd
}

// listTable aligns the list in blocks: a million entries are not held in
// memory for the widths.
type listTable struct {
	tw   *tabwriter.Writer
	now  time.Time
	rows int
	err  error
}

const listBlock = 1000

func newListTable(w io.Writer, now time.Time) *listTable {
	t := &listTable{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), now: now}
	_, t.err = fmt.Fprintln(t.tw, "MAC\tIDENTITY\tMETHOD\tVLAN\tNAS\tSITE\tLAST AUTHORIZED\tEXPIRES IN")
	return t
}

func (t *listTable) row(r cache.Record) bool {
	if t.err != nil {
		return false
	}
	_, t.err = fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(r.MAC), cell(r.Identity), r.Method,
		cell(vlanOf(r.Attrs)), cell(r.NAS), cell(r.Site), formatTime(r.LastAuthorized), expiresIn(r.Expires, t.now))
	t.rows++
	if t.rows%listBlock == 0 && t.err == nil {
		t.err = t.tw.Flush()
	}
	return t.err == nil
}

func (t *listTable) flush() error {
	if t.err != nil {
		return t.err
	}
	return t.tw.Flush()
}

func newCacheShowCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	var asJSON bool
	var o outputFlag
	cmd := &cobra.Command{
		Use:   "show <mac|identity>",
		Short: "Print one entry with its reply attributes by RADIUS name",
		Long: `show looks the key up as a MAC address first (aabbccddeeff, AA-BB-CC-DD-EE-FF, aa:bb:cc:dd:ee:ff,
aabb.ccdd.eeff) and then as an identity (case-insensitive), exactly as survivability does, and prints
every field and each reply attribute by name.`,
		Args: cacheArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := o.get()
			if err != nil {
				return err
			}
			b, err := f.open(cmd.Context(), env, openRead)
			if err != nil {
				return err
			}
			defer b.close()
			r, ok, err := b.show(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no unexpired cache entry for %q", args[0])
			}
			if asJSON {
				return writeJSONLine(cmd.OutOrStdout(), control.RecordToWire(r))
			}
			if format != formatText {
				return writeDoc(cmd.OutOrStdout(), format, cacheEntryToDoc(r, env.now()))
			}
			return writeRecord(cmd.OutOrStdout(), r, env.now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the export format)")
	addOutputFlag(cmd, &o, false)
	cmd.ValidArgsFunction = completeCacheMACs(&f.socket, opsEnv{now: env.now, timeout: env.timeout})
	return cmd
}

func newCacheDeleteCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <mac|identity>",
		Short: "Remove a MAC's entry, or every entry of an identity",
		Args:  cacheArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := f.open(cmd.Context(), env, openWrite)
			if err != nil {
				return err
			}
			defer b.close()
			removed, err := b.del(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !removed {
				return fmt.Errorf("no cache entry for %q", args[0])
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			return err
		},
	}
}

func newCachePurgeCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	var expired bool
	cmd := &cobra.Command{
		Use:   "purge --expired",
		Short: "Remove expired entries now instead of waiting for the sweeper",
		Args:  cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !expired {
				// Purging everything is not offered: a cache emptied by
				// mistake is an outage waiting for the next WAN cut.
				return fmt.Errorf("%w: purge needs --expired", ErrUsage)
			}
			b, err := f.open(cmd.Context(), env, openWrite)
			if err != nil {
				return err
			}
			defer b.close()
			n, err := b.purge(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "purged %d expired %s\n", n, plural(n, "entry", "entries"))
			return err
		},
	}
	cmd.Flags().BoolVar(&expired, "expired", false, "remove the entries past their expiry")
	return cmd
}

func newCacheExportCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [-o FILE]",
		Short: "Write every unexpired entry as JSON Lines",
		Long: `export writes every unexpired entry as JSON Lines (docs/cache.md), to stdout or to FILE. FILE is
written under a temporary name (mode 0600: it names clients) and renamed when complete.`,
		Args: cacheArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := f.open(cmd.Context(), env, openRead)
			if err != nil {
				return err
			}
			defer b.close()
			if output == "" || output == "-" {
				return b.export(cmd.Context(), cmd.OutOrStdout())
			}
			tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".*")
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
			lc := &lineCounter{w: tmp}
			err = b.export(cmd.Context(), lc)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(tmp.Name(), output)
			}
			if err != nil {
				return fmt.Errorf("export %s: %w", output, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "exported %d %s to %s\n", lc.lines, plural(lc.lines, "entry", "entries"), output)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

func newCacheImportCmd(f *cacheFlags, env cacheEnv) *cobra.Command {
	var mergeNewer bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import JSON Lines (FILE or - for stdin); bad lines are reported and skipped",
		Long: `import validates every line and stores the good ones; it prints the count of imported, older and
expired records and the line numbers of bad ones (the reasons go to stderr), and exits non-zero if any
line was bad. Without --merge-newer imported records replace stored ones; with it a record replaces a
stored one only if its last_authorized is later (the cloud cache-sync rule).`,
		Args: cacheArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				file, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer file.Close()
				in = file
			}
			b, err := f.open(cmd.Context(), env, openCreate)
			if err != nil {
				return err
			}
			defer b.close()
			rep, err := b.importJSONL(cmd.Context(), in, mergeNewer)
			if rep.Lines > 0 || err == nil {
				if perr := writeImportReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep); err == nil {
					err = perr
				}
			}
			if err != nil {
				return err
			}
			if rep.Bad > 0 {
				return fmt.Errorf("import: %d bad %s in %s", rep.Bad, plural(rep.Bad, "line", "lines"), args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&mergeNewer, "merge-newer", false, "replace a stored entry only with a more recently authorized one")
	return cmd
}

// writeImportReport prints "imported N, skipped M older, E expired, K bad
// (lines: …)" and each bad line's reason on errw.
func writeImportReport(out, errw io.Writer, rep cache.ImportReport) error {
	line := fmt.Sprintf("imported %d, skipped %d older, %d expired, %d bad", rep.Imported, rep.Older, rep.Expired, rep.Bad)
	if rep.Bad > 0 {
		nums := make([]string, 0, len(rep.Errors))
		for _, e := range rep.Errors {
			nums = append(nums, strconv.Itoa(e.Line))
		}
		more := ""
		if rep.Bad > len(rep.Errors) {
			more = fmt.Sprintf(" and %d more", rep.Bad-len(rep.Errors))
		}
		line += fmt.Sprintf(" (lines: %s%s)", strings.Join(nums, ", "), more)
	}
	if _, err := fmt.Fprintln(out, line); err != nil {
		return err
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(errw, "line %d: %v\n", e.Line, e.Err)
	}
	return nil
}

// cacheBackend is the daemon (through the control socket) or the database
// opened directly.
type cacheBackend interface {
	stats(ctx context.Context) (cache.Stats, error)
	list(ctx context.Context, limit int, fn func(cache.Record) bool) error
	show(ctx context.Context, key string) (cache.Record, bool, error)
	del(ctx context.Context, key string) (bool, error)
	purge(ctx context.Context) (int, error)
	export(ctx context.Context, w io.Writer) error
	importJSONL(ctx context.Context, r io.Reader, mergeNewer bool) (cache.ImportReport, error)
	source() string
	close() error
}

// openMode is how a command opens the database when no daemon runs.
type openMode uint8

const (
	openRead   openMode = iota // read-only; the file must exist
	openWrite                  // read-write; the file must exist
	openCreate                 // read-write, created if missing (import)
)

// open picks the backend: the daemon if anything listens on the socket,
// else the file with a bounded lock wait (cache.Options.OpenTimeout).
func (f *cacheFlags) open(ctx context.Context, env cacheEnv, mode openMode) (cacheBackend, error) {
	c := control.Dial(f.socket)
	c.Timeout = env.timeout
	perr := c.Probe(ctx)
	if perr == nil {
		return remoteCache{c}, nil
	}
	if !errors.Is(perr, control.ErrNoDaemon) {
		if errors.Is(perr, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot use the mxedge control socket %s: permission denied (run as root or as a member of group mxedge): %w", f.socket, perr)
		}
		return nil, perr
	}
	_, serr := os.Stat(f.db)
	if errors.Is(serr, fs.ErrNotExist) && mode != openCreate {
		return nil, fmt.Errorf("no cache database at %s and no mxedge daemon on %s", f.db, f.socket)
	}
	created := serr != nil
	s, err := cache.Open(cache.Options{Path: f.db, TTL: f.ttl, ReadOnly: mode == openRead, OpenTimeout: env.openTimeout, Now: env.now})
	if errors.Is(err, cache.ErrLocked) {
		return nil, &lockedError{db: f.db, socket: f.socket, sockErr: perr, lockErr: err}
	}
	if err != nil {
		return nil, err
	}
	if created {
		giveToDirOwner(f.db)
	}
	return localCache{s: s, path: f.db}, nil
}

// lockedError: no daemon answers on the socket, yet something holds the
// database lock (a daemon with another socket path, or a stuck one). Both
// causes stay in the chain (errors.Is control.ErrNoDaemon, cache.ErrLocked).
type lockedError struct {
	db, socket       string
	sockErr, lockErr error
}

func (e *lockedError) Error() string {
	reason := e.sockErr.Error()
	var errno syscall.Errno
	if errors.As(e.sockErr, &errno) {
		reason = errno.Error()
	}
	return fmt.Sprintf("the cache %s is held by a running mxedge but its control socket %s is not answering: %s "+
		"(check --socket, or stop mxedge to open the file directly)", e.db, e.socket, reason)
}

func (e *lockedError) Unwrap() []error { return []error{e.sockErr, e.lockErr} }

// giveToDirOwner hands a database that root just created to the owner of
// its directory (mxedge, from the package's tmpfiles), or the daemon could
// not open it at its next start.
func giveToDirOwner(path string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		_ = os.Chown(path, int(st.Uid), int(st.Gid))
	}
}

type remoteCache struct{ c *control.Client }

func (r remoteCache) stats(ctx context.Context) (cache.Stats, error) { return r.c.CacheStats(ctx) }
func (r remoteCache) list(ctx context.Context, limit int, fn func(cache.Record) bool) error {
	return r.c.CacheList(ctx, limit, fn)
}
func (r remoteCache) show(ctx context.Context, key string) (cache.Record, bool, error) {
	return r.c.CacheShow(ctx, key)
}
func (r remoteCache) del(ctx context.Context, key string) (bool, error) {
	return r.c.CacheDelete(ctx, key)
}
func (r remoteCache) purge(ctx context.Context) (int, error)        { return r.c.CachePurgeExpired(ctx) }
func (r remoteCache) export(ctx context.Context, w io.Writer) error { return r.c.CacheExport(ctx, w) }
func (r remoteCache) importJSONL(ctx context.Context, in io.Reader, merge bool) (cache.ImportReport, error) {
	return r.c.CacheImport(ctx, in, merge)
}
func (r remoteCache) source() string { return "mxedge daemon (" + r.c.Path + ")" }
func (r remoteCache) close() error   { return nil }

type localCache struct {
	s    *cache.Store
	path string
}

func (l localCache) stats(context.Context) (cache.Stats, error) { return l.s.Stats(), nil }
func (l localCache) list(_ context.Context, limit int, fn func(cache.Record) bool) error {
	n := 0
	return l.s.List(func(r cache.Record) bool {
		n++
		return fn(r) && (limit == 0 || n < limit)
	})
}
func (l localCache) show(_ context.Context, key string) (cache.Record, bool, error) {
	return l.s.Lookup(key, key) // MAC first, then identity, as the daemon does
}
func (l localCache) del(_ context.Context, key string) (bool, error) { return l.s.Delete(key) }
func (l localCache) purge(context.Context) (int, error)              { return l.s.PurgeExpired() }
func (l localCache) export(_ context.Context, w io.Writer) error     { return l.s.Export(w) }
func (l localCache) importJSONL(_ context.Context, in io.Reader, merge bool) (cache.ImportReport, error) {
	return l.s.Import(in, merge)
}
func (l localCache) source() string { return "file " + l.path + " (no mxedge daemon running)" }
func (l localCache) close() error   { return l.s.Close() }

// writeRecord prints every field of r and each reply attribute by name.
func writeRecord(w io.Writer, r cache.Record, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	expires := formatTime(r.Expires)
	if !r.Expires.IsZero() {
		if in := expiresIn(r.Expires, now); in == "expired" {
			expires += " (expired)"
		} else {
			expires += " (in " + in + ")"
		}
	}
	for _, row := range [][2]string{
		{"MAC", cell(r.MAC)},
		{"Identity", cell(r.Identity)},
		{"Method", r.Method.String()},
		{"NAS", cell(r.NAS)},
		{"Site", cell(r.Site)},
		{"First seen", formatTime(r.FirstSeen)},
		{"Last authorized", formatTime(r.LastAuthorized)},
		{"Expires", expires},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	// A line without a tab ends the column block: the attributes align
	// among themselves.
	fmt.Fprintf(tw, "Reply attributes (%d)\n", len(r.Attrs))
	for _, a := range r.Attrs {
		fmt.Fprintf(tw, "  %s\t%s\n", attrName(a), attrValue(a))
	}
	return tw.Flush()
}

// Attributes cache show renders beyond their dictionary type (RFC 2865 §5.27/§5.28, RFC 2869
// §5.16: seconds; RFC 4675 §2.1/§2.3: a tag indication in front of a VLAN).
const (
	attrSessionTimeout      = packet.AttrSessionTimeout
	attrIdleTimeout         = packet.AttrIdleTimeout
	attrAcctInterimInterval = 85
	attrEgressVLANID        = 56
	attrEgressVLANName      = packet.AttrEgressVLANName
)

// attrDef is the dictionary definition of a cached attribute.
func attrDef(a cache.Attr) (packet.AttrDef, bool) {
	if a.Vendor != 0 {
		return packet.Builtin().Attr(a.Vendor, a.VendorType)
	}
	return packet.Builtin().Attr(0, a.Type)
}

// attrName is the dictionary name (as FreeRADIUS's radclient prints it), ":tag" for a tagged
// tunnel attribute (FreeRADIUS's notation), radclient's "Attr-26.VENDOR.TYPE" for an attribute the
// dictionary does not know.
func attrName(a cache.Attr) string {
	n := packet.Builtin().Name(a.Vendor, a.VendorType)
	if a.Vendor == 0 {
		n = packet.Builtin().Name(0, a.Type)
	}
	if a.Tag != 0 {
		n += ":" + strconv.Itoa(int(a.Tag))
	}
	return n
}

// attrValue renders a value by its dictionary type, integers as "Name (number)" and durations
// with their unit; anything malformed is shown as hex.
func attrValue(a cache.Attr) string {
	def, ok := attrDef(a)
	if !ok {
		// Unknown syntax: text only if plainly ASCII, else the octets.
		if !strings.ContainsFunc(string(a.Value), func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return strconv.Quote(string(a.Value))
		}
		return fmt.Sprintf("0x%x", a.Value)
	}
	v := a.Value
	named := func(n uint32) string {
		if s, ok := def.ValueName(n); ok {
			return fmt.Sprintf("%s (%d)", s, n)
		}
		return strconv.FormatUint(uint64(n), 10)
	}
	if a.Vendor == 0 {
		switch a.Type {
		case attrSessionTimeout, attrIdleTimeout, attrAcctInterimInterval:
			if len(v) == 4 {
				n := binary.BigEndian.Uint32(v)
				return fmt.Sprintf("%d (%v)", n, time.Duration(n)*time.Second)
			}
			return printable(v)
		case attrEgressVLANID:
			if len(v) == 4 {
				return fmt.Sprintf("%s VLAN %d", tagIndication(v[0]), binary.BigEndian.Uint32(v)&0xfff)
			}
			return printable(v)
		case attrEgressVLANName:
			if len(v) >= 2 {
				return fmt.Sprintf("%s %s", tagIndication(v[0]), printable(v[1:]))
			}
			return printable(v)
		}
	}
	switch def.Type {
	case packet.TypeString:
		return printable(v)
	case packet.TypeInteger:
		// A tagged integer is stored without its tag octet: 3 octets (RFC 2868 §3.1).
		switch len(v) {
		case 3:
			return named(uint32(v[0])<<16 | uint32(v[1])<<8 | uint32(v[2]))
		case 4:
			return named(binary.BigEndian.Uint32(v))
		}
	default:
		if out, ok := def.AppendValue(nil, v); ok {
			return string(out)
		}
	}
	return printable(v)
}

// tagIndication is RFC 4675 §2.1's first octet: '1' tagged, '2' untagged.
func tagIndication(b byte) string {
	switch b {
	case '1':
		return "tagged"
	case '2':
		return "untagged"
	}
	return fmt.Sprintf("tag-indication(0x%02x)", b)
}

// printable quotes a printable UTF-8 value and hex-encodes anything else.
func printable(v []byte) string {
	if utf8.Valid(v) && !strings.ContainsFunc(string(v), func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(string(v))
	}
	return fmt.Sprintf("0x%x", v)
}

// vlanOf is the first Tunnel-Private-Group-Id (RFC 3580 §3.31: the VLAN ID
// or name).
func vlanOf(attrs []cache.Attr) string {
	for _, a := range attrs {
		if a.Vendor == 0 && a.Type == packet.AttrTunnelPrivateGroupID {
			return string(a.Value)
		}
	}
	return ""
}

// cell makes a table cell: "-" for empty, quoted if it would break the
// columns (tabs, newlines, control characters, spaces).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// expiresIn is a compact countdown: "6d23h", "5h12m", "42m", "30s",
// "expired".
func expiresIn(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n), 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", v, "KMGT"[exp-1], n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// lineCounter counts the records an export wrote.
type lineCounter struct {
	w     io.Writer
	lines int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.lines += bytes.Count(p[:n], []byte{'\n'})
	return n, err
}
