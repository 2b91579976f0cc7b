package lab

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLabLifecycle checks the harness itself: hosts reach each other over
// the bridge, each has its own charon and VICI socket, and Close leaves no
// namespace, process or directory behind.
func TestLabLifecycle(t *testing.T) {
	Require(t)
	l, err := New(Options{Hosts: []string{"a", "b", "c"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			l.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, c := l.Host("a"), l.Host("b"), l.Host("c")
	if _, err := a.Run(ctx, "ping", "-c1", "-W2", b.Addr4.String()); err != nil {
		t.Fatalf("a cannot reach b over IPv4: %v", err)
	}
	if _, err := c.Run(ctx, "ping", "-c1", "-W2", b.Addr6.String()); err != nil {
		t.Fatalf("c cannot reach b over IPv6: %v", err)
	}
	for _, h := range l.Hosts() {
		if err := h.StartCharon(); err != nil {
			t.Fatal(err)
		}
		out, err := h.Swanctl(ctx, "--stats")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "IKE_SAs: 0 total") {
			t.Fatalf("swanctl --stats on %s: unexpected output:\n%s", h.Name, out)
		}
	}
	pids := []int{a.charon.Pid(), b.charon.Pid(), c.charon.Pid()}
	dir := l.Dir

	// Impersonation: c takes b's address; a now reaches c at b's address.
	if err := c.TakeAddress(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(ctx, "ping", "-c1", "-W2", b.Addr4.String()); err != nil {
		t.Fatalf("after c took b's address, a cannot reach it: %v", err)
	}
	out, err := a.Run(ctx, "ip", "neigh", "show", b.Addr4.String())
	if err != nil {
		t.Fatal(err)
	}
	cMAC, err := c.Run(ctx, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, strings.TrimSpace(cMAC)) {
		t.Fatalf("a's neighbour entry for %s is %q, want c's MAC %s", b.Addr4, out, cMAC)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	for _, h := range l.Hosts() {
		if _, err := os.Stat(filepath.Join("/run/netns", h.NS)); err == nil {
			t.Errorf("namespace %s left behind", h.NS)
		}
	}
	for _, pid := range pids {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			t.Errorf("charon pid %d left running", pid)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("lab directory %s left behind", dir)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
