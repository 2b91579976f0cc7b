// Command demo shows btnsd at work on three throwaway hosts: a BTNS SA
// between a and b, a TCP connection latched to it, c taking b's address
// and bringing up its own SA, the broken latch, the alert and the reset.
// Run it through scripts/demo.sh, which installs and builds what it needs.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/integration/lab"
	"github.com/btnsd/btnsd/vici"
)

var binDir = flag.String("bin", "", "directory holding the btnsd and btnsctl binaries")

func main() {
	flag.Parse()
	start := time.Now()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nDone in %.1f s. Everything the demo created is gone.\n", time.Since(start).Seconds())
}

func step(n int, format string, args ...any) {
	fmt.Printf("\n== Step %d. %s\n", n, fmt.Sprintf(format, args...))
}

func say(format string, args ...any) { fmt.Printf("   "+format+"\n", args...) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "      " + strings.ReplaceAll(s, "\n", "\n      ")
}

// host is a lab host running charon and btnsd.
type host struct {
	*lab.Host
	root, sock string
	api        *api.Client
	vc         *vici.Client
}

func (h *host) ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.Run(ctx, filepath.Join(*binDir, "btnsctl"), append([]string{"--root", h.root, "--socket", h.sock}, args...)...)
}

func (h *host) fp() (fingerprints.Fingerprint, error) {
	s, err := h.api.Status(context.Background())
	if err != nil {
		return fingerprints.Fingerprint{}, err
	}
	return fingerprints.ParseFingerprint(s.HostKey.Fingerprint)
}

const policy = `connections {
  lan {
    remote_addrs = %s, %%any
    dpd_delay = 2s
    btns {
      enabled = yes
    }
    children {
      host {
        mode = %s
        btns {
          on_break = reset
        }
      }
    }
  }
}
`

func startHost(l *lab.Lab, name, peer string) (*host, error) {
	h := &host{Host: l.Host(name)}
	h.root = filepath.Join(h.Dir, "btnsd")
	h.sock = filepath.Join(h.Dir, "btnsd-run", "btnsd.sock")
	if err := os.MkdirAll(filepath.Join(h.root, "policy.d"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(h.root, "policy.d", "lan.conf"), []byte(fmt.Sprintf(policy, peer, l.Kernel.Mode())), 0o644); err != nil {
		return nil, err
	}
	if err := h.StartCharon(); err != nil {
		return nil, err
	}
	if _, err := h.Start("btnsd.log", nil, filepath.Join(*binDir, "btnsd"), "--root", h.root, "--vici", h.VICISocket(),
		"--run-dir", filepath.Dir(h.sock), "--state-dir", filepath.Join(h.Dir, "btnsd-state")); err != nil {
		return nil, err
	}
	h.api = api.NewClient(h.sock)
	h.vc = vici.New(h.VICISocket())
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := h.api.Status(context.Background())
		if err == nil && s.Charon.Connected && !s.LastSync.IsZero() {
			return h, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("btnsd on %s did not come up: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trust makes h trust peer's host key the way two administrators would.
func trust(h, peer *host) error {
	pub, err := peer.ctl("key", "host", "--format", "pem")
	if err != nil {
		return err
	}
	f := filepath.Join(h.Dir, peer.Name+".pub")
	if err := os.WriteFile(f, []byte(pub), 0o644); err != nil {
		return err
	}
	_, err = h.ctl("key", "add", f, "--name", peer.Name, "--trust")
	return err
}

// inNS runs fn with the calling thread in the network namespace ns, so that
// sockets fn creates belong to it.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	defer netns.Set(orig)
	return fn()
}

func run() error {
	if *binDir == "" {
		return errors.New("-bin is required (run scripts/demo.sh)")
	}
	step(1, "Three hosts on one LAN, each with strongSwan's charon and btnsd")
	l, err := lab.New(lab.Options{Hosts: []string{"a", "b", "c"}})
	if err != nil {
		return err
	}
	defer l.Close()
	say("network namespaces on a bridge: a %s, b %s, c %s (c will be the attacker)", l.Host("a").Addr4, l.Host("b").Addr4, l.Host("c").Addr4)
	say("charon uses %s (%s mode): this kernel %s ESP", l.Kernel, l.Kernel.Mode(), map[bool]string{true: "has", false: "has no"}[l.Kernel == lab.KernelNetlink])
	a, err := startHost(l, "a", l.Host("b").Addr4.String())
	if err != nil {
		return err
	}
	b, err := startHost(l, "b", l.Host("a").Addr4.String())
	if err != nil {
		return err
	}
	c, err := startHost(l, "c", l.Host("a").Addr4.String())
	if err != nil {
		return err
	}
	say("btnsd runs on each host with one policy file, policy.d/lan.conf:")
	fmt.Println(indent(fmt.Sprintf(policy, l.Host("b").Addr4, l.Kernel.Mode())))

	step(2, "The administrators exchange host keys and trust them with btnsctl key")
	out, err := b.ctl("key", "host")
	if err != nil {
		return err
	}
	say("on b, `btnsctl key host` shows the key to give to a's administrator:")
	fmt.Println(indent(out))
	for _, p := range [][2]*host{{a, b}, {b, a}, {a, c}, {c, a}} {
		if err := trust(p[0], p[1]); err != nil {
			return err
		}
	}
	say("a trusts b and c, b trusts a, c trusts a. c is a host a knows: an insider who turns attacker.")
	out, _ = a.ctl("key", "list")
	say("`btnsctl key list` on a:")
	fmt.Println(indent(out))

	step(3, "b brings up a BTNS SA with a: each side is identified by its key")
	fpA, err := a.fp()
	if err != nil {
		return err
	}
	ctx := context.Background()
	time.Sleep(200 * time.Millisecond) // btnsd loads the new key's connection within tens of ms
	if err := b.vc.Initiate(ctx, vici.InitiateOpts{IKE: btnsauth.ConnName("lan", fpA.Hex()), Child: "host", Timeout: 10 * time.Second}); err != nil {
		return fmt.Errorf("b -> a: %w", err)
	}
	out, _ = a.Swanctl(ctx, "--list-sas")
	say("`swanctl --list-sas` on a:")
	fmt.Println(indent(out))

	step(4, "b opens a TCP connection to a server on a; btnsd latches it")
	var ln net.Listener
	if err := inNS(a.NS, func() (err error) { ln, err = net.Listen("tcp", a.Addr4.String()+":5001"); return err }); err != nil {
		return err
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				serverErr <- err
				return
			}
			conn.Write([]byte("a got: " + line))
		}
	}()
	var conn net.Conn
	if err := inNS(b.NS, func() (err error) { conn, err = net.Dial("tcp", a.Addr4.String()+":5001"); return err }); err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "hello from b\n")
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	say("b sent %q and received %q, over the SA", "hello from b", strings.TrimSpace(reply))
	var latch api.Latch
	for deadline := time.Now().Add(3 * time.Second); ; {
		ls, _ := a.api.Latches(ctx)
		found := false
		for _, x := range ls {
			if x.Proto == "tcp" && x.Remote != "" && x.State == "ESTABLISHED" {
				latch, found = x, true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("a has no latch for the flow")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ = a.ctl("latch", "list", "--state", "ESTABLISHED")
	say("`btnsctl latch list` on a: the flow is bound to b's key and this SA's protection")
	fmt.Println(indent(out))
	out, _ = a.ctl("latch", "show", fmt.Sprint(latch.ID))
	say("`btnsctl latch show %d` on a:", latch.ID)
	fmt.Println(indent(strings.Split(out, "peer key:")[0]))
	for _, h := range []*host{a, b} {
		ls, _ := h.api.Latches(ctx)
		for _, x := range ls {
			if x.Proto == "tcp" && x.Remote != "" && (x.Local == latch.Remote || x.Remote == latch.Remote) {
				if cb, err := h.api.ChannelBinding(ctx, x.ID); err == nil {
					say("channel binding on %s: %s", h.Name, cb.Value)
				}
			}
		}
	}
	say("(both ends hash both keys: the same value proves no one with another key sits between them)")

	alerts := make(chan api.Alert, 64)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.api.Alerts(actx, func(x api.Alert) error { alerts <- x; return nil })
	time.Sleep(100 * time.Millisecond)

	step(5, "c takes b's address on the LAN and brings up its own SA with a, for the same traffic")
	if err := c.TakeAddress(ctx, l.Host("b")); err != nil {
		return err
	}
	say("b's link is down; c now answers for %s", l.Host("b").Addr4)
	attack := time.Now()
	if err := c.vc.Initiate(ctx, vici.InitiateOpts{IKE: btnsauth.ConnName("lan", fpA.Hex()), Child: "host", Timeout: 10 * time.Second}); err != nil {
		return fmt.Errorf("c -> a: %w", err)
	}
	say("c's SA is up: a trusts c's key, so charon accepts it. Without latching, the flow from")
	say("%s would now silently go to c.", l.Host("b").Addr4)

	step(6, "a's latch breaks; btnsd alerts and resets the connection")
	timeout := time.After(5 * time.Second)
wait:
	for {
		select {
		case x := <-alerts:
			if x.Latch == latch.ID {
				say("alert: latch %d %s %s -> %s: %s -> %s: %s", x.Latch, x.Proto, x.Local, x.Remote, x.From, x.To, x.Reason)
				if x.To == "BROKEN" {
					say("(%.1f ms after c's SA came up)", float64(time.Since(attack).Microseconds())/1000)
				}
				if x.To == "CLOSED" {
					break wait
				}
			}
		case <-timeout:
			return errors.New("no alert for the latch within 5 s")
		}
	}
	select {
	case err := <-serverErr:
		say("the server on a saw its connection end: %v", err)
	case <-time.After(2 * time.Second):
		return errors.New("the server's connection was not reset")
	}
	out, _ = a.ctl("latch", "list")
	say("`btnsctl latch list` on a: the flow's latch is gone with its connection")
	fmt.Println(indent(out))

	step(7, "Cleaning up: charons and btnsd stopped, namespaces and files removed")
	return nil
}
