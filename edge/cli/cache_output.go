package cli

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"mxedge/cache"
)

// cacheFilter selects the entries `cache list` prints. Every set field must match.
type cacheFilter struct {
	mac, user, site, nas, method string
	expiringWithin               time.Duration

	macNorm  string
	methodOK cache.Method
}

func (f *cacheFilter) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.mac, "mac", "", "only this MAC address, any notation")
	fl.StringVar(&f.user, "user", "", "only this identity (User-Name or certificate identity), any case")
	fl.StringVar(&f.site, "site", "", "only entries learned at this site")
	fl.StringVar(&f.nas, "nas", "", "only entries learned from this NAS")
	fl.StringVar(&f.method, "method", "", "only this method: mab or eap-tls")
	fl.DurationVar(&f.expiringWithin, "expiring-within", 0, "only entries that expire within this duration (24h)")
}

func (f *cacheFilter) compile() error {
	if f.mac != "" {
		m, err := cache.NormalizeMAC(f.mac)
		if err != nil {
			return fmt.Errorf("%w: --mac: %w", ErrUsage, err)
		}
		f.macNorm = m
	}
	if f.method != "" {
		m, err := cache.ParseMethod(f.method)
		if err != nil {
			return fmt.Errorf("%w: --method: %w", ErrUsage, err)
		}
		f.methodOK = m
	}
	if f.expiringWithin < 0 {
		return fmt.Errorf("%w: --expiring-within must not be negative", ErrUsage)
	}
	return nil
}

func (f *cacheFilter) match(r cache.Record, now time.Time) bool {
	switch {
	case f.macNorm != "" && r.MAC != f.macNorm:
	case f.user != "" && !strings.EqualFold(r.Identity, f.user):
	case f.site != "" && r.Site != f.site:
	case f.nas != "" && r.NAS != f.nas:
	case f.method != "" && r.Method != f.methodOK:
	case f.expiringWithin > 0 && !r.Expires.Before(now.Add(f.expiringWithin)):
	default:
		return true
	}
	return false
}

// cacheEntryDoc is the schema mxedge.cache.entry.v1 (docs/output.md): one line of
// `cache list -o json`, and `cache show -o json`. Unlike the export format (cache export, --json)
// it names every attribute and gives the time left; it is not an import format.
type cacheEntryDoc struct {
	Schema           string         `json:"schema"`
	MAC              string         `json:"mac"`
	Identity         string         `json:"identity"`
	Method           string         `json:"method"`
	NAS              string         `json:"nas"`
	Site             string         `json:"site"`
	VLAN             string         `json:"vlan"`
	Attributes       []cacheAttrDoc `json:"attributes"`
	FirstSeenAt      *string        `json:"first_seen_at"`
	LastAuthorizedAt *string        `json:"last_authorized_at"`
	ExpiresAt        *string        `json:"expires_at"`
	ExpiresInSeconds int64          `json:"expires_in_seconds"`
}

type cacheAttrDoc struct {
	Name       string `json:"name"` // the dictionary's (FreeRADIUS's) name, ":tag" not included
	Tag        uint8  `json:"tag"`
	Value      string `json:"value"` // text as is; numbers, names and addresses as `cache show` prints them
	Type       uint8  `json:"type"`
	Vendor     uint32 `json:"vendor"`
	VendorType uint8  `json:"vendor_type"`
	Hex        string `json:"hex"`
}

func cacheEntryToDoc(r cache.Record, now time.Time) cacheEntryDoc {
	d := cacheEntryDoc{Schema: "mxedge.cache.entry.v1", MAC: r.MAC, Identity: r.Identity, Method: r.Method.String(),
		NAS: r.NAS, Site: r.Site, VLAN: vlanOf(r.Attrs), Attributes: []cacheAttrDoc{},
		FirstSeenAt: atTime(r.FirstSeen), LastAuthorizedAt: atTime(r.LastAuthorized), ExpiresAt: atTime(r.Expires)}
	if !r.Expires.IsZero() {
		d.ExpiresInSeconds = max(int64(r.Expires.Sub(now)/time.Second), 0)
	}
	for _, a := range r.Attrs {
		untagged := a
		untagged.Tag = 0
		v := attrValue(a)
		if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = u // text is the text itself here, not radclient's quoted form
		}
		d.Attributes = append(d.Attributes, cacheAttrDoc{Name: attrName(untagged), Tag: a.Tag, Value: v, Type: a.Type,
			Vendor: a.Vendor, VendorType: a.VendorType, Hex: hex.EncodeToString(a.Value)})
	}
	return d
}

// cacheStatsDoc is the schema mxedge.cache.stats.v1.
type cacheStatsDoc struct {
	Schema           string  `json:"schema"`
	Source           string  `json:"source"`
	Entries          int     `json:"entries"`
	ExpiredPending   int     `json:"expired_pending"`
	DBSizeBytes      int64   `json:"db_size_bytes"`
	WriterQueueDepth int     `json:"writer_queue_depth"`
	CommittedOps     uint64  `json:"committed_operations"`
	Commits          uint64  `json:"commits"`
	WriteErrors      uint64  `json:"write_errors"`
	Dropped          uint64  `json:"dropped"`
	Swept            uint64  `json:"swept"`
	LastSweepAt      *string `json:"last_sweep_at"`
	LastSweepRemoved int     `json:"last_sweep_removed"`
}

func cacheStatsToDoc(st cache.Stats, source string) cacheStatsDoc {
	return cacheStatsDoc{Schema: "mxedge.cache.stats.v1", Source: source, Entries: st.Entries, ExpiredPending: st.ExpiredPending,
		DBSizeBytes: st.DBSize, WriterQueueDepth: st.QueueDepth, CommittedOps: st.Committed, Commits: st.Commits,
		WriteErrors: st.WriteErrors, Dropped: st.Drops, Swept: st.Swept, LastSweepAt: atTime(st.LastSweep),
		LastSweepRemoved: st.LastSweepCount}
}
