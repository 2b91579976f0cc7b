package latchmon

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/xfrm"
	"github.com/btnsd/btnsd/vici"
)

// KernelSPDMode says whether the monitor watches the kernel's SPD and SAD
// (package doc, "Kernel SPD and SAD").
type KernelSPDMode uint8

const (
	// KernelSPDAuto watches the kernel's SPD and SAD when it can (an XFRM
	// socket opens) and judges them once charon's SAs are seen in the
	// kernel's SAD (kernel-netlink; under kernel-libipsec charon's SAs live
	// in userspace and the kernel's SPD does not decide their protection).
	KernelSPDAuto KernelSPDMode = iota
	// KernelSPDOn judges the kernel's SPD and SAD from the start.
	KernelSPDOn
	// KernelSPDOff ignores the kernel's SPD and SAD.
	KernelSPDOff
)

func (k KernelSPDMode) String() string {
	switch k {
	case KernelSPDAuto:
		return "auto"
	case KernelSPDOn:
		return "on"
	case KernelSPDOff:
		return "off"
	}
	return fmt.Sprintf("KernelSPDMode(%d)", uint8(k))
}

// ParseKernelSPDMode parses "auto", "on" or "off".
func ParseKernelSPDMode(s string) (KernelSPDMode, error) {
	switch strings.ToLower(s) {
	case "auto", "":
		return KernelSPDAuto, nil
	case "on", "yes", "true":
		return KernelSPDOn, nil
	case "off", "no", "false":
		return KernelSPDOff, nil
	}
	return 0, fmt.Errorf("latchmon: kernel SPD mode %q: want auto, on or off", s)
}

// KernelSource is what the monitor needs of the kernel's SPD and SAD;
// *xfrm.Handle provides it, and HostKernel is the host's.
type KernelSource interface {
	Watch(ctx context.Context) (<-chan xfrm.Event, error)
	Policies(ctx context.Context) ([]xfrm.Policy, error)
	States(ctx context.Context) ([]xfrm.State, error)
}

type hostKernel struct{}

func (hostKernel) Watch(ctx context.Context) (<-chan xfrm.Event, error) { return xfrm.Watch(ctx) }
func (hostKernel) Policies(ctx context.Context) ([]xfrm.Policy, error)  { return xfrm.Policies(ctx) }
func (hostKernel) States(ctx context.Context) ([]xfrm.State, error)     { return xfrm.States(ctx) }

// HostKernel is the SPD and SAD of the calling process's network namespace.
var HostKernel KernelSource = hostKernel{}

// KernelSA is a kernel SA pair that protects a latch's flow: the SPIs of
// one of the latch's child SAs, found in the kernel's SAD.
type KernelSA struct {
	Child          uint64 // charon's uniqueid of the child SA
	ReqID          uint32
	SPIIn, SPIOut  uint32
	Protocol, Mode string // as charon lists them (ESP, TRANSPORT, ...)
}

// Synthetic SAs: a kernel object that interferes with latches is stepped
// into the machine as a child SA of an IKE SA of its own, whose peer is no
// peer any latch can have, so that it conflicts with every latch whose
// flow it covers (RFC 5660 2.3: SPD changes that would bypass or change a
// latch's protection break it) and is removed like a child SA when the
// object goes (a notify latch mends, 2.2).
const (
	kernelIKEID   = 1 << 40 // charon's uniqueids are 32-bit counters
	kernelConn    = "xfrm"  // Protection.Conn of synthetic SAs
	kernelPeer    = "kernel:outside-charon"
	charonForget  = 2 * time.Minute       // how long SPIs and reqids stay charon's after they were last listed
	judgeInterval = 50 * time.Millisecond // the shortest time between two full judgements
)

// charonChild is what the monitor keeps of one of charon's child SAs.
type charonChild struct {
	reqid          uint32
	spiIn, spiOut  uint32
	protocol, mode string
}

// foreignObj is a kernel object stepped into the machine as synthetic SAs.
type foreignObj struct {
	desc string
	ids  []uint64
	tss  [][2][]latch.Selector // local, remote per synthetic SA
}

// candidate is a kernel object judged foreign, before the grace period.
type candidate struct {
	desc string
	tss  [][2][]latch.Selector
}

type stateKey struct {
	dst   netip.Addr
	spi   uint32
	proto uint8
	mark  xfrm.Mark
}

// kernelView is the monitor's view of the kernel SPD and SAD and of what
// charon owns. Guarded by Monitor.mu.
type kernelView struct {
	mode   KernelSPDMode
	active bool // judging (On, or Auto once charon's SAs were seen in the kernel)
	known  bool // the databases were listed

	pols   map[uint32]xfrm.Policy // by kernel index
	states map[stateKey]xfrm.State

	children   map[uint64]charonChild // charon's child SAs, by uniqueid
	reqids     map[uint32]time.Time   // charon's reqids, last seen
	spis       map[uint32]time.Time   // charon's SPIs, last seen
	listedAt   time.Time              // of the last list-sas
	firstSeen  map[string]time.Time   // candidates, by key
	foreign    map[string]*foreignObj // stepped, by key
	nextID     uint64
	dirty      bool // judge again
	lastJudge  time.Time
	pendingDue time.Time // the earliest time a candidate's grace ends
	needList   bool      // a candidate's grace ended: list-sas to confirm
}

func newKernelView(mode KernelSPDMode) *kernelView {
	return &kernelView{
		mode: mode, active: mode == KernelSPDOn,
		pols: map[uint32]xfrm.Policy{}, states: map[stateKey]xfrm.State{},
		children: map[uint64]charonChild{}, reqids: map[uint32]time.Time{}, spis: map[uint32]time.Time{},
		firstSeen: map[string]time.Time{}, foreign: map[string]*foreignObj{},
	}
}

func keyOf(st *xfrm.State) stateKey {
	return stateKey{dst: st.Dst, spi: st.SPI, proto: st.Proto, mark: st.Mark}
}

// noteChild records one of charon's child SAs.
func (kv *kernelView) noteChild(c *vici.ChildSA, now time.Time) {
	cc := charonChild{reqid: c.ReqID, spiIn: uint32(parseSPI(c.SPIIn)), spiOut: uint32(parseSPI(c.SPIOut)), protocol: c.Protocol, mode: c.Mode}
	if c.UniqueID != 0 {
		kv.children[c.UniqueID] = cc
	}
	if cc.reqid != 0 {
		kv.reqids[cc.reqid] = now
	}
	for _, s := range []uint32{cc.spiIn, cc.spiOut} {
		if s != 0 {
			kv.spis[s] = now
		}
	}
	kv.dirty = true
}

// noteEvent records the child SAs an event of charon's names. A child that
// goes down stays charon's for charonForget: its kernel objects go after it.
func (kv *kernelView) noteEvent(ev vici.Event, now time.Time) {
	switch e := ev.(type) {
	case vici.ChildUpDown:
		kv.noteChild(&e.Child, now)
		if !e.Up {
			delete(kv.children, e.Child.UniqueID)
		}
	case vici.ChildRekey:
		kv.noteChild(&e.Old, now)
		kv.noteChild(&e.New, now)
	case vici.IKEUpDown:
		for i := range e.IKE.Children {
			kv.noteChild(&e.IKE.Children[i], now)
			if !e.Up {
				delete(kv.children, e.IKE.Children[i].UniqueID)
			}
		}
	}
}

// noteListing replaces charon's children with a listing taken at at.
// Children in every state count: a rekeyed child's SAs are still in the
// kernel, a child being installed has its SAs there first.
func (kv *kernelView) noteListing(sas []vici.IKESA, at time.Time) {
	clear(kv.children)
	for i := range sas {
		for j := range sas[i].Children {
			kv.noteChild(&sas[i].Children[j], at)
		}
	}
	kv.listedAt = at
	kv.dirty = true
}

func (kv *kernelView) charonReqid(r uint32) bool {
	_, ok := kv.reqids[r]
	return r != 0 && ok
}

func (kv *kernelView) charonSPI(s uint32) bool {
	_, ok := kv.spis[s]
	return ok
}

// apply records one notification; it reports whether the databases must
// be listed again (lost notifications, a flush).
func (kv *kernelView) apply(ev xfrm.Event) (relist bool) {
	kv.dirty = true
	switch ev.Kind {
	case xfrm.NewPolicy, xfrm.UpdPolicy:
		kv.pols[ev.Policy.Index] = *ev.Policy
	case xfrm.DelPolicy:
		delete(kv.pols, ev.Policy.Index)
	case xfrm.PolExpire:
		if ev.Hard {
			delete(kv.pols, ev.Policy.Index)
		}
	case xfrm.NewSA, xfrm.UpdSA:
		kv.states[keyOf(ev.State)] = *ev.State
	case xfrm.DelSA:
		delete(kv.states, keyOf(ev.State))
	case xfrm.Expire:
		if ev.Hard {
			delete(kv.states, keyOf(ev.State))
		}
	case xfrm.FlushSA, xfrm.FlushPolicy, xfrm.Resync:
		return true
	}
	return false
}

// load replaces the view of the databases with a listing.
func (kv *kernelView) load(pols []xfrm.Policy, states []xfrm.State) {
	clear(kv.pols)
	clear(kv.states)
	for _, p := range pols {
		kv.pols[p.Index] = p
	}
	for i := range states {
		kv.states[keyOf(&states[i])] = states[i]
	}
	kv.known = true
	kv.dirty = true
}

// applies reports whether p can decide the fate of a local flow's packets:
// in or out (fwd is for forwarded packets), unmarked packets, no XFRM
// interface.
func applies(p *xfrm.Policy) bool {
	return (p.Dir == xfrm.DirIn || p.Dir == xfrm.DirOut) && p.Mark.MatchesUnmarked() && p.IfID == 0
}

// charonPolicy reports whether p is charon's: a template carries the reqid
// of one of charon's child SAs (kernel-netlink installs every policy of a
// child SA with the child's reqid in its templates).
func (kv *kernelView) charonPolicy(p *xfrm.Policy) bool {
	return slices.ContainsFunc(p.Templates, func(t xfrm.Template) bool { return kv.charonReqid(t.Reqid) })
}

// shadowed reports whether a policy of charon's takes precedence over p
// for every packet p matches: same direction, a selector that contains
// p's, and a lower priority value (Linux XFRM: lower wins; on a tie the
// older wins, which the monitor cannot tell, so a tie is not shadowed:
// fail safe). Sub policies are looked up before main ones.
func (kv *kernelView) shadowed(p *xfrm.Policy) bool {
	for _, q := range kv.pols {
		if q.Dir != p.Dir || !applies(&q) || !kv.charonPolicy(&q) {
			continue
		}
		if q.Sub != p.Sub {
			if q.Sub && selContains(q.Sel, p.Sel) {
				return true
			}
			continue
		}
		if q.Priority < p.Priority && selContains(q.Sel, p.Sel) {
			return true
		}
	}
	return false
}

// strongerOverlapping returns charon's policies that override p for part
// of its selector.
func (kv *kernelView) strongerOverlapping(p *xfrm.Policy) []*xfrm.Policy {
	var out []*xfrm.Policy
	for idx := range kv.pols {
		q := kv.pols[idx]
		if q.Dir != p.Dir || !applies(&q) || !kv.charonPolicy(&q) || !selOverlaps(q.Sel, p.Sel) {
			continue
		}
		if q.Sub && !p.Sub || q.Sub == p.Sub && q.Priority < p.Priority {
			out = append(out, &q)
		}
	}
	return out
}

// policyMatches reports whether p matches the packets of the local flow t
// in p's direction.
func policyMatches(p *xfrm.Policy, t latch.Tuple) bool {
	for _, ts := range policyTSs(p) {
		if anyMatch(ts[0], t.Proto, t.Local) && anyMatch(ts[1], t.Proto, t.Remote) {
			return true
		}
	}
	return false
}

func anyMatch(ss []latch.Selector, proto uint8, ap netip.AddrPort) bool {
	return slices.ContainsFunc(ss, func(s latch.Selector) bool { return s.Matches(proto, ap) })
}

// flowTS is the selectors of exactly the flow t.
func flowTS(t latch.Tuple) [2][]latch.Selector {
	l, r := t.Local.Addr(), t.Remote.Addr()
	return [2][]latch.Selector{
		{{Prefix: netip.PrefixFrom(l, l.BitLen()), Proto: t.Proto, FromPort: t.Local.Port(), ToPort: t.Local.Port()}},
		{{Prefix: netip.PrefixFrom(r, r.BitLen()), Proto: t.Proto, FromPort: t.Remote.Port(), ToPort: t.Remote.Port()}},
	}
}

func prefixOverlaps(q, p netip.Prefix) bool {
	return !q.IsValid() || !p.IsValid() || q.Overlaps(p)
}

func selOverlaps(q, p xfrm.Selector) bool {
	return prefixOverlaps(q.Src, p.Src) && prefixOverlaps(q.Dst, p.Dst) &&
		(q.Proto == 0 || p.Proto == 0 || q.Proto == p.Proto) &&
		portOverlaps(q.SrcPort, q.SrcPortMask, p.SrcPort, p.SrcPortMask) &&
		portOverlaps(q.DstPort, q.DstPortMask, p.DstPort, p.DstPortMask)
}

func portOverlaps(qp, qm, pp, pm uint16) bool {
	m := qm & pm
	return qp&m == pp&m
}

func prefixContains(q, p netip.Prefix) bool {
	if !q.IsValid() {
		return true // any
	}
	return p.IsValid() && q.Bits() <= p.Bits() && q.Contains(p.Addr())
}

func selContains(q, p xfrm.Selector) bool {
	return prefixContains(q.Src, p.Src) && prefixContains(q.Dst, p.Dst) &&
		(q.Proto == 0 || q.Proto == p.Proto) &&
		portContains(q.SrcPort, q.SrcPortMask, p.SrcPort, p.SrcPortMask) &&
		portContains(q.DstPort, q.DstPortMask, p.DstPort, p.DstPortMask)
}

func portContains(qp, qm, pp, pm uint16) bool {
	return qm == 0 || qm == pm && qp&qm == pp&pm
}

var anyPrefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// latchSels translates one side of an XFRM selector; an invalid prefix
// (family unspecified) is any address. A partial port mask is taken as any
// port (covers more: fail safe).
func latchSels(p netip.Prefix, proto uint8, port, mask uint16) []latch.Selector {
	s := latch.Selector{Proto: proto}
	if mask == 0xffff {
		s.FromPort, s.ToPort = port, port
	}
	if p.IsValid() {
		s.Prefix = p
		return []latch.Selector{s}
	}
	out := make([]latch.Selector, 0, 2)
	for _, a := range anyPrefixes {
		s.Prefix = a
		out = append(out, s)
	}
	return out
}

// policyTSs returns the flows a policy matches, as a synthetic SA's
// selectors: out matches local -> remote, in remote -> local.
func policyTSs(p *xfrm.Policy) [][2][]latch.Selector {
	src := latchSels(p.Sel.Src, p.Sel.Proto, p.Sel.SrcPort, p.Sel.SrcPortMask)
	dst := latchSels(p.Sel.Dst, p.Sel.Proto, p.Sel.DstPort, p.Sel.DstPortMask)
	if p.Dir == xfrm.DirOut {
		return [][2][]latch.Selector{{src, dst}}
	}
	return [][2][]latch.Selector{{dst, src}}
}

// stateTSs returns the flows a state may carry, either way: its selector
// when it has one (transport mode), else its addresses.
func stateTSs(st *xfrm.State) [][2][]latch.Selector {
	var a, b []latch.Selector
	if st.Sel.IsValid() {
		a = latchSels(st.Sel.Src, st.Sel.Proto, st.Sel.SrcPort, st.Sel.SrcPortMask)
		b = latchSels(st.Sel.Dst, st.Sel.Proto, st.Sel.DstPort, st.Sel.DstPortMask)
	} else {
		if !st.Src.IsValid() || !st.Dst.IsValid() {
			return nil
		}
		a = []latch.Selector{{Prefix: netip.PrefixFrom(st.Src, st.Src.BitLen())}}
		b = []latch.Selector{{Prefix: netip.PrefixFrom(st.Dst, st.Dst.BitLen())}}
	}
	return [][2][]latch.Selector{{a, b}, {b, a}}
}

// candidates returns the kernel objects that are foreign and interfere:
// policies that are not charon's, apply to local flows, and are not
// shadowed by charon's; keyed ESP and AH states whose SPI no child SA of
// charon's has.
//
// A policy that charon's policies override for part of its selector (a
// wide bypass beside charon's narrower, stronger policies) is judged per
// latched flow: it interferes with the flows it matches that no stronger
// policy of charon's matches, each a candidate of its own (flows are the
// latched ones, given by flows, called only then).
func (kv *kernelView) candidates(flows func() []latch.Tuple) map[string]candidate {
	out := make(map[string]candidate)
	var latched []latch.Tuple
	for idx := range kv.pols {
		p := kv.pols[idx]
		if !applies(&p) || kv.charonPolicy(&p) || kv.shadowed(&p) {
			continue
		}
		desc := "SPD: " + p.String() + " added outside charon"
		stronger := kv.strongerOverlapping(&p)
		if len(stronger) == 0 {
			out[fmt.Sprintf("pol/%d", p.Index)] = candidate{desc: desc, tss: policyTSs(&p)}
			continue
		}
		if latched == nil {
			latched = flows()
		}
		for _, t := range latched {
			if !policyMatches(&p, t) || slices.ContainsFunc(stronger, func(q *xfrm.Policy) bool { return policyMatches(q, t) }) {
				continue
			}
			out[fmt.Sprintf("pol/%d/%v", p.Index, t)] = candidate{desc: desc, tss: [][2][]latch.Selector{flowTS(t)}}
		}
	}
	for k := range kv.states {
		st := kv.states[k]
		if st.Proto != xfrm.ProtoESP && st.Proto != xfrm.ProtoAH || !st.Keyed || !st.Mark.MatchesUnmarked() || st.IfID != 0 || kv.charonSPI(st.SPI) {
			continue
		}
		tss := stateTSs(&st)
		if tss == nil {
			continue
		}
		out[fmt.Sprintf("sa/%v/%08x/%d/%x/%x", st.Dst, st.SPI, st.Proto, st.Mark.Value, st.Mark.Mask)] = candidate{
			desc: fmt.Sprintf("SAD: foreign SA spi 0x%08x (%s %s %v -> %v) added outside charon", st.SPI, xfrm.ProtoName(st.Proto), st.Mode, st.Src, st.Dst),
			tss:  tss,
		}
	}
	return out
}

// detectActive turns Auto on when one of charon's SPIs is in the kernel's
// SAD: charon uses kernel-netlink, and the kernel's SPD decides the
// protection of its flows.
func (kv *kernelView) detectActive() bool {
	if kv.active || kv.mode != KernelSPDAuto {
		return false
	}
	for k := range kv.states {
		if kv.charonSPI(k.spi) {
			kv.active = true
			return true
		}
	}
	return false
}

// kernelSteps judges the view (called with m.mu held): synthetic SAs for
// objects that became foreign, past the grace period and confirmed by a
// listing taken after it; their removal for objects that are gone or
// became charon's. removeOnly does the removals alone (before stepping
// charon's events, so that an SA whose policies the monitor took for
// foreign until charon announced it is never judged against them).
func (m *Monitor) kernelStepsLocked(at time.Time, removeOnly bool) []latch.Event {
	now := time.Now() // the grace periods run on the wall clock; events carry at
	kv := m.kv
	if kv == nil || !kv.known {
		return nil
	}
	if kv.detectActive() {
		m.logf("kernel SPD/SAD: charon's SAs are in the kernel's SAD (kernel-netlink): policies and SAs added outside charon now break the latches they cover")
	}
	var want map[string]candidate
	if kv.active {
		if removeOnly {
			want = kv.recheckForeign()
		} else {
			want = kv.candidates(m.latchedFlowsLocked)
		}
	}
	var evs []latch.Event
	keys := make([]string, 0, len(kv.foreign))
	for k := range kv.foreign {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := kv.foreign[k]
		if c, ok := want[k]; ok && c.desc == f.desc {
			continue
		}
		reason := "gone"
		if _, ok := want[k]; ok {
			reason = "changed"
		} else if kv.stillThere(k) {
			reason = "now charon's or overridden by charon's policy"
		}
		for _, id := range f.ids {
			evs = append(evs, latch.ChildDown{At: at, ID: id, Reason: f.desc + ": " + reason})
		}
		delete(kv.foreign, k)
	}
	if removeOnly {
		return evs
	}
	for k := range kv.firstSeen {
		if _, ok := want[k]; !ok {
			delete(kv.firstSeen, k)
		}
	}
	keys = keys[:0]
	for k := range want {
		if _, ok := kv.foreign[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	kv.pendingDue, kv.needList = time.Time{}, false
	added := false
	for _, k := range keys {
		first, ok := kv.firstSeen[k]
		if !ok {
			first = now
			kv.firstSeen[k] = now
		}
		due := first.Add(m.kernelGrace)
		switch {
		case now.Before(due):
			if kv.pendingDue.IsZero() || due.Before(kv.pendingDue) {
				kv.pendingDue = due
			}
			continue
		case kv.listedAt.Before(due):
			// charon may have installed it and not listed it yet: confirm
			// with a listing taken after the grace period.
			kv.needList = true
			continue
		}
		c := want[k]
		f := &foreignObj{desc: c.desc, tss: c.tss}
		for range c.tss {
			kv.nextID++
			f.ids = append(f.ids, kernelIKEID+kv.nextID)
		}
		kv.foreign[k] = f
		delete(kv.firstSeen, k)
		if !added {
			evs = append(evs, latch.IKEUp{At: at, IKE: kernelIKE()})
			added = true
		}
		for i, id := range f.ids {
			evs = append(evs, latch.ChildUp{At: at, Child: kernelChild(id, f.desc, f.tss[i])})
		}
		m.logf("kernel SPD/SAD: %s", c.desc)
	}
	return evs
}

// recheckForeign returns the stepped objects that are still foreign.
func (kv *kernelView) recheckForeign() map[string]candidate {
	out := make(map[string]candidate, len(kv.foreign))
	for k, f := range kv.foreign {
		var kind string
		var rest string
		kind, rest, _ = strings.Cut(k, "/")
		switch kind {
		case "pol":
			p, ok := kv.pols[polIndex(rest)]
			if ok && !kv.charonPolicy(&p) && !kv.shadowed(&p) {
				out[k] = candidate{desc: f.desc, tss: f.tss}
			}
		case "sa":
			for sk, st := range kv.states {
				if fmt.Sprintf("sa/%v/%08x/%d/%x/%x", st.Dst, st.SPI, st.Proto, st.Mark.Value, st.Mark.Mask) == k {
					if !kv.charonSPI(sk.spi) {
						out[k] = candidate{desc: f.desc, tss: f.tss}
					}
					break
				}
			}
		}
	}
	return out
}

// polIndex parses the policy index at the start of a key's rest.
func polIndex(rest string) uint32 {
	idx, _, _ := strings.Cut(rest, "/")
	n, _ := strconv.ParseUint(idx, 10, 32)
	return uint32(n)
}

// latchedFlowsLocked returns the 5-tuples of the latches that are not
// listeners.
func (m *Monitor) latchedFlowsLocked() []latch.Tuple {
	var out []latch.Tuple
	for _, li := range m.mach.Latches() {
		if li.State != latch.Listener && li.Tuple.Remote.IsValid() {
			out = append(out, li.Tuple)
		}
	}
	if out == nil {
		out = []latch.Tuple{}
	}
	return out
}

func (kv *kernelView) stillThere(k string) bool {
	kind, rest, _ := strings.Cut(k, "/")
	if kind == "pol" {
		_, ok := kv.pols[polIndex(rest)]
		return ok
	}
	for _, st := range kv.states {
		if fmt.Sprintf("sa/%v/%08x/%d/%x/%x", st.Dst, st.SPI, st.Proto, st.Mark.Value, st.Mark.Mask) == k {
			return true
		}
	}
	return false
}

func kernelIKE() latch.IKE {
	return latch.IKE{ID: kernelIKEID, Auth: latch.Auth{Kind: latch.KeyPeer, Fingerprint: kernelPeer}, RemoteID: kernelPeer}
}

func kernelChild(id uint64, desc string, ts [2][]latch.Selector) latch.Child {
	return latch.Child{
		IKEID: kernelIKEID, ID: id,
		Protection: latch.Protection{Conn: kernelConn, Child: desc, Protocol: "none"},
		LocalTS:    ts[0], RemoteTS: ts[1],
		Interference: true,
	}
}

// kernelSnapshotLocked returns the synthetic SAs for a Snapshot, which
// must list them to keep them.
func (m *Monitor) kernelSnapshotLocked() ([]latch.IKE, []latch.Child) {
	kv := m.kv
	if kv == nil || len(kv.foreign) == 0 {
		return nil, nil
	}
	var children []latch.Child
	for _, f := range kv.foreign {
		for i, id := range f.ids {
			children = append(children, kernelChild(id, f.desc, f.tss[i]))
		}
	}
	slices.SortFunc(children, func(a, b latch.Child) int { return cmp.Compare(a.ID, b.ID) })
	return []latch.IKE{kernelIKE()}, children
}

// KernelSAs returns the kernel SAs that protect the latch li's flow: those
// of its child SAs whose SPIs are in the kernel's SAD (none when charon
// uses kernel-libipsec, or the kernel is not watched).
func (m *Monitor) KernelSAs(li latch.LatchInfo) []KernelSA {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv := m.kv
	if kv == nil || !kv.known {
		return nil
	}
	inSAD := make(map[uint32]bool)
	for k := range kv.states {
		inSAD[k.spi] = true
	}
	var out []KernelSA
	for _, id := range li.SAs {
		c, ok := kv.children[id]
		if !ok || !inSAD[c.spiIn] && !inSAD[c.spiOut] {
			continue
		}
		out = append(out, KernelSA{Child: id, ReqID: c.reqid, SPIIn: c.spiIn, SPIOut: c.spiOut, Protocol: c.protocol, Mode: c.mode})
	}
	return out
}

// The loop's side.

// kernelStart watches and lists the kernel's databases (Run's start).
func (l *loop) kernelStart() {
	m := l.m
	if m.kv == nil {
		return
	}
	ch, err := m.ksrc.Watch(l.ctx)
	if err != nil {
		if m.kv.mode == KernelSPDOn {
			m.logf("kernel SPD/SAD: cannot watch XFRM: %v (retrying in 5s; SPD changes outside charon are not seen until then)", err)
			l.kRewatchAt = time.Now().Add(5 * time.Second)
			return
		}
		m.logf("kernel SPD/SAD: cannot watch XFRM: %v: not watched (auto)", err)
		l.kOff = true
		return
	}
	l.kevents = ch
	l.kernelList()
}

// kernelList lists both databases into the view.
func (l *loop) kernelList() {
	m := l.m
	ctx, cancel := context.WithTimeout(l.ctx, listTimeout)
	pols, err := m.ksrc.Policies(ctx)
	var states []xfrm.State
	if err == nil {
		states, err = m.ksrc.States(ctx)
	}
	cancel()
	if err != nil {
		if l.ctx.Err() == nil {
			m.logf("kernel SPD/SAD: listing: %v (retrying in 2s)", err)
			l.kRelistAt = time.Now().Add(2 * time.Second)
		}
		return
	}
	l.kRelistAt = time.Time{}
	m.mu.Lock()
	m.kv.load(pols, states)
	m.mu.Unlock()
}

// kernelEvent applies one XFRM notification.
func (l *loop) kernelEvent(ev xfrm.Event) {
	m := l.m
	m.mu.Lock()
	relist := m.kv.apply(ev)
	m.mu.Unlock()
	if relist {
		if ev.Kind == xfrm.Resync {
			m.logf("kernel SPD/SAD: XFRM notifications lost: listing again")
		}
		l.kernelList()
	}
}

// kernelJudge judges the view when it changed, at most every
// judgeInterval, and when a candidate's grace ends; a candidate past its
// grace is confirmed by a list-sas first.
func (l *loop) kernelJudge() {
	m := l.m
	if m.kv == nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	kv := m.kv
	due := kv.dirty && !now.Before(kv.lastJudge.Add(judgeInterval)) ||
		!kv.pendingDue.IsZero() && !now.Before(kv.pendingDue) || kv.needList
	if !due || m.needSnap {
		m.mu.Unlock()
		return
	}
	needList := kv.needList
	m.mu.Unlock()
	if needList {
		ctx, cancel := context.WithTimeout(l.ctx, listTimeout)
		at := time.Now()
		sas, err := m.sas.ListSAs(ctx, vici.ListSAsFilter{})
		cancel()
		if err != nil {
			// Without charon's word, a candidate waits: it may be charon's.
			m.logf("kernel SPD/SAD: list-sas to confirm objects outside charon: %v (retrying in 2s)", err)
			m.mu.Lock()
			kv.needList = false
			kv.pendingDue = time.Now().Add(2 * time.Second)
			m.mu.Unlock()
			return
		}
		m.mu.Lock()
		kv.noteListing(sas, at)
		m.mu.Unlock()
	}
	at := m.now()
	resync := false
	m.locked(at, func() {
		kv.dirty = false
		kv.lastJudge = now
		for _, ev := range m.kernelStepsLocked(at, false) {
			resync = m.stepLocked(ev) || resync
		}
		kv.prune(now)
	})
	if resync {
		l.resyncDue = true
	}
}

// prune forgets charon's SPIs and reqids not seen for charonForget.
func (kv *kernelView) prune(now time.Time) {
	for _, c := range kv.children {
		if c.reqid != 0 {
			kv.reqids[c.reqid] = now
		}
		for _, s := range []uint32{c.spiIn, c.spiOut} {
			if s != 0 {
				kv.spis[s] = now
			}
		}
	}
	for r, t := range kv.reqids {
		if now.Sub(t) > charonForget {
			delete(kv.reqids, r)
		}
	}
	for s, t := range kv.spis {
		if now.Sub(t) > charonForget {
			delete(kv.spis, s)
		}
	}
}

// kernelDeadline returns when kernelJudge or the watch has something due.
func (l *loop) kernelDeadline() time.Time {
	m := l.m
	if m.kv == nil {
		return time.Time{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	kv := m.kv
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if kv.dirty {
		consider(kv.lastJudge.Add(judgeInterval))
	}
	consider(kv.pendingDue)
	if kv.needList {
		consider(time.Now())
	}
	if l.kevents == nil && !l.kOff {
		consider(l.kRewatchAt)
	}
	consider(l.kRelistAt)
	return next
}

// kernelHousekeeping watches again and lists again when due.
func (l *loop) kernelHousekeeping() {
	if l.m.kv == nil || l.kOff {
		return
	}
	now := time.Now()
	if l.kevents == nil && !l.kRewatchAt.IsZero() && !now.Before(l.kRewatchAt) {
		l.kRewatchAt = time.Time{}
		l.kernelStart()
		return
	}
	if !l.kRelistAt.IsZero() && !now.Before(l.kRelistAt) {
		l.kernelList()
	}
	l.kernelJudge()
}
