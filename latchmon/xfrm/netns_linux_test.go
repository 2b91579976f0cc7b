package xfrm

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func mustRun() bool {
	return os.Getenv("CI") == "true" || os.Getenv("BTNSD_INTEGRATION") == "1"
}

func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if mustRun() {
		tb.Fatalf(format+" (CI=true or BTNSD_INTEGRATION=1: these tests must run)", args...)
	}
	tb.Skipf(format+" (skipped; with CI=true or BTNSD_INTEGRATION=1 this fails)", args...)
}

// newNetns creates a fresh network namespace without entering it: tests
// reach it through a Handle and run ip(8) in it with nsenter semantics
// (ipIn). It is removed when the test ends.
func newNetns(tb testing.TB) netns.NsHandle {
	tb.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(tb, "XFRM notifications and network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(tb, "ip(8) not found")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		skipOrFail(tb, "current network namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		skipOrFail(tb, "new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		tb.Fatalf("back to the original namespace: %v", err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}

// ipIn runs ip(8) with args in the namespace ns (through /proc/self/fd, as
// `nsenter --net=`).
func ipIn(tb testing.TB, ns netns.NsHandle, args ...string) {
	tb.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "ip"}, args...)...)
	// A duplicate: the *os.File closes its descriptor when collected.
	fd, err := unix.Dup(int(ns))
	if err != nil {
		tb.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func handleOn(tb testing.TB, ns netns.NsHandle) *Handle {
	tb.Helper()
	h, err := NewHandle(ns)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

func next(tb testing.TB, ch <-chan Event) Event {
	tb.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			tb.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		tb.Fatal("no XFRM event within 5s")
	}
	return Event{}
}

func TestWatchPolicies(t *testing.T) {
	ns := newNetns(t)
	h := handleOn(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := h.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ipIn(t, ns, "xfrm", "policy", "add", "src", "10.99.0.1/32", "dst", "10.99.0.2/32", "proto", "tcp", "dport", "80",
		"dir", "out", "action", "allow", "priority", "100")
	ev := next(t, ch)
	if ev.Kind != NewPolicy || ev.Policy == nil {
		t.Fatalf("got %+v, want NEWPOLICY", ev)
	}
	p := ev.Policy
	if p.Sel.String() != "10.99.0.1/32 -> 10.99.0.2/32:80 proto 6" || p.Dir != DirOut || p.Priority != 100 || !p.Bypass() || p.Index == 0 {
		t.Fatalf("policy %v (index %d, sel %q)", p, p.Index, p.Sel)
	}
	ipIn(t, ns, "xfrm", "policy", "add", "src", "10.99.0.2/32", "dst", "10.99.0.1/32", "dir", "in",
		"priority", "7", "mark", "0x42", "mask", "0xff", "tmpl", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
		"spi", "0x1234", "reqid", "9", "mode", "tunnel")
	ev = next(t, ch)
	q := ev.Policy
	want := Template{Src: mustAddr("192.0.2.1"), Dst: mustAddr("192.0.2.2"), Proto: ProtoESP, SPI: 0x1234, Mode: Tunnel, Reqid: 9}
	if ev.Kind != NewPolicy || q.Dir != DirIn || q.Priority != 7 || len(q.Templates) != 1 || q.Templates[0] != want ||
		q.Mark != (Mark{0x42, 0xff}) || q.Mark.MatchesUnmarked() {
		t.Fatalf("got %v %+v", ev.Kind, q)
	}
	pols, err := h.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pols) != 2 {
		t.Fatalf("dump: %d policies, want 2: %+v", len(pols), pols)
	}
	ipIn(t, ns, "xfrm", "policy", "update", "src", "10.99.0.1/32", "dst", "10.99.0.2/32", "proto", "tcp", "dport", "80",
		"dir", "out", "action", "block", "priority", "100")
	ev = next(t, ch)
	if ev.Kind != UpdPolicy || ev.Policy.Action != Block || ev.Policy.Index != p.Index {
		t.Fatalf("got %v %+v, want UPDPOLICY block index %d", ev.Kind, ev.Policy, p.Index)
	}
	ipIn(t, ns, "xfrm", "policy", "delete", "src", "10.99.0.1/32", "dst", "10.99.0.2/32", "proto", "tcp", "dport", "80", "dir", "out")
	ev = next(t, ch)
	if ev.Kind != DelPolicy || ev.Policy.Index != p.Index || ev.Policy.Sel != p.Sel || ev.Policy.Priority != 100 {
		t.Fatalf("got %v %+v, want DELPOLICY of index %d", ev.Kind, ev.Policy, p.Index)
	}
	ipIn(t, ns, "xfrm", "policy", "flush")
	if ev = next(t, ch); ev.Kind != FlushPolicy {
		t.Fatalf("got %v, want FLUSHPOLICY", ev.Kind)
	}
	cancel()
	for range ch {
	}
}

// TestWatchOverflow: a reader that falls behind gets Resync (ENOBUFS), then
// the notifications that follow.
func TestWatchOverflow(t *testing.T) {
	ns := newNetns(t)
	h := handleOn(t, ns)
	h.watchBuf = 1 // the kernel's minimum
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := h.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads while 300 policies come and go: the socket's buffer
	// (a few kB) overflows.
	var batch strings.Builder
	for i := range 300 {
		batch.WriteString("xfrm policy add src 10.98." + itoa(i/250) + "." + itoa(i%250) + "/32 dst 10.97.0.1/32 dir out priority 5\n")
	}
	f, err := os.CreateTemp(t.TempDir(), "batch")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(batch.String())
	f.Close()
	ipIn(t, ns, "-batch", f.Name())
	time.Sleep(100 * time.Millisecond)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == Resync {
				return
			}
		case <-deadline:
			t.Fatal("no Resync after an overflow")
		}
	}
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}
