package latch

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Origin tells what created a latch.
type Origin uint8

const (
	// OriginPolicy: automatic latching, a flow or listening socket covered
	// by a child SA whose policy latches (RFC 5660 2).
	OriginPolicy Origin = iota + 1
	// OriginListener: a flow accepted on a LISTENER latch's 3-tuple (RFC
	// 5660 2.3).
	OriginListener
	// OriginAPI: CREATE_CONNECTION_LATCH or CREATE_LISTENER_LATCH (RFC
	// 5660 2.3).
	OriginAPI
)

func (o Origin) String() string {
	switch o {
	case OriginPolicy:
		return "policy"
	case OriginListener:
		return "listener"
	case OriginAPI:
		return "api"
	}
	return "Origin(" + strconv.Itoa(int(o)) + ")"
}

// LatchInfo is everything the machine knows of a latch (RFC 5660 2.3
// INQUIRE_LATCH: "all available information about the given latch").
type LatchInfo struct {
	ID     LatchID
	State  State
	Tuple  Tuple // a listener latch has no Remote
	Cookie uint64
	Origin Origin
	// Listener is the LISTENER latch a latch was born from.
	Listener LatchID `json:",omitempty"`
	// Peer and Protection are the latched parameters; zero for a listener
	// latch that asked for none.
	Peer       Peer
	PeerID     string `json:",omitempty"` // identity the peer asserted
	Protection Protection
	// QoPIndeterminate is set when the latch was made from an SA whose
	// traffic selectors cover more than this one flow (RFC 5660 2.1): the
	// latched algorithms are the ones negotiated then, and a new SA may
	// negotiate others from the same proposals, which breaks the latch.
	QoPIndeterminate bool
	Disposition      Disposition
	// SAs are the congruent child SAs bound to the latch; Conflicts the
	// child SAs that cover its flow with another peer or protection.
	SAs       []uint64 `json:",omitempty"`
	Conflicts []uint64 `json:",omitempty"`
	// Lost says the latch lost all its congruent SAs; PolicyBroken that
	// its policy no longer allows its protection. Either breaks it.
	Lost         bool `json:",omitempty"`
	PolicyBroken bool `json:",omitempty"`
	// Reset says the socket was reset when the latch broke: the latch
	// stays BROKEN until the socket is gone.
	Reset   bool `json:",omitempty"`
	Created time.Time
	Changed time.Time // of the last transition, birth included
	Reason  string    // of the last transition
}

func (r *rec) info() LatchInfo {
	li := LatchInfo{
		ID: r.id, State: r.state, Tuple: r.tuple, Cookie: r.cookie, Origin: r.origin, Listener: r.parent,
		Peer: r.peer, PeerID: r.peerID, QoPIndeterminate: r.qopIndet, Disposition: r.disp,
		Lost: r.lost, PolicyBroken: r.policyBroken, Reset: r.reset, Created: r.created, Changed: r.changed, Reason: r.reason,
	}
	if r.prot != nil {
		li.Protection = *r.prot
	}
	for _, c := range r.bound {
		li.SAs = append(li.SAs, c.id)
	}
	for _, c := range r.conflicts {
		li.Conflicts = append(li.Conflicts, c.id)
	}
	slices.Sort(li.SAs)
	slices.Sort(li.Conflicts)
	return li
}

// CreateConnection is RFC 5660 2.3 CREATE_CONNECTION_LATCH for the flow t,
// whose socket cookie the driver should look up first (zero: unknown, then
// the latch takes the cookie of the first socket seen on t). It latches the
// parameters of the SAs that cover t, overridden by w, and fails with
// ErrExists if t is latched, ErrConflict if a covering SA does not match
// (2.3: no latch is created over conflicting SAs), ErrNoSA if no SA covers
// t and w does not name both a peer and a protection (then the caller may
// have the SA initiated and ask again). With both named and no SA, the latch
// is born ESTABLISHED and breaks on the first SA that does not match.
func (m *Machine) CreateConnection(at time.Time, t Tuple, cookie uint64, w Want) (LatchID, error) {
	if m.needSAs || m.needFlows {
		return 0, ErrNeedSnapshot
	}
	t = t.canon()
	if !t.Local.IsValid() || !connected(t) {
		return 0, fmt.Errorf("%w: incomplete 5-tuple %v", ErrInvalid, t)
	}
	m.begin(at)
	defer m.end()
	f := m.flows[t]
	switch {
	case f == nil:
		f = &rec{tuple: t, cookie: cookie}
	case f.id != 0:
		return 0, fmt.Errorf("%w: latch %d", ErrExists, f.id)
	case cookie != 0 && f.cookie != 0 && cookie != f.cookie:
		return 0, fmt.Errorf("%w: cookie %d, the socket on %v has %d", ErrInvalid, cookie, t, f.cookie)
	}
	if err := m.latchFlow(f, m.coveringSAs(t), &w, nil); err != nil {
		return 0, err
	}
	if f.bucket == nil {
		m.indexFlow(f)
	}
	if f.cookie == 0 {
		f.cookie = cookie
	}
	return f.id, nil
}

// CreateListener is RFC 5660 2.3 CREATE_LISTENER_LATCH for the listening
// endpoint e (cookie as for CreateConnection). Flows accepted on e are
// latched whatever their SAs' policy, to the parameters in w where given,
// and Alerts about them name the listener latch. It fails with ErrExists
// if e has a LISTENER latch.
func (m *Machine) CreateListener(at time.Time, e Endpoint, cookie uint64, w Want) (LatchID, error) {
	if m.needSAs || m.needFlows {
		return 0, ErrNeedSnapshot
	}
	e.Local = canonAddrPort(e.Local)
	if !e.Local.IsValid() {
		return 0, fmt.Errorf("%w: endpoint %v", ErrInvalid, e)
	}
	m.begin(at)
	defer m.end()
	l := m.listeners[e]
	switch {
	case l == nil:
		l = &rec{listener: true, tuple: e.Tuple(), cookie: cookie}
		m.listeners[e] = l
	case l.id != 0:
		return 0, fmt.Errorf("%w: latch %d", ErrExists, l.id)
	case cookie != 0 && l.cookie != 0 && cookie != l.cookie:
		return 0, fmt.Errorf("%w: cookie %d, the socket on %v has %d", ErrInvalid, cookie, e, l.cookie)
	}
	if l.cookie == 0 {
		l.cookie = cookie
	}
	m.latchListener(l, nil, &w, OriginAPI)
	return l.id, nil
}

// Release is RFC 5660 2.3 RELEASE_LATCH: the latch goes to CLOSED and is
// deleted, without touching its socket. The socket, if it lives on, is not
// latched again automatically.
func (m *Machine) Release(at time.Time, id LatchID) error {
	r := m.latches[id]
	if r == nil {
		return fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	m.begin(at)
	defer m.end()
	m.closeLatch(r, "released", false, true)
	return nil
}

// AdminClose closes a latch administratively (RFC 5660 2.2, 6.2): it goes
// to CLOSED and its socket is reset (2.3: the ULP acts as though the
// connection had been reset by the peer).
func (m *Machine) AdminClose(at time.Time, id LatchID, reason string) error {
	r := m.latches[id]
	if r == nil {
		return fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	m.begin(at)
	defer m.end()
	m.closeLatch(r, "closed by the administrator: "+reason, true, true)
	return nil
}

// Find is RFC 5660 2.3 FIND_LATCH: the latch of the flow t, or of the
// listening endpoint when t has no remote end (see Flow).
func (m *Machine) Find(t Tuple) (LatchID, bool) {
	t = t.canon()
	var r *rec
	if connected(t) {
		r = m.flows[t]
	} else {
		r = m.listeners[Endpoint{t.Proto, t.Local}]
	}
	if r == nil || r.id == 0 {
		return 0, false
	}
	return r.id, true
}

// Inquire is RFC 5660 2.3 INQUIRE_LATCH.
func (m *Machine) Inquire(id LatchID) (LatchInfo, error) {
	r := m.latches[id]
	if r == nil {
		return LatchInfo{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	return r.info(), nil
}

// Latches returns every latch in the LD, by ID.
func (m *Machine) Latches() []LatchInfo {
	out := make([]LatchInfo, 0, len(m.latches))
	for _, r := range m.latches {
		out = append(out, r.info())
	}
	slices.SortFunc(out, func(a, b LatchInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Len returns the number of latches in the LD.
func (m *Machine) Len() int { return len(m.latches) }
