// Command vmapp is the VM step's test application (vm/build.sh installs it
// as /usr/local/bin/vmapp; the VM has no Go toolchain): a TCP server and
// client that say what an application sees when btnsd breaks its latch
// (netcat does not tell an aborted socket from a closed one).
//
//	vmapp server ADDR   accepts connections and echoes lines
//	vmapp client ADDR   connects and sends a line every 100 ms
//
// Each prints what happens, one event a line, with the Unix time at its end
// ("t=<seconds>"): "listening ADDR", "accepted LOCAL REMOTE", "connected
// LOCAL REMOTE", "eof REMOTE", "error: <what>: <error>". The server reports
// the end of each connection and goes on accepting; the client exits 1 on a
// socket error. On a socket destroyed by SOCK_DESTROY (a latch's on_break =
// reset) the error is ECONNABORTED, "software caused connection abort".
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func say(format string, args ...any) {
	now := time.Now()
	fmt.Printf(format+" t=%d.%09d\n", append(args, now.Unix(), now.Nanosecond())...)
}

func fail(what string, err error) {
	say("error: %s: %v", what, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vmapp server|client ADDR")
		os.Exit(2)
	}
	mode, addr := os.Args[1], os.Args[2]
	switch mode {
	case "server":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fail("listen", err)
		}
		say("listening %s", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("accept", err)
			}
			say("accepted %s %s", c.LocalAddr(), c.RemoteAddr())
			go echo(c)
		}
	case "client":
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fail("dial", err)
		}
		say("connected %s %s", c.LocalAddr(), c.RemoteAddr())
		r := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "ping %d\n", i); err != nil {
				fail("write", err)
			}
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			if _, err := r.ReadString('\n'); err != nil {
				fail("read", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	fmt.Fprintf(os.Stderr, "vmapp: unknown mode %q\n", mode)
	os.Exit(2)
}

// echo echoes one connection's lines until it ends, and says how it ended.
func echo(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			say("eof %s", c.RemoteAddr())
			return
		}
		if err != nil {
			say("error: read %s: %v", c.RemoteAddr(), err)
			return
		}
		if _, err := c.Write([]byte(line)); err != nil {
			say("error: write %s: %v", c.RemoteAddr(), err)
			return
		}
	}
}
