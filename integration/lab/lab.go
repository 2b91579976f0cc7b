// Package lab builds throwaway networks of real hosts for btnsd's
// integration tests and demo: each host is a Linux network namespace with its
// own addresses and its own charon (from Debian's strongSwan packages), all
// hosts joined by one bridge, like machines on a LAN.
//
// A Lab needs root. Everything it creates (namespaces, processes, mounts,
// files) is removed by Close, which is safe to call more than once and after
// a partial New. Namespaces left behind by a killed test binary are swept by
// the next New.
//
// Addresses: host number i (1-based, in the order given) has 10.99.0.i/24 and
// fd00:99::i/64 on its interface eth0.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kernel selects charon's kernel interface.
type Kernel int

const (
	// KernelAuto uses kernel-netlink when the kernel has ESP and
	// kernel-libipsec otherwise.
	KernelAuto Kernel = iota
	// KernelNetlink uses the kernel's XFRM ESP (transport mode possible).
	KernelNetlink
	// KernelLibIPsec uses charon's userspace ESP over a TUN device (tunnel
	// mode only, UDP-encapsulated ESP).
	KernelLibIPsec
)

func (k Kernel) String() string {
	switch k {
	case KernelNetlink:
		return "kernel-netlink"
	case KernelLibIPsec:
		return "kernel-libipsec"
	}
	return "auto"
}

// Mode is the IPsec mode that works with k: transport on kernel ESP,
// tunnel on libipsec.
func (k Kernel) Mode() string {
	if k == KernelLibIPsec {
		return "tunnel"
	}
	return "transport"
}

// Options configure a Lab.
type Options struct {
	// Hosts names the hosts, in address order. Default: "a", "b".
	Hosts []string
	// Kernel selects charon's kernel interface; KernelAuto probes.
	Kernel Kernel
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
	// Dir is where host directories go; default a new temporary directory,
	// removed by Close.
	Dir string
}

// Lab is a set of hosts on one bridge.
type Lab struct {
	ID     string
	Dir    string
	Kernel Kernel

	hosts  []*Host
	swNS   string
	logf   func(string, ...any)
	ownDir bool

	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

// Host is one namespace with its charon.
type Host struct {
	Name  string
	NS    string
	Addr4 netip.Addr
	Addr6 netip.Addr
	// Dir holds the host's strongswan.conf, charon.log and VICI socket.
	Dir string

	lab    *Lab
	charon *Proc
}

const nsPrefix = "btl"

var labSeq atomic.Uint32

// Charon is the path of the charon binary.
const Charon = "/usr/lib/ipsec/charon"

// New builds a lab. On error everything created so far is removed.
func New(opts Options) (l *Lab, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root (network namespaces)")
	}
	if _, err := os.Stat(Charon); err != nil {
		return nil, fmt.Errorf("lab: charon not installed: %w (run scripts/setup.sh)", err)
	}
	if len(opts.Hosts) == 0 {
		opts.Hosts = []string{"a", "b"}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sweepStale(logf)

	l = &Lab{
		ID:   fmt.Sprintf("%s%dx%d", nsPrefix, os.Getpid(), labSeq.Add(1)),
		logf: logf,
	}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if opts.Dir == "" {
		if l.Dir, err = os.MkdirTemp("", "btnsd-lab-"); err != nil {
			return nil, err
		}
		l.ownDir = true
	} else {
		l.Dir = opts.Dir
	}
	l.Kernel = opts.Kernel
	if l.Kernel == KernelAuto {
		if HasKernelESP() {
			l.Kernel = KernelNetlink
		} else {
			l.Kernel = KernelLibIPsec
		}
	}

	l.swNS = l.ID + "-sw"
	if err := run("ip", "netns", "add", l.swNS); err != nil {
		return nil, err
	}
	if err := nsRun(l.swNS, "ip", "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := nsRun(l.swNS, "ip", "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for i, name := range opts.Hosts {
		h := &Host{
			Name:  name,
			NS:    l.ID + "-" + name,
			Addr4: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}),
			Addr6: netip.MustParseAddr("fd00:99::" + strconv.Itoa(i+1)),
			Dir:   filepath.Join(l.Dir, name),
			lab:   l,
		}
		l.hosts = append(l.hosts, h)
		if err := h.setup(i); err != nil {
			return nil, fmt.Errorf("lab: host %s: %w", name, err)
		}
	}
	logf("lab %s: hosts %s, %s, dir %s", l.ID, strings.Join(opts.Hosts, " "), l.Kernel, l.Dir)
	return l, nil
}

func (h *Host) setup(i int) error {
	l := h.lab
	if err := os.MkdirAll(filepath.Join(h.Dir, "run"), 0o755); err != nil {
		return err
	}
	if err := run("ip", "netns", "add", h.NS); err != nil {
		return err
	}
	port := fmt.Sprintf("p%d", i)
	steps := [][]string{
		{"ip", "link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.swNS},
		{"ip", "-n", l.swNS, "link", "set", port, "master", "br0", "up"},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"},
		{"ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"},
		{"ip", "-n", h.NS, "addr", "add", h.Addr4.String() + "/24", "dev", "eth0"},
		{"ip", "-n", h.NS, "addr", "add", h.Addr6.String() + "/64", "dev", "eth0", "nodad"},
		{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(h.Dir, "strongswan.conf"), []byte(h.strongswanConf()), 0o644)
}

// Hosts returns the hosts in address order.
func (l *Lab) Hosts() []*Host { return append([]*Host(nil), l.hosts...) }

// Host returns the host called name, or panics: a test naming a host it
// did not ask for is a bug in the test.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.hosts {
		if h.Name == name {
			return h
		}
	}
	panic("lab: no host " + name)
}

// Close stops every process and removes every namespace and file of the lab.
// It returns the first error but always tries everything.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	for _, h := range l.hosts {
		if err := delNS(h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if l.swNS != "" {
		if err := delNS(l.swNS); err != nil {
			errs = append(errs, err)
		}
	}
	if l.ownDir && l.Dir != "" {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func delNS(ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Kill anything still running inside (e.g. a child a test started
	// with plain exec), then delete.
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return run("ip", "netns", "del", ns)
}

// sweepStale removes namespaces of labs whose test process is gone.
func sweepStale(logf func(string, ...any)) {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		rest := name[len(nsPrefix):]
		x := strings.IndexByte(rest, 'x')
		if x <= 0 {
			continue
		}
		pid, err := strconv.Atoi(rest[:x])
		if err != nil {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		logf("lab: removing stale namespace %s (pid %d is gone)", name, pid)
		delNS(name)
	}
}

// HasKernelESP reports whether this kernel can install ESP SAs, by trying
// one in a scratch namespace.
func HasKernelESP() bool {
	ns := fmt.Sprintf("%s%dx0-probe", nsPrefix, os.Getpid())
	if run("ip", "netns", "add", ns) != nil {
		return false
	}
	defer delNS(ns)
	err := nsRun(ns, "ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2",
		"proto", "esp", "spi", "0x100", "mode", "transport",
		"aead", "rfc4106(gcm(aes))", "0x0102030405060708090a0b0c0d0e0f1011121314", "128")
	return err == nil
}

// Run runs a command in the host's namespace and returns its combined
// output; a non-zero exit is an error that includes the output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := h.Command(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s on %s: %w: %s", name, strings.Join(args, " "), h.Name, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Command returns a command that runs in the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+h.StrongswanConf())
	return cmd
}

// Swanctl runs swanctl against this host's charon.
func (h *Host) Swanctl(ctx context.Context, args ...string) (string, error) {
	return h.Run(ctx, "swanctl", append(args, "--uri", "unix://"+h.VICISocket())...)
}

// VICISocket is the path of the host's charon VICI socket.
func (h *Host) VICISocket() string { return filepath.Join(h.Dir, "run", "charon.vici") }

// StrongswanConf is the path of the host's strongswan.conf.
func (h *Host) StrongswanConf() string { return filepath.Join(h.Dir, "strongswan.conf") }

// CharonLog is the path of the host's charon log.
func (h *Host) CharonLog() string { return filepath.Join(h.Dir, "charon.log") }

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nsRun(ns, name string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// waitFor polls cond every 20 ms until it is true or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
