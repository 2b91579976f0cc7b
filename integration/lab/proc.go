package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a background process running in a host's namespace. Its output
// goes to a log file in the host's directory.
type Proc struct {
	Name string
	Log  string

	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	err  error
}

// Start runs a long-lived command in the host's namespace, in its own
// process group, with stdout and stderr appended to <host dir>/<logName>.
// The lab stops it on Close if the test did not.
func (h *Host) Start(logName string, env []string, name string, args ...string) (*Proc, error) {
	logPath := filepath.Join(h.Dir, logName)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.Env = append(append(os.Environ(), "STRONGSWAN_CONF="+h.StrongswanConf()), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Name: h.Name + "/" + name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l := h.lab
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.procs = append(l.procs, p)
	}
	l.mu.Unlock()
	if closed {
		p.Stop()
		return nil, errors.New("lab: closed")
	}
	return p, nil
}

// Pid returns the process id (of the process the namespace exec became).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop sends SIGTERM to the process group, waits up to 5 s, then SIGKILL.
// It returns once the process has exited.
func (p *Proc) Stop() {
	p.once.Do(func() {
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.Signal(syscall.SIGKILL)
			<-p.done
		}
	})
}

// Kill sends SIGKILL to the process group and waits for it to exit, like a
// crash.
func (p *Proc) Kill() {
	p.once.Do(func() {
		p.Signal(syscall.SIGKILL)
		<-p.done
	})
}

// Tail returns the last n lines of the process log.
func (p *Proc) Tail(n int) string { return tail(p.Log, n) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartCharon starts the host's charon and waits until its VICI socket
// answers. charon's /run is a private tmpfs (its pid file path is compiled
// in), so several charons can run at once.
func (h *Host) StartCharon() error {
	if h.charon != nil && h.charon.Running() {
		return fmt.Errorf("lab: charon on %s already running", h.Name)
	}
	os.Remove(h.VICISocket())
	p, err := h.Start("charon.out", nil, "sh", "-c", "mount -t tmpfs tmpfs /run && exec "+Charon)
	if err != nil {
		return err
	}
	h.charon = p
	ok := waitFor(10*time.Second, func() bool {
		if !p.Running() {
			return true
		}
		c, err := net.Dial("unix", h.VICISocket())
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if !p.Running() {
		return fmt.Errorf("lab: charon on %s exited: %v\n%s\n%s", h.Name, p.err, p.Tail(20), tail(h.CharonLog(), 20))
	}
	if !ok {
		return fmt.Errorf("lab: charon on %s: VICI socket %s did not answer within 10s", h.Name, h.VICISocket())
	}
	return nil
}

// StopCharon stops charon gracefully (SIGTERM), as an administrator would.
func (h *Host) StopCharon() {
	if h.charon != nil {
		h.charon.Stop()
	}
}

// KillCharon kills charon with SIGKILL, like a crash: no IKE delete is
// sent to peers.
func (h *Host) KillCharon() {
	if h.charon != nil {
		h.charon.Kill()
	}
}

// CharonRunning reports whether the host's charon is running.
func (h *Host) CharonRunning() bool { return h.charon != nil && h.charon.Running() }

// TakeAddress makes h impersonate victim on the shared link, as an attacker
// on the LAN would: the victim's interface goes down, h gives up its own
// addresses for the victim's (so that everything h sends comes from them,
// IKE included), and every other host forgets its neighbour entries so that
// the next packet to that address reaches h.
func (h *Host) TakeAddress(ctx context.Context, victim *Host) error {
	if _, err := victim.Run(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		return err
	}
	for _, a := range []string{h.Addr4.String() + "/24", h.Addr6.String() + "/64"} {
		if _, err := h.Run(ctx, "ip", "addr", "del", a, "dev", "eth0"); err != nil {
			return err
		}
	}
	if _, err := h.Run(ctx, "ip", "addr", "add", victim.Addr4.String()+"/24", "dev", "eth0"); err != nil {
		return err
	}
	if _, err := h.Run(ctx, "ip", "addr", "add", victim.Addr6.String()+"/64", "dev", "eth0", "nodad"); err != nil {
		return err
	}
	for _, o := range h.lab.hosts {
		if o == h || o == victim {
			continue
		}
		if _, err := o.Run(ctx, "ip", "neigh", "flush", "dev", "eth0"); err != nil {
			return err
		}
	}
	return nil
}

// CopyCharonLog writes the host's charon log to w, for test failure output.
func (h *Host) CopyCharonLog(w io.Writer, lines int) {
	fmt.Fprintf(w, "--- charon log of %s (last %d lines)\n%s\n", h.Name, lines, tail(h.CharonLog(), lines))
}

func (h *Host) strongswanConf() string {
	kplugins, routes, extra := "kernel-netlink", "no", ""
	if h.lab.Kernel == KernelLibIPsec {
		kplugins, routes = "kernel-libipsec kernel-netlink", "yes"
		extra = `
    kernel-libipsec {
      allow_peer_ts = yes
    }
    socket-default {
      fwmark = 0x42
    }
    kernel-netlink {
      fwmark = !0x42
    }`
	}
	return fmt.Sprintf(`# generated by btnsd's integration lab for host %[1]s (%[2]s)
charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 pkcs8 pubkey x509 revocation constraints sshkey curve25519 sha1 sha2 hmac aes gcm kdf %[3]s socket-default vici updown counters
  install_routes = %[4]s
  install_virtual_ip = no
  # fail fast in the lab (default: 5 tries, 4 s, base 1.8)
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {
    vici {
      socket = unix://%[5]s
    }%[6]s
  }
  filelog {
    lab {
      path = %[7]s
      time_format = %%H:%%M:%%S
      ike_name = yes
      append = yes
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
      knl = 1
      chd = 2
    }
  }
}
swanctl {
  load = random nonce openssl pem pkcs1 pkcs8 pubkey x509 sshkey curve25519 sha1 sha2
}
pki {
  load = random nonce openssl pem pkcs1 pkcs8 pubkey x509 sshkey curve25519 sha1 sha2
}
`, h.Name, h.lab.Kernel, kplugins, routes, h.VICISocket(), extra, h.CharonLog())
}
