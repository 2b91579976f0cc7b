package latch

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Machine is the latch database (LD) of RFC 5660 2.3 and the state machine
// of its latches. It is driven by Step and the API methods, and its outputs
// are drained with Ready. A Machine is not safe for concurrent use.
type Machine struct {
	step uint64    // number of the Step or API call being run
	at   time.Time // its time

	nextID      LatchID
	nextLineage uint64
	childSeq    uint64 // order of arrival of child SAs
	childStamp  uint64 // dedup marks for walks over child SAs (never wrap)
	flowStamp   uint64 // and over flows
	snapGen     uint64

	ikes     map[uint64]*ikeRec
	children map[uint64]*childRec
	saTrie   trie[*saSet] // child SAs by remote traffic selector
	policies map[polKey]*Policy
	prots    map[Protection]*Protection // interned: congruence is pointer equality

	latches   map[LatchID]*rec
	flows     map[Tuple]*rec    // connected sockets, latched or not
	flowTrie  trie[*bucket]     // flows by remote address
	listeners map[Endpoint]*rec // listening sockets and listener latches

	touched []*rec
	actions []Action
	dirty   bool

	// needSAs and needFlows are set by Restore until a Snapshot of each
	// kind has re-validated the restored latches.
	needSAs, needFlows bool
}

type polKey struct{ conn, child string }

type ikeRec struct {
	IKE
	peer     Peer
	children map[uint64]*childRec
	snapGen  uint64
}

type childRec struct {
	id            uint64
	ike           *ikeRec
	peer          Peer
	prot          *Protection
	pol           *Policy
	local, remote []Selector
	seq           uint64
	latches       map[*rec]struct{} // latches bound to this SA (congruent)
	conflicts     map[*rec]struct{} // latches this SA conflicts with
	mark          uint64
	snapGen       uint64
	desc          string // String, made on first use
	interference  bool   // Child.Interference
}

func (c *childRec) autoLatch() bool { return c.pol.Latch && !c.pol.Removed && !c.interference }

func (c *childRec) String() string {
	if c.desc == "" && c.interference {
		c.desc = c.prot.Child
	}
	if c.desc == "" {
		c.desc = fmt.Sprintf("child SA %d (%s/%s)", c.id, c.prot.Conn, c.prot.Child)
	}
	return c.desc
}

type saSet struct{ cs []*childRec }

type bucket struct {
	addr netip.Addr
	recs []*rec
}

// rec is a socket the machine knows and, when id is not zero, its latch.
// Connected sockets live in Machine.flows, listening ones in
// Machine.listeners; a latch that closes leaves its rec for good (the
// socket, if it lives on, gets a new rec).
type rec struct {
	id       LatchID
	state    State
	listener bool
	tuple    Tuple
	cookie   uint64
	origin   Origin
	parent   LatchID
	peer     Peer // zero for a listener latch that asked for none
	peerID   string
	prot     *Protection // nil for a listener latch that asked for none
	disp     Disposition
	qopIndet bool

	lost         bool // had congruent SAs and lost them all
	policyBroken bool // the policy no longer allows the protection
	reset        bool // its socket was reset on a break: it never mends
	noAuto       bool // released or closed: never latch this socket again by itself
	resetOnClose bool
	restored     bool

	bound, conflicts []*childRec

	bucket *bucket
	bpos   int

	created, changed time.Time
	reason           string

	touchStep uint64
	from      State
	mark      uint64
	snapGen   uint64
}

// compute returns the state a latch is in given its bindings. RFC 5660
// 2.2: BROKEN when SAs conflict with it, when the SPD changed what it
// latched, or when it lost its SAs; ESTABLISHED otherwise. A latch whose
// socket was reset stays BROKEN until the socket is gone (5.5 (b): the
// connection acts as though reset, it cannot come back).
func (r *rec) compute() State {
	switch {
	case r.listener:
		return Listener
	case len(r.conflicts) > 0 || r.lost || r.policyBroken || r.reset:
		return Broken
	}
	return Established
}

func (r *rec) endpoint() Endpoint { return Endpoint{r.tuple.Proto, r.tuple.Local} }

func (r *rec) congruent(c *childRec) bool { return c.peer == r.peer && c.prot == r.prot }

// New returns an empty machine.
func New() *Machine {
	return &Machine{
		ikes:      make(map[uint64]*ikeRec),
		children:  make(map[uint64]*childRec),
		policies:  make(map[polKey]*Policy),
		prots:     make(map[Protection]*Protection),
		latches:   make(map[LatchID]*rec),
		flows:     make(map[Tuple]*rec),
		listeners: make(map[Endpoint]*rec),
	}
}

// Step applies one event. It returns an error for an event it cannot apply
// (ErrUnknownIKE, ErrInvalid, ErrNeedSnapshot after Restore); an error
// from a Snapshot is returned after the rest of the snapshot was applied.
func (m *Machine) Step(ev Event) error {
	if ev == nil {
		return fmt.Errorf("%w: nil event", ErrInvalid)
	}
	if m.needSAs || m.needFlows {
		switch ev.(type) {
		case Snapshot, PolicyChanged:
		default:
			return ErrNeedSnapshot
		}
	}
	m.begin(ev.eventAt())
	defer m.end()
	switch e := ev.(type) {
	case IKEUp:
		_, err := m.ikeUp(e.IKE)
		return err
	case IKERekeyed:
		return m.ikeRekeyed(e.Old, e.New)
	case IKEDown:
		if r := m.ikes[e.ID]; r != nil {
			m.ikeDown(r, fmt.Sprintf("IKE SA %d down: %s", e.ID, e.Reason))
		}
		return nil
	case ChildUp:
		return m.childUp(e.Child)
	case ChildRekeyed:
		return m.childRekeyed(e.Old, e.New)
	case ChildDown:
		if c := m.children[e.ID]; c != nil {
			m.removeChild(c, fmt.Sprintf("child SA %d down: %s", e.ID, e.Reason))
		}
		return nil
	case FlowSeen:
		_, err := m.flowSeen(e.Flow)
		return err
	case FlowGone:
		return m.flowGone(e.Flow)
	case PolicyChanged:
		return m.policyChanged(e.Policy)
	case Snapshot:
		return m.snapshot(e)
	}
	return fmt.Errorf("%w: event %T", ErrInvalid, ev)
}

// Ready returns the actions produced since the last call, in order, and
// forgets them. It ends with Persist when the latch database changed.
func (m *Machine) Ready() []Action {
	if m.dirty {
		m.actions = append(m.actions, Persist{})
		m.dirty = false
	}
	a := m.actions
	m.actions = nil
	return a
}

func (m *Machine) begin(at time.Time) {
	m.step++
	m.at = at
}

// end emits one Alert per latch whose state differs from its state before
// the step (so a rekey that binds the new SA before it drops the old one
// raises nothing), in latch order, each with the Reset its disposition asks
// for.
func (m *Machine) end() {
	if len(m.touched) == 0 {
		return
	}
	slices.SortFunc(m.touched, func(a, b *rec) int { return cmp.Compare(a.id, b.id) })
	for _, r := range m.touched {
		r.touchStep = 0
		if r.from == r.state {
			continue
		}
		r.changed = m.at
		m.actions = append(m.actions, Alert{
			LatchID: r.id, Listener: r.parent, Tuple: r.tuple,
			From: r.from, To: r.state, Reason: r.reason, At: m.at,
		})
		reset := r.state == Broken && r.disp == DispositionReset || r.state == Closed && r.resetOnClose
		if reset && r.cookie != 0 {
			r.reset = true
			m.actions = append(m.actions, Reset{LatchID: r.id, Tuple: r.tuple, Cookie: r.cookie})
		}
	}
	clear(m.touched)
	m.touched = m.touched[:0]
}

// touch records r's state before the step, once per step.
func (m *Machine) touch(r *rec) {
	m.dirty = true
	if r.touchStep == m.step {
		return
	}
	r.touchStep = m.step
	r.from = r.state
	m.touched = append(m.touched, r)
}

// update recomputes r's state after a change of its bindings.
func (m *Machine) update(r *rec, reason string) {
	if s := r.compute(); s != r.state {
		m.touch(r)
		r.state = s
		r.reason = reason
	}
}

func (m *Machine) intern(p Protection) *Protection {
	if q, ok := m.prots[p]; ok {
		return q
	}
	q := &p
	m.prots[p] = q
	return q
}

func (m *Machine) policy(conn, child string) *Policy {
	k := polKey{conn, child}
	p := m.policies[k]
	if p == nil {
		p = &Policy{Conn: conn, Child: child}
		m.policies[k] = p
	}
	return p
}

// IKE SAs.

func (m *Machine) ikeUp(ike IKE) (*ikeRec, error) {
	switch {
	case ike.ID == 0,
		ike.Auth.Kind == KeyPeer && ike.Auth.Fingerprint == "",
		ike.Auth.Kind != KeyPeer && ike.Auth.Kind != AnonymousPeer:
		return nil, fmt.Errorf("%w: IKE SA %d with auth %+v", ErrInvalid, ike.ID, ike.Auth)
	}
	if r := m.ikes[ike.ID]; r != nil {
		if r.InitiatorSPI == ike.InitiatorSPI && r.ResponderSPI == ike.ResponderSPI && r.Auth == ike.Auth {
			return r, nil
		}
		m.ikeDown(r, fmt.Sprintf("IKE SA %d replaced by a new IKE SA with the same uniqueid", ike.ID))
	}
	r := &ikeRec{IKE: ike, peer: m.peerFor(ike.Auth), children: make(map[uint64]*childRec)}
	m.ikes[ike.ID] = r
	m.ikeChanged(r)
	return r, nil
}

func (m *Machine) peerFor(a Auth) Peer {
	if a.Kind == KeyPeer {
		return Peer{Kind: KeyPeer, Fingerprint: a.Fingerprint}
	}
	m.nextLineage++
	return Peer{Kind: AnonymousPeer, Lineage: m.nextLineage}
}

// ikeRekeyed carries Old's lineage over to New and moves Old's children to
// it (RFC 5387 5.8: the IKE rekey is protected by the old IKE SA, so the
// peer is the same; nothing else continues a lineage).
func (m *Machine) ikeRekeyed(old uint64, nw IKE) error {
	o := m.ikes[old]
	if nw.ID == old {
		return nil
	}
	if o == nil {
		// Unknown lineage: the new IKE SA starts its own (fail safe).
		if nw.Auth.Kind == 0 {
			return fmt.Errorf("%w: %d (rekeyed into %d)", ErrUnknownIKE, old, nw.ID)
		}
		_, err := m.ikeUp(nw)
		return err
	}
	nw.Auth = o.Auth
	n := m.ikes[nw.ID]
	if n != nil && n.peer != o.peer {
		// IKEUp of New came first and gave it a lineage of its own: its
		// child SAs were judged as another peer's. Judge them again.
		var again []Child
		for _, c := range sortedChildren(n.children) {
			again = append(again, c.spec())
			m.removeChild(c, fmt.Sprintf("IKE SA %d is a rekey of IKE SA %d", nw.ID, old))
		}
		n.peer = o.peer
		for _, c := range again {
			if err := m.childUp(c); err != nil {
				return err
			}
		}
	}
	if n == nil {
		n = &ikeRec{IKE: nw, peer: o.peer, children: make(map[uint64]*childRec)}
		m.ikes[nw.ID] = n
	}
	n.InitiatorSPI, n.ResponderSPI, n.Auth = nw.InitiatorSPI, nw.ResponderSPI, o.Auth
	if nw.RemoteID != "" {
		n.RemoteID = nw.RemoteID
	}
	for id, c := range o.children {
		c.ike = n
		n.children[id] = c
	}
	delete(m.ikes, old)
	m.ikeChanged(n)
	return nil
}

func (m *Machine) ikeDown(r *ikeRec, reason string) {
	for _, c := range sortedChildren(r.children) {
		m.removeChild(c, reason)
	}
	delete(m.ikes, r.ID)
	m.ikeChanged(r)
}

// ikeChanged marks the LD dirty when an anonymous peer's IKE SA came, went
// or was rekeyed: Marshal keeps those, to carry lineages over a restart.
func (m *Machine) ikeChanged(r *ikeRec) {
	if r.peer.Kind == AnonymousPeer {
		m.dirty = true
	}
}

func sortedChildren(cs map[uint64]*childRec) []*childRec {
	out := make([]*childRec, 0, len(cs))
	for _, c := range cs {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *childRec) int { return cmp.Compare(a.id, b.id) })
	return out
}

// Child SAs.

func (c *childRec) spec() Child {
	return Child{IKEID: c.ike.ID, ID: c.id, Protection: *c.prot, LocalTS: c.local, RemoteTS: c.remote, Interference: c.interference}
}

// canonSelectors returns ss with canonical prefixes, without the invalid
// ones (which match nothing).
func canonSelectors(ss []Selector) []Selector {
	out := make([]Selector, 0, len(ss))
	for _, s := range ss {
		if s.Prefix.IsValid() {
			s.Prefix = canonPrefix(s.Prefix)
			out = append(out, s)
		}
	}
	return out
}

func (m *Machine) childUp(c Child) error {
	ike := m.ikes[c.IKEID]
	if ike == nil {
		return fmt.Errorf("%w: %d (child SA %d)", ErrUnknownIKE, c.IKEID, c.ID)
	}
	if c.ID == 0 {
		return fmt.Errorf("%w: child SA without uniqueid", ErrInvalid)
	}
	local, remote := canonSelectors(c.LocalTS), canonSelectors(c.RemoteTS)
	if old := m.children[c.ID]; old != nil {
		if old.ike == ike && *old.prot == c.Protection && slices.Equal(old.local, local) && slices.Equal(old.remote, remote) && old.interference == c.Interference {
			return nil
		}
		m.removeChild(old, fmt.Sprintf("child SA %d replaced", c.ID))
	}
	m.childSeq++
	cr := &childRec{
		id: c.ID, ike: ike, peer: ike.peer, prot: m.intern(c.Protection),
		pol: m.policy(c.Protection.Conn, c.Protection.Child), local: local, remote: remote, seq: m.childSeq,
		interference: c.Interference,
	}
	m.children[c.ID] = cr
	ike.children[c.ID] = cr
	for i, s := range remote {
		if slices.ContainsFunc(remote[:i], func(o Selector) bool { return o.Prefix == s.Prefix }) {
			continue
		}
		n := m.saTrie.slot(s.Prefix)
		if n.val == nil {
			n.val = &saSet{}
		}
		n.val.cs = append(n.val.cs, cr)
	}
	m.applyChild(cr, false)
	return nil
}

// applyChild judges the flows and listening sockets that a new child SA
// covers; with pendingOnly (a policy that starts latching), only those not
// latched yet.
func (m *Machine) applyChild(cr *childRec, pendingOnly bool) {
	m.flowStamp++
	stamp := m.flowStamp
	for _, s := range cr.remote {
		m.flowTrie.within(s.Prefix, func(b *bucket) {
			for i := 0; i < len(b.recs); i++ {
				f := b.recs[i]
				if f.mark == stamp {
					continue
				}
				f.mark = stamp
				if (!pendingOnly || f.id == 0) && covers(cr.local, cr.remote, f.tuple) {
					m.covered(f, cr)
				}
			}
		})
	}
	if !cr.autoLatch() {
		return
	}
	var pending []*rec
	for _, l := range m.listeners {
		if l.id == 0 && !l.noAuto && coversEndpoint(cr.local, l.endpoint()) {
			pending = append(pending, l)
		}
	}
	slices.SortFunc(pending, func(a, b *rec) int { return compareEndpoint(a.endpoint(), b.endpoint()) })
	for _, l := range pending {
		m.latchListener(l, cr, nil, OriginPolicy)
	}
}

func compareEndpoint(a, b Endpoint) int {
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	return a.Local.Compare(b.Local)
}

// covered applies RFC 5660 2.3 to a flow covered by a new child SA: a
// congruent SA binds to its latch (and mends it if it had lost its SAs);
// any other SA conflicts with it and breaks it. An unlatched flow gets a
// latch when the SA's policy latches or a listener latch accepted it.
func (m *Machine) covered(f *rec, cr *childRec) {
	if f.id != 0 {
		if f.congruent(cr) {
			f.bound = append(f.bound, cr)
			if cr.latches == nil {
				cr.latches = make(map[*rec]struct{})
			}
			cr.latches[f] = struct{}{}
			if f.lost {
				f.lost = false
				m.update(f, "congruent "+cr.String()+" up")
			}
			return
		}
		m.conflict(f, cr)
		m.update(f, "conflicting "+cr.String()+": "+m.difference(f, cr))
		return
	}
	if f.noAuto {
		return
	}
	parent := m.listenerFor(f.tuple)
	if parent == nil && !cr.autoLatch() {
		return
	}
	_ = m.latchFlow(f, m.coveringSAs(f.tuple), nil, parent)
}

func (m *Machine) conflict(f *rec, cr *childRec) {
	f.conflicts = append(f.conflicts, cr)
	if cr.conflicts == nil {
		cr.conflicts = make(map[*rec]struct{})
	}
	cr.conflicts[f] = struct{}{}
}

func (m *Machine) difference(f *rec, cr *childRec) string {
	switch {
	case cr.interference:
		return "not the key manager's"
	case f.peer != cr.peer && f.prot != cr.prot:
		return "other peer and protection"
	case f.peer != cr.peer:
		return "other peer (" + cr.peer.String() + ")"
	}
	return "other protection (" + cr.prot.String() + ")"
}

// coveringSAs returns the child SAs whose selectors cover t, oldest first.
func (m *Machine) coveringSAs(t Tuple) []*childRec {
	m.childStamp++
	stamp := m.childStamp
	var out []*childRec
	m.saTrie.containing(t.Remote.Addr(), func(s *saSet) {
		for _, c := range s.cs {
			if c.mark != stamp {
				c.mark = stamp
				if covers(c.local, c.remote, t) {
					out = append(out, c)
				}
			}
		}
	})
	slices.SortFunc(out, func(a, b *childRec) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

func (m *Machine) childRekeyed(old uint64, nw Child) error {
	o := m.children[old]
	if o == nil {
		return m.childUp(nw)
	}
	if nw.IKEID == 0 {
		nw.IKEID = o.ike.ID
	}
	if nw.ID == old {
		return m.childUp(nw)
	}
	if ike := m.ikes[nw.IKEID]; ike != nil && m.children[nw.ID] == nil && ike.peer == o.peer &&
		*o.prot == nw.Protection && sameSelectors(o.local, nw.LocalTS) && sameSelectors(o.remote, nw.RemoteTS) && o.interference == nw.Interference {
		m.handOver(o, ike, nw.ID)
		return nil
	}
	err := m.childUp(nw)
	m.removeChild(o, fmt.Sprintf("child SA %d rekeyed into child SA %d", old, nw.ID))
	return err
}

// handOver replaces child SA o by its rekeyed successor id, which has the
// same peer, protection and selectors: it binds to, and conflicts with,
// exactly the latches o did, so it takes over o's records (and its age)
// without judging a flow again. This is the common SA event; it allocates
// one record.
func (m *Machine) handOver(o *childRec, ike *ikeRec, id uint64) {
	n := &childRec{
		id: id, ike: ike, peer: o.peer, prot: o.prot, pol: o.pol, local: o.local, remote: o.remote, seq: o.seq,
		latches: o.latches, conflicts: o.conflicts, interference: o.interference,
	}
	for f := range n.latches {
		replace(f.bound, o, n)
	}
	for f := range n.conflicts {
		replace(f.conflicts, o, n)
	}
	for i, s := range n.remote {
		if slices.ContainsFunc(n.remote[:i], func(x Selector) bool { return x.Prefix == s.Prefix }) {
			continue
		}
		if set, ok := m.saTrie.get(s.Prefix); ok {
			replace(set.cs, o, n)
		}
	}
	delete(o.ike.children, o.id)
	delete(m.children, o.id)
	ike.children[id] = n
	m.children[id] = n
}

func replace[T comparable](s []T, old, nw T) {
	if i := slices.Index(s, old); i >= 0 {
		s[i] = nw
	}
}

// sameSelectors reports whether canon (made by canonSelectors) and ss are
// the same selectors once ss is made canonical.
func sameSelectors(canon, ss []Selector) bool {
	i := 0
	for _, s := range ss {
		if !s.Prefix.IsValid() {
			continue
		}
		s.Prefix = canonPrefix(s.Prefix)
		if i == len(canon) || s != canon[i] {
			return false
		}
		i++
	}
	return i == len(canon)
}

// removeChild takes a child SA away: latches bound to it alone lose their
// SAs and break; latches it conflicted with may mend.
func (m *Machine) removeChild(cr *childRec, reason string) {
	for f := range cr.latches {
		f.bound = without(f.bound, cr)
		if len(f.bound) == 0 {
			f.lost = true
			m.update(f, reason)
		}
	}
	cleared := ""
	for f := range cr.conflicts {
		f.conflicts = without(f.conflicts, cr)
		if cleared == "" {
			cleared = "conflict cleared: " + reason
		}
		m.update(f, cleared)
	}
	for i, s := range cr.remote {
		if slices.ContainsFunc(cr.remote[:i], func(o Selector) bool { return o.Prefix == s.Prefix }) {
			continue
		}
		if set, ok := m.saTrie.get(s.Prefix); ok {
			set.cs = without(set.cs, cr)
			if len(set.cs) == 0 {
				m.saTrie.remove(s.Prefix)
			}
		}
	}
	delete(cr.ike.children, cr.id)
	delete(m.children, cr.id)
}

func without[T comparable](s []T, x T) []T {
	for i, y := range s {
		if y == x {
			last := len(s) - 1
			s[i] = s[last]
			var zero T
			s[last] = zero
			return s[:last]
		}
	}
	return s
}

// Latches.

// latchFlow gives f a latch (RFC 5660 2.3): bound to the covering SAs
// congruent with its parameters, broken by the others. Its parameters are
// those of the oldest covering SA whose policy latches (or the oldest, for a
// latch asked for by the API or a listener latch), overridden by what was
// asked for. With want set (the API) it fails instead of creating a latch
// that conflicting SAs would break at birth.
func (m *Machine) latchFlow(f *rec, cov []*childRec, want *Want, parent *rec) error {
	var anchor *childRec
	for _, c := range cov {
		if !c.interference && (want != nil || parent != nil || c.autoLatch()) {
			anchor = c
			break
		}
	}
	var peer Peer
	var prot *Protection
	var peerID string
	disp := DispositionDefault
	if anchor != nil {
		peer, prot, peerID = anchor.peer, anchor.prot, anchor.ike.RemoteID
	}
	if parent != nil {
		if parent.peer.Kind != 0 {
			peer = parent.peer
		}
		if parent.prot != nil {
			prot = parent.prot
		}
		if parent.disp != DispositionDefault {
			disp = parent.disp
		}
	}
	if want != nil {
		if want.Peer != nil {
			peer = *want.Peer
		}
		if want.Protection != nil {
			prot = m.intern(*want.Protection)
		}
		if want.OnBreak != DispositionDefault {
			disp = want.OnBreak
		}
	}
	if anchor == nil && want == nil || peer.Kind == 0 || prot == nil {
		return ErrNoSA
	}
	pol := m.policies[polKey{prot.Conn, prot.Child}]
	if disp == DispositionDefault && pol != nil {
		disp = pol.OnBreak
	}
	if want != nil {
		for _, c := range cov {
			if c.peer != peer || c.prot != prot {
				return fmt.Errorf("%w: child SA %d", ErrConflict, c.id)
			}
		}
	}
	m.nextID++
	f.id = m.nextID
	f.peer, f.prot, f.peerID = peer, prot, peerID
	f.disp = disp.resolve(f.tuple.Proto)
	f.created = m.at
	switch {
	case want != nil:
		f.origin = OriginAPI
	case parent != nil:
		f.origin, f.parent = OriginListener, parent.id
	default:
		f.origin = OriginPolicy
	}
	f.noAuto = false
	f.qopIndet = anchor != nil && !(len(anchor.local) == 1 && anchor.local[0].single(f.tuple.Proto) &&
		len(anchor.remote) == 1 && anchor.remote[0].single(f.tuple.Proto))
	if pol != nil {
		f.policyBroken = !pol.allows(*prot)
	}
	for _, c := range cov {
		if f.congruent(c) {
			f.bound = append(f.bound, c)
			if c.latches == nil {
				c.latches = make(map[*rec]struct{})
			}
			c.latches[f] = struct{}{}
		} else {
			m.conflict(f, c)
		}
	}
	m.latches[f.id] = f
	f.state = None
	m.touch(f)
	f.state = f.compute()
	switch {
	case len(f.conflicts) > 0:
		f.reason = "conflicting " + f.conflicts[0].String() + " at creation: " + m.difference(f, f.conflicts[0])
	case f.policyBroken:
		f.reason = "policy does not allow the protection"
	case anchor == nil:
		f.reason = "created with the requested parameters, no SA yet"
	default:
		f.reason = "latched to " + anchor.String()
	}
	return nil
}

func (m *Machine) latchListener(l *rec, cr *childRec, want *Want, origin Origin) {
	m.nextID++
	l.id = m.nextID
	l.origin = origin
	l.created = m.at
	l.noAuto = false
	disp := DispositionDefault
	if cr != nil {
		disp = cr.pol.OnBreak
		l.reason = "listening on an endpoint covered by " + cr.String()
	}
	if want != nil {
		if want.Peer != nil {
			l.peer = *want.Peer
		}
		if want.Protection != nil {
			l.prot = m.intern(*want.Protection)
		}
		disp = want.OnBreak
		l.reason = "created by the API"
	}
	// Kept unresolved: the flows it accepts resolve it by their protocol.
	l.disp = disp
	m.latches[l.id] = l
	l.state = None
	m.touch(l)
	l.state = Listener
}

// listenerFor returns the listener latch that accepts a flow, if any.
func (m *Machine) listenerFor(t Tuple) *rec {
	if len(m.listeners) == 0 {
		return nil
	}
	port := t.Local.Port()
	for _, e := range [...]Endpoint{
		{t.Proto, t.Local},
		{t.Proto, netip.AddrPortFrom(netip.IPv4Unspecified(), port)},
		{t.Proto, netip.AddrPortFrom(netip.IPv6Unspecified(), port)},
	} {
		if l := m.listeners[e]; l != nil && l.id != 0 && e.accepts(t.Proto, t.Local) {
			return l
		}
	}
	return nil
}

// closeLatch moves a latch to CLOSED and out of the LD (RFC 5660 2.2: the
// CLOSED state lasts until the owner is told, which the Alert does). Its rec
// leaves every index; keep says the socket lives on: a fresh, unlatched rec
// that is never latched again by itself takes its place.
func (m *Machine) closeLatch(r *rec, reason string, reset, keep bool) {
	if r.id != 0 {
		m.touch(r)
		r.state = Closed
		r.reason = reason
		r.resetOnClose = reset
		for _, c := range r.bound {
			delete(c.latches, r)
		}
		for _, c := range r.conflicts {
			delete(c.conflicts, r)
		}
		r.bound, r.conflicts = nil, nil
		delete(m.latches, r.id)
	}
	if r.listener {
		delete(m.listeners, r.endpoint())
	} else {
		m.unindexFlow(r)
	}
	if keep && r.cookie != 0 {
		n := &rec{listener: r.listener, tuple: r.tuple, cookie: r.cookie, noAuto: true, snapGen: r.snapGen}
		if n.listener {
			m.listeners[n.endpoint()] = n
		} else {
			m.indexFlow(n)
		}
	}
}

func (m *Machine) indexFlow(f *rec) {
	m.flows[f.tuple] = f
	a := f.tuple.Remote.Addr()
	n := m.flowTrie.slot(netip.PrefixFrom(a, a.BitLen()))
	if n.val == nil {
		n.val = &bucket{addr: a}
	}
	f.bucket = n.val
	f.bpos = len(n.val.recs)
	n.val.recs = append(n.val.recs, f)
}

func (m *Machine) unindexFlow(f *rec) {
	if m.flows[f.tuple] == f {
		delete(m.flows, f.tuple)
	}
	b := f.bucket
	if b == nil {
		return
	}
	last := len(b.recs) - 1
	b.recs[f.bpos] = b.recs[last]
	b.recs[f.bpos].bpos = f.bpos
	b.recs[last] = nil
	b.recs = b.recs[:last]
	f.bucket = nil
	if last == 0 {
		m.flowTrie.remove(netip.PrefixFrom(b.addr, b.addr.BitLen()))
	}
}

// Flows.

func (m *Machine) flowSeen(fl Flow) (*rec, error) {
	t := fl.Tuple.canon()
	if !t.Local.IsValid() {
		return nil, fmt.Errorf("%w: flow without a local address", ErrInvalid)
	}
	if fl.Listening || !connected(t) {
		return m.listenSeen(Endpoint{t.Proto, t.Local}, fl.Cookie), nil
	}
	if f := m.flows[t]; f != nil {
		switch {
		case fl.Cookie == f.cookie || fl.Cookie == 0:
			return f, nil
		case f.cookie == 0:
			f.cookie = fl.Cookie
			if f.id != 0 {
				m.dirty = true
			}
			return f, nil
		}
		m.closeLatch(f, "socket replaced by another with the same 5-tuple", false, false)
	}
	f := &rec{tuple: t, cookie: fl.Cookie}
	m.indexFlow(f)
	cov := m.coveringSAs(t)
	parent := m.listenerFor(t)
	if parent == nil && !slices.ContainsFunc(cov, (*childRec).autoLatch) {
		return f, nil
	}
	_ = m.latchFlow(f, cov, nil, parent)
	return f, nil
}

// connected reports whether t has a remote end: an unconnected UDP socket
// shows 0.0.0.0:0 there, and is a listening one.
func connected(t Tuple) bool {
	return t.Remote.IsValid() && !t.Remote.Addr().IsUnspecified() && t.Remote.Port() != 0
}

func (m *Machine) listenSeen(e Endpoint, cookie uint64) *rec {
	if l := m.listeners[e]; l != nil {
		switch {
		case cookie == l.cookie || cookie == 0:
			return l
		case l.cookie == 0:
			l.cookie = cookie
			if l.id != 0 {
				m.dirty = true
			}
			return l
		}
		m.closeLatch(l, "listening socket replaced by another", false, false)
	}
	l := &rec{listener: true, tuple: e.Tuple(), cookie: cookie}
	m.listeners[e] = l
	var anchor *childRec
	for _, c := range m.children {
		if c.autoLatch() && coversEndpoint(c.local, e) && (anchor == nil || c.seq < anchor.seq) {
			anchor = c
		}
	}
	if anchor != nil {
		m.latchListener(l, anchor, nil, OriginPolicy)
	}
	return l
}

func (m *Machine) flowGone(fl Flow) error {
	t := fl.Tuple.canon()
	var r *rec
	if fl.Listening || !connected(t) {
		r = m.listeners[Endpoint{t.Proto, t.Local}]
	} else {
		r = m.flows[t]
	}
	if r == nil || fl.Cookie != 0 && r.cookie != 0 && fl.Cookie != r.cookie {
		return nil
	}
	m.closeLatch(r, "socket closed", false, false)
	return nil
}

// Policies.

func (m *Machine) policyChanged(p Policy) error {
	if p.Conn == "" || p.Child == "" {
		return fmt.Errorf("%w: policy without connection or child name", ErrInvalid)
	}
	pr := m.policy(p.Conn, p.Child)
	wasLatch := pr.Latch && !pr.Removed
	*pr = p
	pr.Protections = slices.Clone(p.Protections)
	ids := make([]LatchID, 0)
	for id, f := range m.latches {
		if !f.listener && f.prot != nil && f.prot.Conn == p.Conn && f.prot.Child == p.Child {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		f := m.latches[id]
		broken := !pr.allows(*f.prot)
		if broken == f.policyBroken {
			continue
		}
		f.policyBroken = broken
		switch {
		case broken && p.Removed:
			m.update(f, fmt.Sprintf("policy %s/%s removed", p.Conn, p.Child))
		case broken:
			m.update(f, fmt.Sprintf("policy %s/%s changed: the latched protection is no longer allowed", p.Conn, p.Child))
		default:
			m.update(f, fmt.Sprintf("policy %s/%s allows the latched protection again", p.Conn, p.Child))
		}
	}
	if !wasLatch && pr.Latch && !pr.Removed {
		for _, c := range sortedChildren(m.children) {
			if c.pol == pr {
				m.applyChild(c, true)
			}
		}
	}
	return nil
}

// Snapshots.

func (m *Machine) snapshot(s Snapshot) error {
	m.snapGen++
	gen := m.snapGen
	var errs []error
	if s.SAs {
		for _, ike := range s.IKEs {
			r, err := m.ikeUp(ike)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			r.snapGen = gen
		}
		for _, c := range s.Children {
			if err := m.childUp(c); err != nil {
				errs = append(errs, err)
				continue
			}
			m.children[c.ID].snapGen = gen
		}
		for _, c := range sortedChildren(m.children) {
			if c.snapGen != gen {
				m.removeChild(c, fmt.Sprintf("child SA %d gone at resync", c.id))
			}
		}
		for _, id := range sortedKeys(m.ikes) {
			if r := m.ikes[id]; r.snapGen != gen {
				m.ikeDown(r, fmt.Sprintf("IKE SA %d gone at resync", id))
			}
		}
		if m.needSAs {
			m.needSAs = false
			for _, id := range sortedKeys(m.latches) {
				f := m.latches[id]
				if f.restored && !f.listener && len(f.bound) == 0 && !f.lost {
					f.lost = true
					m.update(f, "restart: no congruent SA")
				}
			}
		}
	}
	if s.Flows {
		if m.needFlows {
			// RFC 5660 2: a restored latch must be the same flow; one
			// whose socket was never seen cannot be shown to be.
			for _, id := range sortedKeys(m.latches) {
				if f := m.latches[id]; f.restored && f.cookie == 0 {
					m.closeLatch(f, "restart: socket never seen, cannot be re-validated", false, false)
				}
			}
		}
		for _, fl := range s.Sockets {
			r, err := m.flowSeen(fl)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			r.snapGen = gen
		}
		var gone []*rec
		for _, f := range m.flows {
			if f.snapGen != gen {
				gone = append(gone, f)
			}
		}
		for _, l := range m.listeners {
			if l.snapGen != gen {
				gone = append(gone, l)
			}
		}
		slices.SortFunc(gone, func(a, b *rec) int { return compareTuple(a.tuple, b.tuple) })
		for _, r := range gone {
			why := "socket gone at resync"
			if m.needFlows {
				why = "restart: socket gone"
			}
			m.closeLatch(r, why, false, false)
		}
		m.needFlows = false
	}
	if !m.needSAs && !m.needFlows {
		for _, f := range m.latches {
			f.restored = false
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("latch: snapshot: %w", errors.Join(errs...))
	}
	return nil
}

func compareTuple(a, b Tuple) int {
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	if c := a.Local.Compare(b.Local); c != 0 {
		return c
	}
	return a.Remote.Compare(b.Remote)
}

func sortedKeys[K cmp.Ordered, V any](mp map[K]V) []K {
	ks := make([]K, 0, len(mp))
	for k := range mp {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
