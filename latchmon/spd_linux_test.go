//go:build linux

package latchmon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/btnsd/btnsd/latchmon/xfrm"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipXfrm runs `ip xfrm args...` in the namespace ns.
func ipXfrm(t *testing.T, ns netns.NsHandle, args ...string) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "ip", "xfrm"}, args...)...)
	// A duplicate: the *os.File closes its descriptor when collected.
	fd, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip xfrm %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// The whole path on this machine's kernel, which has XFRM but no ESP (RFC
// 5660 2.3: "the key manager MUST protect latched connections against SPD
// changes that ... would bypass it"; REQUIRED: break the latch): a real TCP
// connection latched to a transport mode child SA of a fake charon, a real
// bypass policy added with ip(8) in the namespace, seen through XFRM
// netlink; the latch breaks and, with the disposition reset (5.5 (b)), the
// socket is destroyed.
func TestKernelSPDBypassLive(t *testing.T) {
	ns := inNetns(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter not found")
	}
	h, err := sockets.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	xh, err := xfrm.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xh.Close() })
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
	cport, sport := c.LocalAddr().(*net.TCPAddr).Port, ln.Addr().(*net.TCPAddr).Port
	local := fmt.Sprintf("127.0.0.1/32[tcp/%d]", cport)
	remote := fmt.Sprintf("127.0.0.1/32[tcp/%d]", sport)

	w := newWorld(t, worldOpts{src: h, kernel: xh, kmode: KernelSPDOn})
	w.start(worldOpts{})
	ch := childSA("web", 1, local, remote)
	ch.Mode, ch.Encap, ch.SPIIn, ch.SPIOut = "TRANSPORT", false, "c1000001", "c1000002"
	w.up(ikeSA(alice, 1, "127.0.0.1", ch))
	w.expect(1, latch.None, latch.Established, "latched")
	// A policy for other ports changes nothing.
	ipXfrm(t, ns, "policy", "add", "src", "127.0.0.1/32", "dst", "127.0.0.1/32", "proto", "tcp", "dport", "1",
		"dir", "out", "action", "allow", "priority", "1")
	noAlert(t, w)
	ipXfrm(t, ns, "policy", "add", "src", "127.0.0.1/32", "dst", "127.0.0.1/32", "proto", "tcp", "dport", fmt.Sprint(sport),
		"dir", "out", "action", "allow", "priority", "1")
	w.expect(1, latch.Established, latch.Broken, fmt.Sprintf("SPD: bypass policy 127.0.0.1/32 -> 127.0.0.1/32:%d proto 6 dir out priority 1 added outside charon", sport))
	w.expect(1, latch.Broken, latch.Closed, "socket closed")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("read on the reset connection: %v, want ECONNABORTED", err)
	}
}

// Lost XFRM notifications (ENOBUFS) make the monitor list the SPD again,
// and a bypass added meanwhile still breaks the latch (notify: it mends
// when the policy goes).
func TestKernelSPDResyncLive(t *testing.T) {
	ns := inNetns(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter not found")
	}
	xh, err := xfrm.NewHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xh.Close() })
	k := &resyncKernel{KernelSource: xh}
	w := newWorld(t, worldOpts{kernel: k, kmode: KernelSPDOn})
	w.start(worldOpts{conns: webConns("notify")})
	w.socks.add(tcpSock(0x2a, "10.99.0.1:5001", "10.99.0.2:40000"))
	w.up(ikeSA(alice, 1, "10.99.0.2", kernelChildSA()))
	w.expect(1, latch.None, latch.Established, "latched")
	k.drop.Store(true) // notifications are lost from here
	ipXfrm(t, ns, "policy", "add", "src", "10.99.0.1/32", "dst", "10.99.0.2/32", "dir", "out", "action", "allow", "priority", "1")
	noAlert(t, w)
	k.drop.Store(false)
	k.resync()
	w.expect(1, latch.Established, latch.Broken, "SPD: bypass policy 10.99.0.1/32 -> 10.99.0.2/32 dir out priority 1 added outside charon")
	ipXfrm(t, ns, "policy", "delete", "src", "10.99.0.1/32", "dst", "10.99.0.2/32", "dir", "out")
	w.expect(1, latch.Broken, latch.Established, "conflict cleared")
}

// noAlert checks that no alert comes past the grace period (the sockets
// are real: quiet's wait for fake dumps does not apply).
func noAlert(t *testing.T, w *world) {
	t.Helper()
	select {
	case a := <-w.alerts:
		t.Fatalf("unexpected alert %+v", a)
	case <-time.After(200 * time.Millisecond):
	}
}
