package latchmon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/btnsd/btnsd/vici"
	"github.com/btnsd/btnsd/vici/vicitest"
)

// fakeSockets is an in-memory SocketSource: the test adds and closes
// sockets; Destroy removes a socket and notifies its close, as the kernel
// does.
type fakeSockets struct {
	mu        sync.Mutex
	socks     map[uint64]sockets.Socket
	watchers  map[chan sockets.Event]struct{}
	destroyed []uint64
	dumps     int
}

func newFakeSockets() *fakeSockets {
	return &fakeSockets{socks: map[uint64]sockets.Socket{}, watchers: map[chan sockets.Event]struct{}{}}
}

var _ SocketSource = (*fakeSockets)(nil)

func (f *fakeSockets) Dump(ctx context.Context) ([]sockets.Socket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	out := make([]sockets.Socket, 0, len(f.socks))
	for _, s := range f.socks {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b sockets.Socket) int { return int(a.Cookie) - int(b.Cookie) })
	return out, nil
}

func (f *fakeSockets) Destroy(s sockets.Socket) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.socks[s.Cookie]
	if !ok || s.Cookie == 0 {
		return fmt.Errorf("%w: %v", sockets.ErrGone, s)
	}
	delete(f.socks, s.Cookie)
	f.destroyed = append(f.destroyed, s.Cookie)
	f.emitLocked(sockets.Event{Kind: sockets.Closed, Socket: old})
	return nil
}

func (f *fakeSockets) Watch(ctx context.Context) (<-chan sockets.Event, error) {
	ch := make(chan sockets.Event, 4096)
	f.mu.Lock()
	f.watchers[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.watchers, ch)
		close(ch)
		f.mu.Unlock()
	}()
	return ch, nil
}

func (f *fakeSockets) emitLocked(ev sockets.Event) {
	for ch := range f.watchers {
		select {
		case ch <- ev:
		default:
			panic("fakeSockets: watch channel full")
		}
	}
}

func (f *fakeSockets) add(s sockets.Socket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.socks[s.Cookie] = s
}

// close closes a socket as its application would: the kernel reports it
// with its cookie, and (here) with local port 0 as it sometimes does.
func (f *fakeSockets) close(cookie uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.socks[cookie]
	if !ok {
		return
	}
	delete(f.socks, cookie)
	s.Local = netip.AddrPortFrom(s.Local.Addr(), 0)
	s.State = sockets.StateClose
	f.emitLocked(sockets.Event{Kind: sockets.Closed, Socket: s})
}

func (f *fakeSockets) setState(cookie uint64, state uint8, inode uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.socks[cookie]
	s.State, s.Inode = state, inode
	f.socks[cookie] = s
}

func (f *fakeSockets) destroyedCookies() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.destroyed)
}

func (f *fakeSockets) dumpCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dumps
}

func tcpSock(cookie uint64, local, remote string) sockets.Socket {
	return sockets.Socket{Proto: sockets.TCP, Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote),
		State: sockets.StateEstablished, Cookie: cookie, Inode: uint32(cookie)}
}

// logBuf collects log lines.
type logBuf struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	l.t.Log(s)
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logBuf) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(s string) bool { return strings.Contains(s, sub) })
}

// Keys and connections of the tests.
var (
	fpAlice = strings.Repeat("a1", 32)
	fpBob   = strings.Repeat("b0", 32)
	alice   = btnsauth.ConnName("web", fpAlice)
	bob     = btnsauth.ConnName("web", fpBob)
	anon    = btnsauth.ConnName("web", "")
)

func fpString(hex string) string {
	f, err := fingerprints.ParseFingerprint(hex)
	if err != nil {
		panic(err)
	}
	return f.String()
}

func webConns(onBreak string) []ConnInfo {
	ch := []ChildInfo{{Name: "web", Latch: true, OnBreak: onBreak}}
	return []ConnInfo{
		{Name: alice, Policy: "web", PeerFP: fpAlice, Children: ch},
		{Name: bob, Policy: "web", PeerFP: fpBob, Children: ch},
		{Name: anon, Policy: "web", Anonymous: true, Children: ch},
	}
}

func mustTS(ss ...string) []vici.TrafficSelector {
	var out []vici.TrafficSelector
	for _, s := range ss {
		ts, err := vici.ParseTS(s)
		if err != nil {
			panic(err)
		}
		out = append(out, ts)
	}
	return out
}

// ikeSA is an established IKE SA from 10.99.0.1 to remote, as charon lists
// it (a raw key's identity is its keyid in colon hex).
func ikeSA(conn string, id uint64, remote string, children ...vici.ChildSA) vici.IKESA {
	return vici.IKESA{
		Name: conn, UniqueID: id, Version: 2, State: "ESTABLISHED",
		LocalHost: netip.MustParseAddr("10.99.0.1"), RemoteHost: netip.MustParseAddr(remote), LocalPort: 4500, RemotePort: 4500,
		LocalID: "86:64:cd:37", RemoteID: "a5:01:10:39:" + conn,
		InitiatorSPI: fmt.Sprintf("%016x", 0x1000+id), ResponderSPI: fmt.Sprintf("%016x", 0x2000+id),
		EncrAlg: "AES_CBC", EncrKeySize: 128, IntegAlg: "HMAC_SHA2_256_128", PRFAlg: "PRF_HMAC_SHA2_256", DHGroup: "CURVE_25519",
		Children: children,
	}
}

// childSA is a child SA made with its IKE SA: charon lists no DH group.
func childSA(name string, id uint64, local, remote string) vici.ChildSA {
	return vici.ChildSA{
		Key: fmt.Sprintf("%s-%d", name, id), Name: name, UniqueID: id, ReqID: uint32(id), State: "INSTALLED",
		Mode: "TUNNEL", Protocol: "ESP", Encap: true, EncrAlg: "AES_GCM_16", EncrKeySize: 128,
		LocalTS: mustTS(local), RemoteTS: mustTS(remote),
	}
}

// world is a monitor running against a fake charon (vicitest) and fake
// sockets, wired as the daemon wires it: a goroutine forwards charon's
// event stream to HandleSAEvent.
type world struct {
	t      *testing.T
	m      *Monitor
	ch     *vicitest.Charon
	socks  *fakeSockets
	log    *logBuf
	alerts <-chan latch.Alert
	sas    []vici.IKESA
	cancel context.CancelFunc
	done   chan error
}

type worldOpts struct {
	statePath string
	conns     []ConnInfo
	noConns   bool // do not call SetConns
	ch        *vicitest.Charon
	socks     *fakeSockets
	src       SocketSource // instead of fake sockets
	subBuf    int
	restore   time.Duration
	// kernel is the kernel's SPD and SAD (spd_test.go); nil: not watched.
	kernel KernelSource
	kmode  KernelSPDMode
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, ch: o.ch, socks: o.socks, log: &logBuf{t: t}}
	if w.ch == nil {
		w.ch = vicitest.New()
	}
	if w.socks == nil {
		w.socks = newFakeSockets()
	}
	w.sas = w.ch.SAs()
	var src SocketSource = w.socks
	if o.src != nil {
		src = o.src
	}
	kmode := KernelSPDOff
	if o.kernel != nil {
		kmode = o.kmode
	}
	m, err := New(Config{StatePath: o.statePath, Logf: w.log.logf, Sockets: src, SAs: w.ch,
		PollInterval: 2 * time.Millisecond, PersistInterval: 5 * time.Millisecond,
		SubscriberBuffer: o.subBuf, RestoreTimeout: o.restore,
		KernelSPD: kmode, Kernel: o.kernel, KernelGrace: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.m = m
	w.alerts, _ = m.Subscribe()
	return w
}

// start runs the monitor and the daemon's event forwarding.
func (w *world) start(o worldOpts) {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.done = make(chan error, 1)
	events := w.ch.Watch(ctx)
	first := make(chan struct{})
	go func() {
		once := sync.OnceFunc(func() { close(first) })
		for ev := range events {
			w.m.HandleSAEvent(ev)
			once()
		}
	}()
	// The stream's first event is a Resync; once it is queued, Run's
	// first listing takes it, and the events the test sends are all
	// applied after that listing.
	<-first
	if !o.noConns {
		conns := o.conns
		if conns == nil {
			conns = webConns("reset")
		}
		w.m.SetConns(conns)
	}
	lists := w.ch.Stats()["list-sas"]
	go func() { w.done <- w.m.Run(ctx) }()
	w.t.Cleanup(w.stop)
	if !o.noConns {
		waitFor(w.t, "the first list-sas", func() bool { return w.ch.Stats()["list-sas"] > lists })
	}
}

// stop ends Run and waits for it.
func (w *world) stop() {
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	select {
	case err := <-w.done:
		if err != nil {
			w.t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		w.t.Fatal("Run did not return")
	}
}

func (w *world) setSAs() { w.ch.SetSAs(w.sas) }

// up brings an IKE SA and its children up: charon lists them, then sends
// ike-updown and child-updown.
func (w *world) up(sa vici.IKESA) {
	w.sas = append(w.sas, sa)
	w.setSAs()
	bare := sa
	bare.Children = nil
	w.ch.Emit(vici.IKEUpDown{Time: time.Now(), Up: true, IKE: bare})
	for _, c := range sa.Children {
		ev := bare
		ev.Children = []vici.ChildSA{c}
		w.ch.Emit(vici.ChildUpDown{Time: time.Now(), Up: true, IKE: ev, Child: c})
	}
}

// down takes an IKE SA down as charon does: a child-updown for each child,
// then ike-updown; state is the IKE SA's state then (DELETING for a
// delete, ESTABLISHED for a dead peer).
func (w *world) down(id uint64, state string) {
	i := slices.IndexFunc(w.sas, func(sa vici.IKESA) bool { return sa.UniqueID == id })
	sa := w.sas[i]
	w.sas = slices.Delete(w.sas, i, i+1)
	w.setSAs()
	sa.State = state
	bare := sa
	bare.Children = nil
	for _, c := range sa.Children {
		ev := bare
		ev.Children = []vici.ChildSA{c}
		w.ch.Emit(vici.ChildUpDown{Time: time.Now(), IKE: ev, Child: c})
	}
	w.ch.Emit(vici.IKEUpDown{Time: time.Now(), IKE: bare})
}

// syncSockets waits until a dump that started after now was applied.
func (w *world) syncSockets() {
	w.t.Helper()
	n := w.socks.dumpCount()
	waitFor(w.t, "two more socket dumps", func() bool { return w.socks.dumpCount() >= n+2 })
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// alert returns the next alert.
func (w *world) alert() latch.Alert {
	w.t.Helper()
	select {
	case a, ok := <-w.alerts:
		if !ok {
			w.t.Fatal("alert channel closed")
		}
		return a
	case <-time.After(5 * time.Second):
		w.t.Fatal("timed out waiting for an alert")
	}
	return latch.Alert{}
}

// expect checks the next alert's latch and transition, and that its reason
// contains reason.
func (w *world) expect(id latch.LatchID, from, to latch.State, reason string) latch.Alert {
	w.t.Helper()
	a := w.alert()
	if a.LatchID != id || a.From != from || a.To != to || !strings.Contains(a.Reason, reason) {
		w.t.Fatalf("alert %d %v -> %v %q, want %d %v -> %v containing %q", a.LatchID, a.From, a.To, a.Reason, id, from, to, reason)
	}
	return a
}

// quiet checks that no alert comes for a while.
func (w *world) quiet() {
	w.t.Helper()
	w.syncSockets()
	select {
	case a := <-w.alerts:
		w.t.Fatalf("unexpected alert %+v", a)
	case <-time.After(20 * time.Millisecond):
	}
}

func (w *world) inquire(id latch.LatchID) latch.LatchInfo {
	w.t.Helper()
	li, err := w.m.Inquire(id)
	if err != nil {
		w.t.Fatal(err)
	}
	return li
}
