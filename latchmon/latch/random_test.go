package latch

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestRandom drives the machine with random worlds: IKE and child SAs of
// key and anonymous peers coming, rekeying and going, sockets opening and
// closing, policies changing, API calls, events lost and made up for by
// snapshots, and restarts through Marshal and Restore. After every step it
// checks the invariants (check), that every change of state was announced
// by exactly one Alert from the old state to the new (RFC 5660 2.3 ALERT,
// 2.2 "transitions to the BROKEN state always cause the associated owner to
// be informed"), that Resets go with breaks of reset latches and
// administrative closes only (5.5), and that a restart with nothing changed
// keeps every latch that can be re-validated (2).
func TestRandom(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newWorld(seed)
			for i := 0; i < 400; i++ {
				w.stepRandom(t, i)
				if t.Failed() {
					return
				}
			}
		})
	}
}

type world struct {
	r        *rand.Rand
	m        *Machine
	now      time.Time
	nextID   uint64
	ikes     map[uint64]IKE
	children map[uint64]Child
	flows    map[Tuple]uint64 // cookie
	listen   map[Endpoint]uint64
	policies map[string]Policy
	lossy    bool // the machine missed events since the last snapshot
}

func newWorld(seed uint64) *world {
	return &world{
		r: rand.New(rand.NewPCG(seed, seed*7919)), m: New(), now: t0,
		ikes: map[uint64]IKE{}, children: map[uint64]Child{}, flows: map[Tuple]uint64{},
		listen: map[Endpoint]uint64{}, policies: map[string]Policy{},
	}
}

var (
	rndConns   = []string{"web/ssh", "web/udp", "lab/any"}
	rndRemotes = []string{"10.0.0.2/32", "10.0.0.3/32", "10.0.0.0/24", "10.0.0.2/32[tcp/22]", "fd00::2/128"}
	rndPeers   = []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"}
)

func (w *world) pick(n int) int { return w.r.IntN(n) }

func pickKey[K comparable, V any](w *world, m map[K]V) (K, bool) {
	var ks []K
	for k := range m {
		ks = append(ks, k)
	}
	var zero K
	if len(ks) == 0 {
		return zero, false
	}
	slices.SortFunc(ks, func(a, b K) int { return compareAny(a, b) })
	return ks[w.pick(len(ks))], true
}

func compareAny(a, b any) int {
	switch a := a.(type) {
	case uint64:
		return int(a) - int(b.(uint64))
	case Tuple:
		return compareTuple(a, b.(Tuple))
	case Endpoint:
		return compareEndpoint(a, b.(Endpoint))
	case string:
		switch {
		case a < b.(string):
			return -1
		case a > b.(string):
			return 1
		}
	}
	return 0
}

func (w *world) newChild(ike uint64) Child {
	w.nextID++
	conn := rndConns[w.pick(len(rndConns))]
	p := prot(conn[:3], conn[4:])
	if w.pick(4) == 0 {
		p.Encr, p.EncrKeySize = "AES_CBC", 256
	}
	remote := MustParseSelector(rndRemotes[w.pick(len(rndRemotes))])
	local := MustParseSelector("10.0.0.1/32")
	if remote.Prefix.Addr().Is6() {
		local = MustParseSelector("fd00::1/128")
	}
	return Child{IKEID: ike, ID: w.nextID, Protection: p, LocalTS: []Selector{local}, RemoteTS: []Selector{remote}}
}

func (w *world) randTuple() Tuple {
	proto := ProtoTCP
	if w.pick(3) == 0 {
		proto = ProtoUDP
	}
	if w.pick(6) == 0 {
		return Tuple{proto, netip.MustParseAddrPort("[fd00::1]:40000"), netip.MustParseAddrPort("[fd00::2]:22")}
	}
	local := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+w.pick(3)))
	if w.pick(4) == 0 {
		local = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 22) // accepted on the listener
	}
	remote := netip.AddrPortFrom(netip.MustParseAddr(rndPeers[w.pick(len(rndPeers))]), []uint16{22, 80}[w.pick(2)])
	return Tuple{proto, local, remote}
}

// deliver steps ev, or loses it (the world changed all the same).
func (w *world) deliver(t *testing.T, ev Event) {
	if w.pick(10) == 0 {
		w.lossy = true
		return
	}
	w.observe(t, fmt.Sprintf("%T %+v", ev, ev), func() error { return w.m.Step(ev) })
}

func (w *world) snapshot() Snapshot {
	s := Snapshot{At: w.now, SAs: true, Flows: true}
	for _, id := range sortedKeys(w.ikes) {
		s.IKEs = append(s.IKEs, w.ikes[id])
	}
	for _, id := range sortedKeys(w.children) {
		s.Children = append(s.Children, w.children[id])
	}
	for tu, c := range w.flows {
		s.Sockets = append(s.Sockets, Flow{Tuple: tu, Cookie: c})
	}
	for e, c := range w.listen {
		s.Sockets = append(s.Sockets, Flow{Tuple: e.Tuple(), Cookie: c, Listening: true})
	}
	slices.SortFunc(s.Sockets, func(a, b Flow) int { return compareTuple(a.Tuple, b.Tuple) })
	return s
}

func (w *world) stepRandom(t *testing.T, i int) {
	w.now = w.now.Add(time.Second)
	at := w.now
	switch op := w.pick(100); {
	case op < 8: // IKE SA up
		w.nextID++
		ike := IKE{ID: w.nextID, InitiatorSPI: w.r.Uint64(), ResponderSPI: w.r.Uint64()}
		switch w.pick(3) {
		case 0:
			ike.Auth = Auth{Kind: KeyPeer, Fingerprint: fpAlice}
		case 1:
			ike.Auth = Auth{Kind: KeyPeer, Fingerprint: fpMallory}
		default:
			ike.Auth = Auth{Kind: AnonymousPeer}
		}
		w.ikes[ike.ID] = ike
		w.deliver(t, IKEUp{At: at, IKE: ike})
	case op < 12: // IKE rekey
		old, ok := pickKey(w, w.ikes)
		if !ok {
			return
		}
		w.nextID++
		nw := w.ikes[old]
		nw.ID, nw.InitiatorSPI, nw.ResponderSPI = w.nextID, w.r.Uint64(), w.r.Uint64()
		delete(w.ikes, old)
		w.ikes[nw.ID] = nw
		for id, c := range w.children {
			if c.IKEID == old {
				c.IKEID = nw.ID
				w.children[id] = c
			}
		}
		w.deliver(t, IKERekeyed{At: at, Old: old, New: nw})
	case op < 16: // IKE down
		id, ok := pickKey(w, w.ikes)
		if !ok {
			return
		}
		delete(w.ikes, id)
		for cid, c := range w.children {
			if c.IKEID == id {
				delete(w.children, cid)
			}
		}
		w.deliver(t, IKEDown{At: at, ID: id, Reason: []string{"dpd", "deleted"}[w.pick(2)]})
	case op < 28: // child up
		ike, ok := pickKey(w, w.ikes)
		if !ok {
			return
		}
		c := w.newChild(ike)
		w.children[c.ID] = c
		w.deliver(t, ChildUp{At: at, Child: c})
	case op < 40: // child rekey
		old, ok := pickKey(w, w.children)
		if !ok {
			return
		}
		nw := w.children[old]
		w.nextID++
		nw.ID = w.nextID
		if w.pick(5) == 0 {
			nw.Protection.Encr, nw.Protection.EncrKeySize = "AES_CBC", 256
		}
		delete(w.children, old)
		w.children[nw.ID] = nw
		w.deliver(t, ChildRekeyed{At: at, Old: old, New: nw})
	case op < 46: // child down
		id, ok := pickKey(w, w.children)
		if !ok {
			return
		}
		delete(w.children, id)
		w.deliver(t, ChildDown{At: at, ID: id, Reason: "deleted"})
	case op < 60: // socket opens (or replaces one on the same tuple)
		tu := w.randTuple()
		w.nextID++
		w.flows[tu] = w.nextID
		w.deliver(t, FlowSeen{At: at, Flow: Flow{Tuple: tu, Cookie: w.nextID}})
	case op < 68: // socket closes
		tu, ok := pickKey(w, w.flows)
		if !ok {
			return
		}
		c := w.flows[tu]
		delete(w.flows, tu)
		w.deliver(t, FlowGone{At: at, Flow: Flow{Tuple: tu, Cookie: c}})
	case op < 71: // listening socket opens or closes
		e := []Endpoint{listenEP, {ProtoTCP, netip.MustParseAddrPort("10.0.0.1:80")}}[w.pick(2)]
		if c, ok := w.listen[e]; ok {
			delete(w.listen, e)
			w.deliver(t, FlowGone{At: at, Flow: Flow{Tuple: e.Tuple(), Cookie: c, Listening: true}})
			return
		}
		w.nextID++
		w.listen[e] = w.nextID
		w.deliver(t, FlowSeen{At: at, Flow: Flow{Tuple: e.Tuple(), Cookie: w.nextID, Listening: true}})
	case op < 78: // policy change (never lost: the driver reads its own files)
		conn := rndConns[w.pick(len(rndConns))]
		p := Policy{Conn: conn[:3], Child: conn[4:], Latch: w.pick(4) != 0, OnBreak: Disposition(w.pick(3)), Removed: w.pick(8) == 0}
		switch w.pick(3) {
		case 0:
			p.Protections = []Protection{prot("", "")}
		case 1:
			cbc := prot("", "")
			cbc.Encr, cbc.EncrKeySize = "AES_CBC", 256
			p.Protections = []Protection{cbc}
		}
		w.policies[conn] = p
		w.observe(t, fmt.Sprintf("policy %+v", p), func() error { return w.m.Step(PolicyChanged{At: at, Policy: p}) })
	case op < 84: // API
		w.api(t, at)
	case op < 92: // snapshot
		s := w.snapshot()
		w.observe(t, "snapshot", func() error { return w.m.Step(s) })
		w.lossy = false
	default:
		w.restart(t, at)
	}
}

func (w *world) api(t *testing.T, at time.Time) {
	ids := sortedKeys(w.m.latches)
	switch w.pick(4) {
	case 0, 1:
		tu := w.randTuple()
		cookie := w.flows[tu]
		var want Want
		if w.pick(2) == 0 {
			p := prot("lab", "any")
			want = Want{Peer: &Peer{Kind: KeyPeer, Fingerprint: fpAlice}, Protection: &p}
		}
		w.observe(t, fmt.Sprintf("create %v", tu), func() error {
			_, err := w.m.CreateConnection(at, tu, cookie, want)
			return nil2(err, ErrExists, ErrConflict, ErrNoSA, ErrInvalid)
		})
	case 2:
		if len(ids) > 0 {
			id := ids[w.pick(len(ids))]
			w.observe(t, fmt.Sprintf("release %d", id), func() error { return w.m.Release(at, id) })
		}
	case 3:
		if len(ids) > 0 {
			id := ids[w.pick(len(ids))]
			w.observe(t, fmt.Sprintf("admin close %d", id), func() error { return w.m.AdminClose(at, id, "test") })
		}
	}
}

// nil2 turns the expected API errors into nil.
func nil2(err error, ok ...error) error {
	for _, o := range ok {
		if errorsIs(err, o) {
			return nil
		}
	}
	return err
}

func (w *world) restart(t *testing.T, at time.Time) {
	// Bring the machine in line with the world first.
	s := w.snapshot()
	w.observe(t, "snapshot before restart", func() error { return w.m.Step(s) })
	before := w.m.Latches()
	data, err := w.m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w.m.Ready()
	if w.m, err = Restore(data); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, k := range sortedKeys(w.policies) {
		p := w.policies[k]
		if err := w.m.Step(PolicyChanged{At: at, Policy: p}); err != nil {
			t.Fatal(err)
		}
	}
	w.observe(t, "snapshot after restart", func() error { return w.m.Step(w.snapshot()) })
	after := map[LatchID]LatchInfo{}
	for _, li := range w.m.Latches() {
		after[li.ID] = li
	}
	// RFC 5660 2: with the world unchanged, a latch survives the restart in
	// its state, unless it cannot be re-validated: a socket never seen
	// (closed), or no SA ever bound (broken).
	for _, b := range before {
		a, ok := after[b.ID]
		switch {
		case b.Cookie == 0:
			if ok {
				t.Errorf("restart: latch %d with no socket survived", b.ID)
			}
		case !ok:
			t.Errorf("restart: latch %d (%v) lost", b.ID, b.State)
		case b.State == Established && len(b.SAs) == 0:
			if a.State != Broken {
				t.Errorf("restart: latch %d with no SA is %v, want BROKEN", b.ID, a.State)
			}
		case a.State != b.State || !slices.Equal(a.SAs, b.SAs) || !slices.Equal(a.Conflicts, b.Conflicts) || a.Peer != b.Peer:
			t.Errorf("restart: latch %d changed:\n%+v\n%+v", b.ID, b, a)
		}
	}
}

// observe runs op and checks what it did to the latches against the
// actions it produced.
func (w *world) observe(t *testing.T, what string, op func() error) {
	t.Helper()
	before := map[LatchID]LatchInfo{}
	for _, li := range w.m.Latches() {
		before[li.ID] = li
	}
	if err := op(); err != nil && !errorsIs(err, ErrUnknownIKE) {
		t.Fatalf("%s: %v", what, err)
	}
	after := map[LatchID]LatchInfo{}
	for _, li := range w.m.Latches() {
		after[li.ID] = li
	}
	alerts := map[LatchID]Alert{}
	var resets []Reset
	acts := w.m.Ready()
	for i, a := range acts {
		switch a := a.(type) {
		case Alert:
			if _, dup := alerts[a.LatchID]; dup {
				t.Fatalf("%s: two alerts for latch %d", what, a.LatchID)
			}
			alerts[a.LatchID] = a
		case Reset:
			resets = append(resets, a)
		case Persist:
			if i != len(acts)-1 {
				t.Fatalf("%s: Persist not last", what)
			}
		}
	}
	ids := map[LatchID]bool{}
	for id := range before {
		ids[id] = true
	}
	for id := range after {
		ids[id] = true
	}
	for id := range alerts {
		ids[id] = true
	}
	for id := range ids {
		from, to := None, Closed
		if b, ok := before[id]; ok {
			from = b.State
		}
		if a, ok := after[id]; ok {
			to = a.State
		}
		al, alerted := alerts[id]
		switch {
		case from == to && alerted:
			t.Fatalf("%s: alert for latch %d that stayed %v: %+v", what, id, from, al)
		case from != to && !alerted:
			t.Fatalf("%s: latch %d went %v -> %v unannounced", what, id, from, to)
		case alerted && (al.From != from || al.To != to):
			t.Fatalf("%s: latch %d went %v -> %v, alert says %v -> %v", what, id, from, to, al.From, al.To)
		}
	}
	for _, r := range resets {
		al, ok := alerts[r.LatchID]
		if !ok || !(al.To == Broken || al.To == Closed && len(al.Reason) > 9 && al.Reason[:9] == "closed by") || r.Cookie == 0 {
			t.Fatalf("%s: reset %+v without a break or admin close (%+v)", what, r, al)
		}
	}
	if err := w.m.check(); err != nil {
		t.Fatalf("%s: invariant: %v", what, err)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
