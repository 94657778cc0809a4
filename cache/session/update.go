package session

import "time"

// Kind is what a packet said about a session.
type Kind uint8

// Kinds of Update.
const (
	// KindAccept: an Access-Accept (the cloud's or a local decision) admitted the client.
	KindAccept Kind = iota + 1
	// KindStart, KindInterim, KindStop: Acct-Status-Type 1, 3 and 2 (RFC 2866 §5.1, RFC 2869 §5.1).
	KindStart
	KindInterim
	KindStop
	// KindNASReboot: Accounting-On or Accounting-Off (Acct-Status-Type 7, 8): the NAS restarted
	// or stopped, so every session it had is over (RFC 2866 §5.1).
	KindNASReboot
	// KindReplica: Rec is a whole record another edge of the cluster wrote (its replicated form,
	// UnmarshalReplica), merged under the rule of MergeReplica; At is ignored.
	KindReplica
)

var kindNames = [...]string{"", "accept", "start", "interim", "stop", "nas-reboot", "replica"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "kind?"
}

// Update is one packet's news about a session, in the fields of a Record: the ones the packet
// carried are set, the rest are zero. ID, State, Reconcile, Expires and the times are the store's
// and are ignored; Decider is read for KindAccept only.
type Update struct {
	Kind Kind
	At   time.Time
	Rec  Record
}

// Change is what happened to a record, as told to an Observer.
type Change uint8

// Changes.
const (
	ChangeCreated Change = iota + 1 // prev is nil
	ChangeUpdated                   // an Accept (re-authentication), Start or Interim-Update, or reconciliation
	ChangeEnded                     // Stop, or the NAS rebooted: cur.State is StateStopped
	ChangeExpired                   // removed by the sweeper: cur is nil
	ChangeEvicted                   // removed to admit a new session at MaxEntries: cur is nil
)

var changeNames = [...]string{"", "created", "updated", "ended", "expired", "evicted"}

func (c Change) String() string {
	if int(c) < len(changeNames) && c != 0 {
		return changeNames[c]
	}
	return "change?"
}

// Observer is told of every committed change, in commit order, on the goroutine that committed
// it (the tracker's writer or the sweeper), never on the request path. It must not block for
// long: the table's writer waits for it. It may read the store (Find) but must not write to it
// (Apply, Sweep, MarkReconciled wait for it to return). prev and cur are copies it may keep.
type Observer interface {
	SessionChanged(c Change, prev, cur *Record)
}
