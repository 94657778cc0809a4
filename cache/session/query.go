package session

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Query selects sessions; every field set must match (zero fields match anything).
type Query struct {
	ID            uint64
	AcctSessionID string     // exact; with NAS, that NAS's session only (RFC 2866 §5.5: unique per NAS)
	NAS           string     // the NAS client's name
	NASAddr       string     // the NAS's address, as Record.NASAddr
	Site          string     // exact
	MAC           string     // canonical aa:bb:cc:dd:ee:ff (cache.NormalizeMAC)
	UserName      string     // case-insensitive
	IP            netip.Addr // Framed-IP-Address, Framed-IPv6-Address or the Framed-IPv6-Prefix's address
	NASPortID     string
	NASPort       uint32
	HasNASPort    bool
	State         State // 0: any
	Reconcile     Reconcile
	HasReconcile  bool
	// Limit caps the results (0: no cap). Results are oldest first (by ID).
	Limit int
}

// Find returns the sessions q selects, oldest first. It reads through the most selective index
// the query names (Acct-Session-Id, MAC, IP, User-Name, NAS port, NAS), else the whole table.
func (s *Store) Find(q Query) ([]Record, error) {
	if q.MAC != "" {
		if _, ok := parseMAC(q.MAC); !ok {
			return nil, fmt.Errorf("%w: mac %q is not aa:bb:cc:dd:ee:ff", ErrBadQuery, q.MAC)
		}
	}
	var out []Record
	err := s.view(func(tx *bolt.Tx) error {
		match := func(v []byte) (bool, error) {
			r, err := decodeRecord(v)
			if err != nil {
				return false, nil // unreadable: not shown, removed when it comes due
			}
			if !q.matches(&r) {
				return false, nil
			}
			out = append(out, r)
			return q.Limit > 0 && len(out) >= q.Limit, nil
		}
		recs := tx.Bucket(bucketRecords)
		if q.ID != 0 {
			if v := recs.Get(idKey(q.ID)); v != nil {
				_, err := match(v)
				return err
			}
			return nil
		}
		ids, indexed := s.candidates(tx, &q)
		if !indexed {
			c := recs.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if done, err := match(v); done || err != nil {
					return err
				}
			}
			return nil
		}
		for i, id := range ids {
			if i > 0 && ids[i-1] == id {
				continue
			}
			if v := recs.Get(idKey(id)); v != nil {
				if done, err := match(v); done || err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// Get returns the session with id.
func (s *Store) Get(id uint64) (Record, bool, error) {
	rs, err := s.Find(Query{ID: id})
	if err != nil || len(rs) == 0 {
		return Record{}, false, err
	}
	return rs[0], true, nil
}

// NeedingReconcile returns up to limit sessions admitted locally that the cloud has not yet
// re-authorized, oldest Access-Accept first; ended and re-authenticated ones are not among them
// (they are ReconcileSuperseded). limit 0 means no cap.
func (s *Store) NeedingReconcile(limit int) ([]Record, error) {
	var out []Record
	err := s.view(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		c := tx.Bucket(bucketRecon).Cursor()
		for k, _ := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, _ = c.Next() {
			v := recs.Get(idKey(keyID(k)))
			if v == nil {
				continue
			}
			if r, err := decodeRecord(v); err == nil && r.Reconcile == ReconcileNeeded {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// candidates returns, in ID order and possibly repeated, the IDs of the records the index q
// reads through names; false when q names no index and the whole table must be read.
func (s *Store) candidates(tx *bolt.Tx, q *Query) ([]uint64, bool) {
	if q.AcctSessionID == "" && q.MAC != "" {
		m, _ := parseMAC(q.MAC)
		return s.macs.all(m), true
	}
	bucket, prefix := q.index()
	if bucket == nil {
		return nil, false
	}
	// Index keys under a prefix sort by ID except where a longer component shares the prefix
	// (an Acct-Session-Id without NAS); collect, then sort.
	var ids []uint64
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, keyID(k))
	}
	if m, ok := userMAC(q.UserName); ok && bytes.Equal(bucket, bucketUser) {
		// A record whose User-Name names its own MAC has no User-Name entry (indexKeys): its
		// MAC's entries are the candidates, and matches compares the User-Name.
		ids = append(ids, s.macs.all(m)...)
	}
	slices.Sort(ids)
	return ids, true
}

// index picks the file's index bucket and key prefix to read q through (the MAC index is in
// memory: candidates); nil: the whole table.
func (q *Query) index() ([]byte, []byte) {
	switch {
	case q.AcctSessionID != "" && q.NAS != "":
		return bucketASID, asidPrefix(q.AcctSessionID, q.NAS)
	case q.AcctSessionID != "":
		return bucketASID, new(keyBuilder).str(q.AcctSessionID).b
	case q.IP.IsValid():
		return bucketIP, new(keyBuilder).str(ipComponent(q.IP.Unmap())).b
	case q.UserName != "":
		return bucketUser, new(keyBuilder).str(foldUser(q.UserName)).b
	case q.NAS != "" && (q.NASPortID != "" || q.HasNASPort):
		r := Record{NASPortID: q.NASPortID, NASPort: q.NASPort, HasNASPort: q.HasNASPort}
		return bucketPort, new(keyBuilder).str(q.NAS).str(portComponent(&r)).b
	case q.NAS != "":
		return bucketNAS, new(keyBuilder).str(q.NAS).b
	}
	return nil, nil
}

func (q *Query) matches(r *Record) bool {
	ip := q.IP.Unmap()
	switch {
	case q.ID != 0 && r.ID != q.ID,
		q.AcctSessionID != "" && r.AcctSessionID != q.AcctSessionID,
		q.NAS != "" && r.NAS != q.NAS,
		q.NASAddr != "" && r.NASAddr != q.NASAddr,
		q.Site != "" && r.Site != q.Site,
		q.MAC != "" && r.MAC != q.MAC,
		q.UserName != "" && !strings.EqualFold(r.UserName, q.UserName),
		ip.IsValid() && r.FramedIP != ip && r.FramedIPv6 != ip && r.FramedIPv6Prefix.Addr() != ip,
		q.NASPortID != "" && r.NASPortID != q.NASPortID,
		q.HasNASPort && (!r.HasNASPort || r.NASPort != q.NASPort),
		q.State != 0 && r.State != q.State,
		q.HasReconcile && r.Reconcile != q.Reconcile:
		return false
	}
	return true
}
