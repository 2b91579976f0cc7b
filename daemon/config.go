// Package daemon is btnsd: it keeps charon's BTNS connections in step with
// the policy directory and the key store, watches charon's SA events, and
// serves the API on a Unix socket.
//
// One goroutine (Run's loop) owns all state. It waits for a change of the
// policy directory or key store, an SA event, or a tick, and reacts by
// computing the connections charon should have (package btnsauth, pure) and
// sending charon only the difference (package vici). Readers (the API) see
// immutable snapshots published after each step.
package daemon

import (
	"path/filepath"
	"time"

	"github.com/btnsd/btnsd/fingerprints"
)

// Config is the daemon's configuration; the zero value of a field takes the
// default named in its comment.
type Config struct {
	// Root is btnsd's configuration directory: the key store
	// (pubkeys/fp), the host key (private/host.pem) and the policy
	// directory (policy.d). Default /etc/btnsd.
	Root string
	// PolicyDir holds the policy files (*.conf). Default <Root>/policy.d.
	PolicyDir string
	// HostKey is the host's private key; created (Ed25519) if missing.
	// Default <Root>/private/host.pem.
	HostKey string
	// VICISocket is charon's VICI socket. Default /var/run/charon.vici.
	VICISocket string
	// RunDir holds the API socket (btnsd.sock). Default /run/btnsd.
	RunDir string
	// StateDir holds state that survives restarts. Default /var/lib/btnsd.
	StateDir string
	// AllowUnsafeForeign lets btnsd run beside a connection it does not
	// own that would accept every key btnsd pins (see btnsauth.Audit).
	AllowUnsafeForeign bool
	// APIGroup is the group (name or numeric id) whose members may call
	// the API's state-changing endpoints besides root; empty for root only.
	APIGroup string
	// KernelSPD says whether the latch monitor watches the kernel's SPD and
	// SAD (where charon uses kernel-netlink): "auto" (default), "on" or
	// "off". See package latchmon, "Kernel SPD and SAD".
	KernelSPD string
	// Debounce is the quiet time after a change of the policy directory or
	// key store before it is applied. Default 20 ms.
	Debounce time.Duration
	// Logf receives the daemon's log lines. Default: discard.
	Logf func(format string, args ...any)
}

// Defaults.
const (
	DefaultRoot       = "/etc/btnsd"
	DefaultVICISocket = "/var/run/charon.vici"
	DefaultRunDir     = "/run/btnsd"
	DefaultStateDir   = "/var/lib/btnsd"
	// APISocketName is the API socket's name in RunDir.
	APISocketName = "btnsd.sock"
)

// withDefaults returns c with the defaults filled in.
func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.PolicyDir == "" {
		c.PolicyDir = filepath.Join(c.Root, "policy.d")
	}
	if c.HostKey == "" {
		c.HostKey = fingerprints.HostKeyPath(c.Root)
	}
	if c.VICISocket == "" {
		c.VICISocket = DefaultVICISocket
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Debounce <= 0 {
		c.Debounce = 20 * time.Millisecond
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// APISocket returns the path of the API socket.
func (c Config) APISocket() string {
	return filepath.Join(c.withDefaults().RunDir, APISocketName)
}
