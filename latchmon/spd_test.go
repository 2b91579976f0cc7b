package latchmon

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/xfrm"
	"github.com/btnsd/btnsd/vici"
)

// fakeKernel is an in-memory KernelSource: the test adds and deletes
// policies and states, and watchers get the notifications the kernel
// would send.
type fakeKernel struct {
	mu       sync.Mutex
	pols     map[uint32]xfrm.Policy
	states   []xfrm.State
	watchers []chan xfrm.Event
	next     uint32
}

func newFakeKernel() *fakeKernel { return &fakeKernel{pols: map[uint32]xfrm.Policy{}} }

func (k *fakeKernel) Watch(ctx context.Context) (<-chan xfrm.Event, error) {
	ch := make(chan xfrm.Event, 256)
	k.mu.Lock()
	k.watchers = append(k.watchers, ch)
	k.mu.Unlock()
	return ch, nil
}

func (k *fakeKernel) Policies(ctx context.Context) ([]xfrm.Policy, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []xfrm.Policy
	for _, p := range k.pols {
		out = append(out, p)
	}
	return out, nil
}

func (k *fakeKernel) States(ctx context.Context) ([]xfrm.State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]xfrm.State(nil), k.states...), nil
}

func (k *fakeKernel) emitLocked(ev xfrm.Event) {
	for _, ch := range k.watchers {
		ch <- ev
	}
}

func (k *fakeKernel) addPolicy(p xfrm.Policy) uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.next += 8
	p.Index = k.next + uint32(p.Dir)
	k.pols[p.Index] = p
	k.emitLocked(xfrm.Event{Kind: xfrm.NewPolicy, Policy: &p})
	return p.Index
}

func (k *fakeKernel) delPolicy(idx uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pols[idx]
	delete(k.pols, idx)
	k.emitLocked(xfrm.Event{Kind: xfrm.DelPolicy, Policy: &p})
}

func (k *fakeKernel) addState(st xfrm.State) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.states = append(k.states, st)
	k.emitLocked(xfrm.Event{Kind: xfrm.NewSA, State: &st})
}

func (k *fakeKernel) resync() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.emitLocked(xfrm.Event{Kind: xfrm.Resync})
}

func hostSel(src, dst string) xfrm.Selector {
	return xfrm.Selector{Src: netip.MustParsePrefix(src), Dst: netip.MustParsePrefix(dst)}
}

// charonPolicies are the policies kernel-netlink installs for a transport
// mode child SA with reqid between 10.99.0.1 and 10.99.0.2.
func charonPolicies(k *fakeKernel, reqid uint32, prio uint32) {
	tm := xfrm.Template{Proto: xfrm.ProtoESP, Mode: xfrm.Transport, Reqid: reqid}
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.2/32"), Dir: xfrm.DirOut, Priority: prio, Templates: []xfrm.Template{tm}})
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.2/32", "10.99.0.1/32"), Dir: xfrm.DirIn, Priority: prio, Templates: []xfrm.Template{tm}})
}

// kernelChildSA is alice's child SA 1 in transport mode, with SPIs.
func kernelChildSA() vici.ChildSA {
	c := childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32")
	c.Mode, c.Encap = "TRANSPORT", false
	c.SPIIn, c.SPIOut = "c0000001", "c0000002"
	return c
}

func kernelWorld(t *testing.T, mode KernelSPDMode) (*world, *fakeKernel) {
	k := newFakeKernel()
	w := newWorld(t, worldOpts{kernel: k, kmode: mode})
	w.start(worldOpts{conns: webConns("notify")})
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	w.up(ikeSA(alice, 1, "10.99.0.2", kernelChildSA()))
	w.expect(1, latch.None, latch.Established, "latched to child SA 1")
	return w, k
}

// RFC 5660 2.3: "the key manager MUST protect latched connections against
// SPD changes that would change the quality of protection afforded to a
// latched connection's traffic, or which would bypass it"; the REQUIRED
// behaviour breaks the latches (here notify: 5.5 (a), the latch mends when
// the bypass goes, 2.2).
func TestKernelBypassPolicyBreaksLatch(t *testing.T) {
	w, k := kernelWorld(t, KernelSPDOn)
	charonPolicies(k, 1, 375423)
	w.quiet()
	idx := k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.2/32"), Dir: xfrm.DirOut, Action: xfrm.Allow, Priority: 100})
	a := w.expect(1, latch.Established, latch.Broken, "SPD: bypass policy 10.99.0.1/32 -> 10.99.0.2/32 dir out priority 100 added outside charon")
	if a.Tuple != flowA {
		t.Errorf("alert tuple %v", a.Tuple)
	}
	if li := w.inquire(1); len(li.Conflicts) != 1 || li.Conflicts[0] < kernelIKEID {
		t.Errorf("conflicts %v, want one synthetic SA", li.Conflicts)
	}
	k.delPolicy(idx)
	w.expect(1, latch.Broken, latch.Established, "conflict cleared")
	if !w.log.has("kernel SPD/SAD: SPD: bypass policy") {
		t.Error("no log line for the policy")
	}
}

// A block policy, and a protect policy toward another peer, are SPD changes
// too (2.3: "change the quality of protection").
func TestKernelBlockAndForeignTemplate(t *testing.T) {
	w, k := kernelWorld(t, KernelSPDOn)
	idx := k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.2/32", "10.99.0.1/32"), Dir: xfrm.DirIn, Action: xfrm.Block, Priority: 5})
	w.expect(1, latch.Established, latch.Broken, "SPD: block policy 10.99.0.2/32 -> 10.99.0.1/32 dir in priority 5")
	k.delPolicy(idx)
	w.expect(1, latch.Broken, latch.Established, "conflict cleared")
	tm := xfrm.Template{Src: netip.MustParseAddr("10.99.0.1"), Dst: netip.MustParseAddr("10.99.0.66"), Proto: xfrm.ProtoESP, Mode: xfrm.Tunnel, Reqid: 4242}
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.0/24", "10.99.0.0/24"), Dir: xfrm.DirOut, Priority: 5, Templates: []xfrm.Template{tm}})
	w.expect(1, latch.Established, latch.Broken, "SPD: protect policy (esp tunnel reqid 4242 10.99.0.1 -> 10.99.0.66)")
}

// A policy outside charon that charon's own policy overrides (a lower
// priority value wins in Linux) changes nothing; one that overrides
// charon's breaks the latch; one that covers other flows does not.
func TestKernelPolicyPrecedence(t *testing.T) {
	w, k := kernelWorld(t, KernelSPDOn)
	charonPolicies(k, 1, 1000)
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.0/24", "10.99.0.0/24"), Dir: xfrm.DirOut, Priority: 2000})
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.3/32"), Dir: xfrm.DirOut, Priority: 1})
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.2/32"), Dir: xfrm.DirFwd, Priority: 1})
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.2/32"), Dir: xfrm.DirOut, Priority: 1, Mark: xfrm.Mark{Value: 1, Mask: 1}})
	time.Sleep(100 * time.Millisecond) // past the grace period
	w.quiet()
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.0/24", "10.99.0.0/24"), Dir: xfrm.DirOut, Priority: 1000}) // a tie: fail safe
	w.expect(1, latch.Established, latch.Broken, "bypass policy 10.99.0.0/24 -> 10.99.0.0/24 dir out priority 1000")
}

// charon installs a new child SA's policies (and SAs) before it announces
// the SA: objects that become charon's within the grace period never break
// anything.
func TestKernelCharonObjectsWithinGrace(t *testing.T) {
	w, k := kernelWorld(t, KernelSPDOn)
	tm := xfrm.Template{Proto: xfrm.ProtoESP, Mode: xfrm.Transport, Reqid: 2}
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.2/32"), Dir: xfrm.DirOut, Priority: 1, Templates: []xfrm.Template{tm}})
	k.addState(xfrm.State{Src: netip.MustParseAddr("10.99.0.1"), Dst: netip.MustParseAddr("10.99.0.2"), SPI: 0xc0000004, Proto: xfrm.ProtoESP, Keyed: true, Reqid: 2})
	// alice's SA is rekeyed into child SA 2 (same reqid in reality; here
	// the new reqid shows the policy's owner).
	nc := kernelChildSA()
	nc.UniqueID, nc.ReqID, nc.SPIIn, nc.SPIOut = 2, 2, "c0000003", "c0000004"
	sa := ikeSA(alice, 1, "10.99.0.2")
	old := kernelChildSA()
	w.sas[0].Children = []vici.ChildSA{nc}
	w.setSAs()
	w.ch.Emit(vici.ChildRekey{Time: time.Now(), IKE: sa, Old: old, New: nc})
	time.Sleep(100 * time.Millisecond)
	w.quiet()
	if li := w.inquire(1); li.State != latch.Established || len(li.Conflicts) != 0 {
		t.Fatalf("latch %v conflicts %v", li.State, li.Conflicts)
	}
}

// An SA in the kernel's SAD whose SPI no child SA of charon's has breaks
// the latches of the flows it may carry (2.3: a conflicting SA); charon's
// own SAs are reported by inquiry.
func TestKernelForeignSA(t *testing.T) {
	w, k := kernelWorld(t, KernelSPDOn)
	a1, a2 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	k.addState(xfrm.State{Src: a2, Dst: a1, SPI: 0xc0000001, Proto: xfrm.ProtoESP, Keyed: true, Reqid: 1})
	k.addState(xfrm.State{Src: a1, Dst: a2, SPI: 0xc0000002, Proto: xfrm.ProtoESP, Keyed: true, Reqid: 1})
	// A larval state (an SPI allocated for a negotiation) is nobody's yet.
	k.addState(xfrm.State{Src: a2, Dst: a1, SPI: 0xdead, Proto: xfrm.ProtoESP})
	time.Sleep(100 * time.Millisecond)
	w.quiet()
	want := []KernelSA{{Child: 1, ReqID: 1, SPIIn: 0xc0000001, SPIOut: 0xc0000002, Protocol: "ESP", Mode: "TRANSPORT"}}
	if got := w.m.KernelSAs(w.inquire(1)); len(got) != 1 || got[0] != want[0] {
		t.Errorf("KernelSAs %+v, want %+v", got, want)
	}
	k.addState(xfrm.State{Src: a2, Dst: a1, SPI: 0xbad0bad0, Proto: xfrm.ProtoESP, Mode: xfrm.Transport, Keyed: true, Reqid: 77})
	w.expect(1, latch.Established, latch.Broken, "SAD: foreign SA spi 0xbad0bad0 (esp transport 10.99.0.2 -> 10.99.0.1) added outside charon")
	// A resynchronisation keeps it.
	k.resync()
	w.quiet()
}

// Auto: under kernel-libipsec charon's SAs are not in the kernel's SAD and
// the kernel's SPD is not judged; once they are (kernel-netlink), it is.
func TestKernelAutoMode(t *testing.T) {
	w, k := kernelWorld(t, KernelSPDAuto)
	k.addPolicy(xfrm.Policy{Sel: hostSel("10.99.0.1/32", "10.99.0.2/32"), Dir: xfrm.DirOut, Priority: 1})
	time.Sleep(100 * time.Millisecond)
	w.quiet()
	k.addState(xfrm.State{Src: netip.MustParseAddr("10.99.0.2"), Dst: netip.MustParseAddr("10.99.0.1"), SPI: 0xc0000001, Proto: xfrm.ProtoESP, Keyed: true, Reqid: 1})
	w.expect(1, latch.Established, latch.Broken, "SPD: bypass policy")
	if !w.log.has("charon's SAs are in the kernel's SAD") {
		t.Error("no log line for the switch")
	}
}

func TestParseKernelSPDMode(t *testing.T) {
	for s, want := range map[string]KernelSPDMode{"auto": KernelSPDAuto, "ON": KernelSPDOn, "off": KernelSPDOff} {
		if got, err := ParseKernelSPDMode(s); err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	if _, err := ParseKernelSPDMode("maybe"); err == nil || !strings.Contains(err.Error(), "auto, on or off") {
		t.Errorf("bad mode: %v", err)
	}
}

// resyncKernel wraps a KernelSource: while drop is set it loses the
// notifications, and resync sends a Resync, as Watch does after ENOBUFS.
type resyncKernel struct {
	KernelSource
	drop atomic.Bool
	mu   sync.Mutex
	out  chan xfrm.Event
}

func (k *resyncKernel) Watch(ctx context.Context) (<-chan xfrm.Event, error) {
	in, err := k.KernelSource.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan xfrm.Event, 64)
	k.mu.Lock()
	k.out = out
	k.mu.Unlock()
	go func() {
		defer close(out)
		for ev := range in {
			if !k.drop.Load() {
				out <- ev
			}
		}
	}()
	return out, nil
}

func (k *resyncKernel) resync() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.out <- xfrm.Event{Kind: xfrm.Resync}
}
