package edge

import "mxedge/edge/control"

// backupSnapshots are the databases `mxedge backup` copies through the control socket while the
// daemon holds their locks, by their file names in the state directory (edge/cli/backup.go lists
// the same names; a new database adds a line in both).
func backupSnapshots(e *Edge) map[string]control.SnapshotFunc {
	m := map[string]control.SnapshotFunc{
		"cache.db": e.cache.WriteSnapshot,
		"spool.db": e.spool.WriteSnapshot,
	}
	if e.sessions != nil {
		m["sessions.db"] = e.sessions.WriteSnapshot
	}
	return m
}
