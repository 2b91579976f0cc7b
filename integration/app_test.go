package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/integration/lab"
)

// The test binary doubles as a small TCP application that the tests run
// inside lab hosts, so that they can see what an application sees when its
// latch breaks: BTNSD_TEST_APP=server ADDR accepts connections and echoes
// lines; BTNSD_TEST_APP=client ADDR connects and sends a line every 100 ms;
// BTNSD_TEST_APP=relay ADDR relays each connection to BTNSD_TEST_TARGET;
// udpserver and udpclient do the same as server and client over UDP (the
// client's socket is connected: a 5-tuple flow).
// Each prints what happens, one event a line; the client and relay exit 1
// on a socket error, the server reports it and goes on.
func runTestApp() {
	mode, addr := os.Getenv("BTNSD_TEST_APP"), os.Getenv("BTNSD_TEST_ADDR")
	fail := func(what string, err error) {
		fmt.Printf("error: %s: %v\n", what, err)
		os.Exit(1)
	}
	switch mode {
	case "server":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fail("listen", err)
		}
		fmt.Printf("listening %s\n", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("accept", err)
			}
			fmt.Printf("accepted %s %s\n", c.LocalAddr(), c.RemoteAddr())
			go func() {
				// One connection's end is reported, not fatal: the
				// server goes on accepting.
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err == io.EOF {
						fmt.Printf("eof %s\n", c.RemoteAddr())
						return
					}
					if err != nil {
						fmt.Printf("error: read: %v\n", err)
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						fmt.Printf("error: write: %v\n", err)
						return
					}
				}
			}()
		}
	case "relay":
		// A man in the middle: accepts on addr, connects to the target
		// for each connection, and copies both ways.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fail("listen", err)
		}
		fmt.Printf("listening %s\n", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("accept", err)
			}
			up, err := net.DialTimeout("tcp", os.Getenv("BTNSD_TEST_TARGET"), 5*time.Second)
			if err != nil {
				fail("dial", err)
			}
			fmt.Printf("relaying %s -> %s\n", c.RemoteAddr(), up.RemoteAddr())
			go io.Copy(up, c)
			go io.Copy(c, up)
		}
	case "udpserver":
		// Echoes datagrams; an unconnected socket, as UDP servers are.
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			fail("listen", err)
		}
		fmt.Printf("listening %s\n", pc.LocalAddr())
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				fail("read", err)
			}
			pc.WriteTo(buf[:n], from)
		}
	case "udpclient":
		// A connected UDP socket: a 5-tuple flow.
		c, err := net.Dial("udp", addr)
		if err != nil {
			fail("dial", err)
		}
		fmt.Printf("connected %s %s\n", c.LocalAddr(), c.RemoteAddr())
		buf := make([]byte, 1500)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "ping %d\n", i); err != nil {
				fail("write", err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := c.Read(buf); err != nil && !os.IsTimeout(err) {
				fail("read", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	case "client":
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fail("dial", err)
		}
		fmt.Printf("connected %s %s\n", c.LocalAddr(), c.RemoteAddr())
		r := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "ping %d\n", i); err != nil {
				fail("write", err)
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := r.ReadString('\n'); err != nil {
				fail("read", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	fmt.Printf("error: unknown BTNSD_TEST_APP %q\n", mode)
	os.Exit(2)
}

// app is a test application running in a lab host.
type app struct {
	t    testing.TB
	proc *lab.Proc
}

// startApp runs the test application in h (mode "server", "client" or
// "relay", whose target is in env).
func startApp(t testing.TB, h *lab.Host, mode, addr string, env ...string) *app {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.Start("app-"+mode+".log", append([]string{"BTNSD_TEST_APP=" + mode, "BTNSD_TEST_ADDR=" + addr}, env...), self)
	if err != nil {
		t.Fatal(err)
	}
	a := &app{t: t, proc: p}
	t.Cleanup(p.Stop)
	return a
}

// waitLine waits up to d for a line of the app's output that starts with
// prefix, and returns it.
func (a *app) waitLine(d time.Duration, prefix string) string {
	a.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(a.proc.Tail(100), "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.t.Fatalf("%s: no line %q within %v; output:\n%s", a.proc.Name, prefix, d, a.proc.Tail(20))
	return ""
}

// hasLine reports whether the app printed a line starting with prefix.
func (a *app) hasLine(prefix string) bool {
	for _, l := range strings.Split(a.proc.Tail(100), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
