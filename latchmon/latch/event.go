package latch

import "time"

// Event is an input of the machine. Every event carries the time the
// driver observed it; the machine has no clock of its own.
type Event interface {
	eventAt() time.Time
}

// IKEUp reports an established IKE SA. It is idempotent: the driver may send
// it before every ChildUp taken from the same VICI message. An IKEUp for a
// known ID with other SPIs or another Auth is a new IKE SA that replaced the
// old one (charon reuses uniqueids after a restart): the old one goes down.
type IKEUp struct {
	At  time.Time
	IKE IKE
}

// IKERekeyed reports that IKE SA Old was rekeyed into New (VICI ike-rekey).
// New continues Old's lineage and takes over its child SAs; New.Auth is
// used only when Old is unknown (events were lost), and then New starts a
// lineage of its own. Reauthentication is not a rekey: the driver reports
// it as IKEUp of the new IKE SA and IKEDown of the old.
type IKERekeyed struct {
	At  time.Time
	Old uint64
	New IKE
}

// IKEDown reports that an IKE SA is gone, with its child SAs. Reason is
// free text, such as "deleted" or "dpd".
type IKEDown struct {
	At     time.Time
	ID     uint64
	Reason string
}

// ChildUp reports an installed child SA. Its IKE SA must be known (IKEUp).
type ChildUp struct {
	At    time.Time
	Child Child
}

// ChildRekeyed reports that child SA Old was rekeyed into New (VICI
// child-rekey). New.IKEID zero means Old's IKE SA. A rekey with equal
// parameters changes no latch; otherwise it acts as ChildUp of New followed
// by ChildDown of Old.
type ChildRekeyed struct {
	At  time.Time
	Old uint64
	New Child
}

// ChildDown reports that a child SA is gone. Reason is free text, such as
// "deleted", "expired" or "dpd".
type ChildDown struct {
	At     time.Time
	ID     uint64
	Reason string
}

// FlowSeen reports a socket found in a dump. Seeing a known socket again
// changes nothing; a socket on the 5-tuple (or listening 3-tuple) of a known
// one with another cookie replaces it.
type FlowSeen struct {
	At   time.Time
	Flow Flow
}

// FlowGone reports a socket destroyed (sock_diag destroy notification). A
// zero Cookie matches any socket on the tuple; a cookie that differs from
// the known socket's is stale and ignored.
type FlowGone struct {
	At   time.Time
	Flow Flow
}

// PolicyChanged sets the latching policy of one child config (load-conn,
// unload-conn, a reload of the policy directory). The driver sends the
// policies before the SAs they govern; a child SA whose config has no
// policy is not latched automatically and uses the default disposition.
type PolicyChanged struct {
	At     time.Time
	Policy Policy
}

// Snapshot is a full resynchronisation (list-sas, a socket dump), sent at
// start and after any gap in the events. When SAs is set, IKEs and Children
// are every SA that exists: SAs the machine knows that are absent are down.
// When Flows is set, Sockets are every socket: flows the machine knows that
// are absent are gone. The latches change as if the events had been seen,
// but each latch raises at most one Alert, from its state before the
// snapshot to its state after it.
type Snapshot struct {
	At       time.Time
	SAs      bool
	IKEs     []IKE
	Children []Child
	Flows    bool
	Sockets  []Flow
}

func (e IKEUp) eventAt() time.Time         { return e.At }
func (e IKERekeyed) eventAt() time.Time    { return e.At }
func (e IKEDown) eventAt() time.Time       { return e.At }
func (e ChildUp) eventAt() time.Time       { return e.At }
func (e ChildRekeyed) eventAt() time.Time  { return e.At }
func (e ChildDown) eventAt() time.Time     { return e.At }
func (e FlowSeen) eventAt() time.Time      { return e.At }
func (e FlowGone) eventAt() time.Time      { return e.At }
func (e PolicyChanged) eventAt() time.Time { return e.At }
func (e Snapshot) eventAt() time.Time      { return e.At }

// Action is an output of the machine, drained with Ready.
type Action interface {
	isAction()
}

// Alert announces a transition of a latch, its birth (From None) and its
// end (To Closed) included: RFC 5660 2.3 ALERT(latch handle, 5-tuple, new
// state, [reason]). Listener is the LISTENER latch whose holder must hear of
// a latch born from it, or zero.
type Alert struct {
	LatchID  LatchID
	Listener LatchID `json:",omitempty"`
	Tuple    Tuple
	From, To State
	Reason   string
	At       time.Time
}

// Reset asks the driver to destroy the socket of a latch (sock_diag
// SOCK_DESTROY, by cookie so that a reused 5-tuple is never hit): the
// disposition of a break (RFC 5660 5.5 (b)) or an administrative close
// (RFC 5660 2.3). The driver reports the socket's end with FlowGone.
type Reset struct {
	LatchID LatchID
	Tuple   Tuple
	Cookie  uint64
}

// Persist says the latch database changed since the last Ready: the driver
// should save Marshal() before it relies on the latches surviving a
// restart.
type Persist struct{}

func (Alert) isAction()   {}
func (Reset) isAction()   {}
func (Persist) isAction() {}
