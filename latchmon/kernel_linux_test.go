//go:build linux

package latchmon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNetns moves the test goroutine, locked to its thread, into a fresh
// network namespace with loopback up, and back when the test ends (as the
// sockets package's tests do). Only this goroutine may create sockets.
func inNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" || os.Getenv("BTNSD_INTEGRATION") == "1" {
			t.Fatal("network namespaces and SOCK_DESTROY need root; run scripts/test.sh as root")
		}
		t.Skip("network namespaces and SOCK_DESTROY need root")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Skipf("current network namespace: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Skipf("new network namespace: %v", err)
	}
	t.Cleanup(func() {
		err := netns.Set(orig)
		ns.Close()
		orig.Close()
		if err == nil {
			runtime.UnlockOSThread()
		}
	})
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	return ns
}

// The whole path with the kernel's sockets (RFC 5660 2.3.2, 5.5 (b)): a
// real TCP connection is latched from a sock_diag dump, an attacker's SA
// breaks the latch, the monitor destroys the socket by its cookie, the
// application's read fails with ECONNABORTED, and the kernel's destroy
// notification ends the latch.
func TestKernelSocketReset(t *testing.T) {
	ns := inNetns(t)
	h, err := sockets.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // after Run has stopped (cleanups run last first)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The SAs cover the client's flow only: from its port to the
	// server's (the listener and the accepted flow have other ports).
	local := fmt.Sprintf("127.0.0.1/32[tcp/%d]", c.LocalAddr().(*net.TCPAddr).Port)
	remote := fmt.Sprintf("127.0.0.1/32[tcp/%d]", ln.Addr().(*net.TCPAddr).Port)

	w := newWorld(t, worldOpts{src: h})
	w.start(worldOpts{})
	w.up(ikeSA(alice, 1, "127.0.0.1", childSA("web", 1, local, remote)))
	w.expect(1, latch.None, latch.Established, "latched")
	if li := w.inquire(1); li.Tuple.Local.String() != c.LocalAddr().String() || li.Cookie == 0 {
		t.Fatalf("latched %v cookie %#x, want the client's flow from %v", li.Tuple, li.Cookie, c.LocalAddr())
	}
	w.up(ikeSA(bob, 2, "127.0.0.1", childSA("web", 2, local, remote)))
	w.expect(1, latch.Established, latch.Broken, "conflicting child SA 2")
	w.expect(1, latch.Broken, latch.Closed, "socket closed")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("read on the reset connection: %v, want ECONNABORTED", err)
	}
	if !w.log.has("reset: socket cookie") || !w.log.has("destroyed") {
		t.Error("the reset is not logged")
	}
}
