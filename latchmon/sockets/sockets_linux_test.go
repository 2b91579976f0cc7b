package sockets

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// These tests use real sockets in a fresh network namespace per test (see
// inNetns): they need root, and fail rather than skip on CI.

func dump(t *testing.T) []Socket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ss, err := Dump(ctx)
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return ss
}

// byCookie finds the socket with cookie c in ss.
func byCookie(ss []Socket, c uint64) (Socket, bool) {
	for _, s := range ss {
		if s.Cookie == c {
			return s, true
		}
	}
	return Socket{}, false
}

// mustFind returns the socket with the cookie of c from a fresh dump.
func mustFind(t *testing.T, c syscall.Conn) Socket {
	t.Helper()
	cookie := cookieOf(t, c)
	s, ok := byCookie(dump(t), cookie)
	if !ok {
		t.Fatalf("no socket with cookie %#x in the dump", cookie)
	}
	return s
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	panic("not an IP address")
}

// canon is ap as Dump reports it: unmapped, no zone.
func canon(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// tcpPair listens on addr ("127.0.0.1", "::1", "::") and connects to it
// from dialAddr; it returns the listener, the client and the accepted
// server end, all closed when the test ends.
func tcpPair(t *testing.T, addr, dialAddr string) (*net.TCPListener, *net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln := listenTCP(t, netip.AddrPortFrom(netip.MustParseAddr(addr), 0), false)
	port := addrPort(ln.Addr()).Port()
	c, s := dialAccept(t, ln, &net.Dialer{}, netip.AddrPortFrom(netip.MustParseAddr(dialAddr), port))
	return ln, c, s
}

// listenTCP listens on a plain TCP socket, or with mptcp on the Multipath
// TCP socket that Go's listeners open by default since Go 1.24 (the
// application's socket is then an MPTCP one, and sock_diag's TCP dumps show
// its TCP subflows).
func listenTCP(t *testing.T, ap netip.AddrPort, mptcp bool) *net.TCPListener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(mptcp)
	l, err := lc.Listen(context.Background(), "tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// dialAccept connects to ln at to with d and returns both ends, closed
// when the test ends. It must run on the test goroutine (the dial creates
// a socket).
func dialAccept(t *testing.T, ln *net.TCPListener, d *net.Dialer, to netip.AddrPort) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.AcceptTCP() // the connection is queued already
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s
}

func checkSocket(t *testing.T, what string, got Socket, want Socket) {
	t.Helper()
	if want.Inode = got.Inode; got.Inode == 0 {
		t.Errorf("%s: inode 0 for an open socket", what)
	}
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestDumpTCP4(t *testing.T) { testDumpTCP(t, "127.0.0.1", "127.0.0.1") }
func TestDumpTCP6(t *testing.T) { testDumpTCP(t, "::1", "::1") }

// TestDumpTCPDualStack: a dual-stack IPv6 listener takes an IPv4 client;
// its accepted socket (AF_INET6, mapped addresses in the kernel) is
// reported with plain IPv4 addresses, like the client.
func TestDumpTCPDualStack(t *testing.T) { testDumpTCP(t, "::", "127.0.0.1") }

func testDumpTCP(t *testing.T, addr, dialAddr string) {
	inNetns(t)
	ln, c, s := tcpPair(t, addr, dialAddr)
	ss := dump(t)

	lc := cookieOf(t, ln)
	got, ok := byCookie(ss, lc)
	if !ok {
		t.Fatalf("listener (cookie %#x) not in the dump: %v", lc, ss)
	}
	checkSocket(t, "listener", got, Socket{
		Proto: TCP, Local: canon(addrPort(ln.Addr())), State: StateListen,
		Cookie: lc, Listening: true,
	})

	for _, e := range []struct {
		name string
		c    *net.TCPConn
	}{{"client", c}, {"server", s}} {
		cookie := cookieOf(t, e.c)
		got, ok := byCookie(ss, cookie)
		if !ok {
			t.Fatalf("%s (cookie %#x) not in the dump: %v", e.name, cookie, ss)
		}
		checkSocket(t, e.name, got, Socket{
			Proto: TCP, Local: canon(addrPort(e.c.LocalAddr())), Remote: canon(addrPort(e.c.RemoteAddr())),
			State: StateEstablished, Cookie: cookie,
		})
	}
	if len(ss) != 3 {
		t.Errorf("dump of a fresh namespace: %d sockets, want 3: %v", len(ss), ss)
	}
}

func TestDumpUDP4(t *testing.T) { testDumpUDP(t, "127.0.0.1") }
func TestDumpUDP6(t *testing.T) { testDumpUDP(t, "::1") }

func testDumpUDP(t *testing.T, addr string) {
	inNetns(t)
	ip := netip.MustParseAddr(addr)
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ss := dump(t)

	got, _ := byCookie(ss, cookieOf(t, srv))
	checkSocket(t, "unconnected", got, Socket{
		Proto: UDP, Local: addrPort(srv.LocalAddr()), State: StateClose,
		Cookie: cookieOf(t, srv), Listening: true,
	})
	got, _ = byCookie(ss, cookieOf(t, cli))
	checkSocket(t, "connected", got, Socket{
		Proto: UDP, Local: addrPort(cli.LocalAddr()), Remote: addrPort(cli.RemoteAddr()),
		State: StateEstablished, Cookie: cookieOf(t, cli),
	})
	if len(ss) != 2 {
		t.Errorf("dump of a fresh namespace: %d sockets, want 2: %v", len(ss), ss)
	}
}

func TestDumpCancelled(t *testing.T) {
	inNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dump(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Dump with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestDestroyTCP4(t *testing.T)         { testDestroyTCP(t, "127.0.0.1", "127.0.0.1") }
func TestDestroyTCP6(t *testing.T)         { testDestroyTCP(t, "::1", "::1") }
func TestDestroyTCPDualStack(t *testing.T) { testDestroyTCP(t, "::", "127.0.0.1") }

// testDestroyTCP destroys each end of a connection in turn (the accepted
// end of a dual-stack listener is an AF_INET6 socket with mapped addresses,
// which Dump reports unmapped and Destroy still finds): the application
// gets ECONNABORTED, also in a read already pending, and the peer a reset.
func testDestroyTCP(t *testing.T, addr, dialAddr string) {
	inNetns(t)
	ln, c, s := tcpPair(t, addr, dialAddr)
	c2, s2 := dialAccept(t, ln, &net.Dialer{}, netip.AddrPortFrom(netip.MustParseAddr(dialAddr), addrPort(ln.Addr()).Port()))

	for _, e := range []struct {
		name         string
		victim, peer *net.TCPConn
	}{{"client", c, s}, {"server", s2, c2}} {
		so := mustFind(t, e.victim)
		pending := make(chan error, 1)
		go func() {
			_, err := e.victim.Read(make([]byte, 1))
			pending <- err
		}()
		time.Sleep(20 * time.Millisecond) // let the read block

		if err := Destroy(so); err != nil {
			t.Fatalf("Destroy(%v): %v", so, err)
		}
		select {
		case err := <-pending:
			if !errors.Is(err, syscall.ECONNABORTED) {
				t.Errorf("%s: pending read after Destroy: %v, want ECONNABORTED", e.name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: pending read still blocked after Destroy", e.name)
		}
		if _, err := e.victim.Write([]byte("x")); !errors.Is(err, syscall.ECONNABORTED) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("%s: write after Destroy: %v, want ECONNABORTED or EPIPE", e.name, err)
		}
		e.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := e.peer.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s's peer: read after Destroy: %v, want ECONNRESET", e.name, err)
		}
		if _, ok := byCookie(dump(t), so.Cookie); ok {
			t.Errorf("%s: destroyed socket still in the dump", e.name)
		}
		if err := Destroy(so); !errors.Is(err, ErrGone) {
			t.Errorf("%s: second Destroy: %v, want ErrGone", e.name, err)
		}
	}

	// The listener survived all that, and goes too.
	lso := mustFind(t, ln)
	if err := Destroy(lso); err != nil {
		t.Fatalf("Destroy(listener): %v", err)
	}
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := ln.Accept(); !errors.Is(err, syscall.ECONNABORTED) && !errors.Is(err, syscall.EINVAL) {
		t.Errorf("accept on a destroyed listener: %v, want ECONNABORTED or EINVAL", err)
	}
	if _, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr(dialAddr), lso.Local.Port()).String(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a destroyed listener: %v, want ECONNREFUSED", err)
	}
}

func TestDestroyStaleTCP4(t *testing.T) { testDestroyStaleTCP(t, "127.0.0.1") }
func TestDestroyStaleTCP6(t *testing.T) { testDestroyStaleTCP(t, "::1") }

// testDestroyStaleTCP: a socket seen in a dump closes and a new one takes
// the same 4-tuple; destroying the old one by its cookie answers ErrGone
// and leaves the new one working.
func testDestroyStaleTCP(t *testing.T, addr string) {
	inNetns(t)
	ip := netip.MustParseAddr(addr)
	ln, old, oldSrv := tcpPair(t, addr, addr)
	stale := mustFind(t, old)
	// Abortive close: no TIME-WAIT holding the tuple.
	old.SetLinger(0)
	old.Close()
	oldSrv.Close()

	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(stale.Local)}
	to := netip.AddrPortFrom(ip, stale.Remote.Port())
	var conn net.Conn
	var err error
	for range 50 { // the reset server end may linger a moment
		if conn, err = d.Dial("tcp", to.String()); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("reuse the 4-tuple: %v", err)
	}
	c := conn.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	s, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	fresh := mustFind(t, c)
	if fresh.Local != stale.Local || fresh.Remote != stale.Remote {
		t.Fatalf("new socket %v is not on the old tuple %v", fresh, stale)
	}
	if fresh.Cookie == stale.Cookie {
		t.Fatalf("new socket has the old cookie %#x", fresh.Cookie)
	}

	if err := Destroy(stale); !errors.Is(err, ErrGone) {
		t.Fatalf("Destroy(stale) = %v, want ErrGone", err)
	}
	echo(t, c, s)
	if _, ok := byCookie(dump(t), fresh.Cookie); !ok {
		t.Error("new socket gone from the dump")
	}
	if err := Destroy(fresh); err != nil {
		t.Errorf("Destroy(fresh): %v", err)
	}
}

// echo checks that a and b still talk.
func echo(t *testing.T, a, b net.Conn) {
	t.Helper()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	b.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q: %v", buf, err)
	}
}

func TestDestroyUDP4(t *testing.T) { testDestroyUDP(t, "127.0.0.1") }
func TestDestroyUDP6(t *testing.T) { testDestroyUDP(t, "::1") }

// testDestroyUDP destroys a connected and an unconnected UDP socket, and
// tries a stale cookie on a reused tuple.
func testDestroyUDP(t *testing.T, addr string) {
	inNetns(t)
	ip := netip.MustParseAddr(addr)
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	for _, e := range []struct {
		name string
		c    *net.UDPConn
	}{{"connected", cli}, {"unconnected", srv}} {
		so := mustFind(t, e.c)
		pending := make(chan error, 1)
		go func() {
			_, _, err := e.c.ReadFrom(make([]byte, 1))
			pending <- err
		}()
		time.Sleep(20 * time.Millisecond)
		if err := Destroy(so); err != nil {
			t.Fatalf("Destroy(%v): %v", so, err)
		}
		select {
		case err := <-pending:
			if !errors.Is(err, syscall.ECONNABORTED) {
				t.Errorf("%s: pending read after Destroy: %v, want ECONNABORTED", e.name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: pending read still blocked after Destroy", e.name)
		}
		// An autobound socket is unhashed: gone from dumps and lookups.
		if _, ok := byCookie(dump(t), so.Cookie); ok {
			t.Errorf("%s: destroyed socket still in the dump", e.name)
		}
		if err := Destroy(so); !errors.Is(err, ErrGone) {
			t.Errorf("%s: second Destroy: %v, want ErrGone", e.name, err)
		}
	}

	// A stale cookie on a tuple that a new socket took.
	again, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(canon(addrPort(srv.LocalAddr()))))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	fresh := mustFind(t, again)
	stale := fresh
	stale.Cookie = cookieOf(t, srv)
	if err := Destroy(stale); !errors.Is(err, ErrGone) {
		t.Errorf("Destroy(stale) = %v, want ErrGone", err)
	}
	if _, ok := byCookie(dump(t), fresh.Cookie); !ok {
		t.Error("the new socket is gone")
	}
	if err := Destroy(Socket{Proto: UDP, Local: fresh.Local}); !errors.Is(err, ErrGone) {
		t.Errorf("Destroy with cookie 0 = %v, want ErrGone", err)
	}

	// A socket bound to an explicit port survives Destroy: one error, then
	// it goes on receiving.
	if err := Destroy(fresh); err != nil {
		t.Fatalf("Destroy(%v): %v", fresh, err)
	}
	if _, ok := byCookie(dump(t), fresh.Cookie); !ok {
		t.Error("explicitly bound socket gone from the dump after Destroy")
	}
	again.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := again.ReadFrom(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("read after Destroy: %v, want ECONNABORTED", err)
	}
	send, err := net.DialUDP("udp", nil, again.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	if _, err := send.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := again.ReadFrom(make([]byte, 1)); err != nil {
		t.Errorf("explicitly bound socket after Destroy: %v, want it receiving", err)
	}
}

// TestHandleOtherNamespace: a Handle on a namespace works from a goroutine
// that is not in it.
func TestHandleOtherNamespace(t *testing.T) {
	ns := inNetns(t)
	ln, c, _ := tcpPair(t, "127.0.0.1", "127.0.0.1")
	want := map[uint64]bool{cookieOf(t, ln): true, cookieOf(t, c): true}

	done := make(chan error, 1)
	go func() { // not locked, so in the test process's namespace
		h, err := NewHandle(ns)
		if err != nil {
			done <- err
			return
		}
		defer h.Close()
		ss, err := h.Dump(context.Background())
		if err != nil {
			done <- err
			return
		}
		n := 0
		for _, s := range ss {
			if want[s.Cookie] {
				n++
			}
		}
		if n != len(want) {
			done <- errors.New("the namespace's sockets are not in the Handle's dump")
			return
		}
		done <- h.Destroy(mustFindIn(ss, cookieOf(t, c)))
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("read after Destroy through the Handle: %v, want ECONNABORTED", err)
	}
}

func mustFindIn(ss []Socket, cookie uint64) Socket {
	s, _ := byCookie(ss, cookie)
	return s
}

func TestWatch(t *testing.T) {
	inNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ln, c, s := tcpPair(t, "::1", "::1")
	u4, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u6, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv6loopback, Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	ss := dump(t)
	want := map[uint64]Socket{}
	for _, conn := range []syscall.Conn{ln, c, s, u4, u6} {
		so, ok := byCookie(ss, cookieOf(t, conn))
		if !ok {
			t.Fatalf("%v not in the dump", conn)
		}
		want[so.Cookie] = so
	}
	c.Close()
	s.Close()
	ln.Close()
	u4.Close()
	u6.Close()

	timeout := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case ev := <-ch:
			if ev.Kind != Closed {
				t.Fatalf("event %v, want only Closed", ev)
			}
			so, ok := want[ev.Socket.Cookie]
			if !ok {
				continue
			}
			delete(want, so.Cookie)
			got := ev.Socket
			if got.Proto != so.Proto || got.Remote != so.Remote || got.Listening != so.Listening {
				t.Errorf("closed %v, dumped as %v", got, so)
			}
			// The kernel may have released the local port already.
			if got.Local != so.Local && got.Local != netip.AddrPortFrom(so.Local.Addr(), 0) {
				t.Errorf("closed %v, dumped as %v", got, so)
			}
			t.Logf("%v (dumped as %v)", ev, so)
		case <-timeout:
			t.Fatalf("no Closed event for %v", want)
		}
	}

	cancel()
	for range ch { // drain until closed
	}
}

// TestWatchOverflow: a consumer that falls behind gets Overflow.
func TestWatchOverflow(t *testing.T) {
	inNetns(t)
	h, err := NewHandle(netns.None())
	if err != nil {
		t.Fatal(err)
	}
	h.watchBuf = 1 // the kernel's minimum, a few notifications
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := h.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads ch while 500 sockets close.
	for range 500 {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		u.Close()
	}
	timeout := time.After(10 * time.Second)
	closed := 0
	for {
		select {
		case ev := <-ch:
			if ev.Kind == Overflow {
				t.Logf("Overflow after %d Closed events", closed)
				return
			}
			closed++
		case <-timeout:
			t.Fatalf("no Overflow; %d Closed events", closed)
		}
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	inNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// An event that was on its way; the close must follow.
			<-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel still open after the context ended")
	}
}

// TestMPTCPListener: Go's listeners are Multipath TCP sockets by default
// (Go 1.24+). sock_diag's TCP dump shows the TCP subflow of such a
// listener, whose cookie is not the application socket's SO_COOKIE; a plain
// TCP peer makes the accepted connection fall back to TCP, and then the
// accepted socket is the very TCP socket, cookie and all, and Destroy
// aborts it.
func TestMPTCPListener(t *testing.T) {
	inNetns(t)
	ln := listenTCP(t, netip.MustParseAddrPort("127.0.0.1:0"), true)
	c, s := dialAccept(t, ln, &net.Dialer{}, addrPort(ln.Addr()))
	ss := dump(t)
	var lso Socket
	for _, so := range ss {
		if so.Listening && so.Local == addrPort(ln.Addr()) {
			lso = so
		}
	}
	if lso.Cookie == 0 {
		t.Fatalf("no listening subflow for %v in %v", ln.Addr(), ss)
	}
	t.Logf("listener: application socket cookie %#x, TCP subflow %v", cookieOf(t, ln), lso)

	so := mustFind(t, s)
	if err := Destroy(so); err != nil {
		t.Fatalf("Destroy(%v): %v", so, err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("read after Destroy: %v, want ECONNABORTED", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read after Destroy: %v, want ECONNRESET", err)
	}
}

// TestDestroyReusePort: in a SO_REUSEPORT group, the kernel's lookup picks
// one member by a hash of the remote end; Destroy still reaches each
// listener and unconnected UDP socket of the group by its cookie.
func TestDestroyReusePort(t *testing.T) {
	inNetns(t)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	lc.SetMultipathTCP(false)
	for _, network := range []string{"udp", "tcp"} {
		var group []syscall.Conn
		for range 8 {
			if network == "udp" {
				c, err := lc.ListenPacket(context.Background(), network, "127.0.0.1:6666")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				group = append(group, c.(*net.UDPConn))
			} else {
				l, err := lc.Listen(context.Background(), network, "127.0.0.1:6666")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				group = append(group, l.(*net.TCPListener))
			}
		}
		for i, c := range group {
			so := mustFind(t, c)
			if err := Destroy(so); err != nil {
				t.Errorf("%s member %d: Destroy(%v): %v", network, i, so, err)
			}
		}
		// A gone member: ErrGone, after trying every remote port.
		if err := Destroy(Socket{Proto: UDP, Local: netip.MustParseAddrPort("127.0.0.1:6666"), Cookie: 1}); !errors.Is(err, ErrGone) {
			t.Errorf("Destroy of an unknown cookie: %v, want ErrGone", err)
		}
	}
}

// TestTimeWaitKeepsCookie pins down what a monitor must know: the kernel
// reports a TCP socket Closed when it frees it, yet a dump taken after
// that lists its TIME-WAIT successor under the same cookie, with Inode 0.
func TestTimeWaitKeepsCookie(t *testing.T) {
	inNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, c, s := tcpPair(t, "127.0.0.1", "127.0.0.1")
	cookie := cookieOf(t, c)
	c.Close() // the active closer ends in TIME-WAIT
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("server read: %v, want EOF", err)
	}
	s.Close()
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-ch:
			seen = ev.Kind == Closed && ev.Socket.Cookie == cookie
		case <-timeout:
			t.Fatal("no Closed event for the client")
		}
	}
	tw, ok := byCookie(dump(t), cookie)
	if !ok {
		t.Fatal("no TIME-WAIT socket with the closed socket's cookie")
	}
	if tw.State != StateTimeWait || tw.Inode != 0 {
		t.Errorf("after close: %+v, want TIME-WAIT with inode 0", tw)
	}
}
