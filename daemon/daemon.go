package daemon

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/latchmon"
	"github.com/btnsd/btnsd/vici"
)

// Version is btnsd's version, set at build time with -ldflags.
var Version = "dev"

// ErrUnsafeForeign is returned by Run when a connection btnsd does not own
// would accept the keys btnsd pins, and Config.AllowUnsafeForeign is off.
var ErrUnsafeForeign = errors.New("a connection btnsd does not own would accept every key btnsd trusts")

// Run runs btnsd until ctx is done. It returns nil on a clean stop, or the
// error that made it stop.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	// Bad settings are refused before anything is created.
	kspd, err := latchmon.ParseKernelSPDMode(cfg.KernelSPD)
	if err != nil {
		return err
	}
	signer, pub, err := fingerprints.LoadOrCreateHostKey(cfg.HostKey)
	if err != nil {
		return fmt.Errorf("host key %s: %w", cfg.HostKey, err)
	}
	store, err := fingerprints.Open(cfg.Root)
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	client := vici.New(cfg.VICISocket, vici.WithLogf(prefixed(cfg.Logf, "vici: ")))
	defer client.Close()
	d := newDaemon(cfg, client, store, signer, pub)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return err
	}
	mon, err := latchmon.New(latchmon.Config{
		StatePath: filepath.Join(cfg.StateDir, "latches.json"),
		Logf:      prefixed(cfg.Logf, "latch: "),
		SAs:       client,
		KernelSPD: kspd,
	})
	if err != nil {
		return err
	}
	d.mon = mon
	srv, err := d.listenAPI()
	if err != nil {
		return err
	}
	defer srv.Close()
	cfg.Logf("btnsd %s: host key %s (keyid %s), policies %s, keys %s, charon %s, API %s",
		Version, pub.Fingerprint, pub.KeyID, cfg.PolicyDir, store.Dir(), cfg.VICISocket, cfg.APISocket())
	return d.run(ctx)
}

func prefixed(logf func(string, ...any), prefix string) func(string, ...any) {
	return func(format string, args ...any) { logf(prefix+format, args...) }
}

// daemon is btnsd's state, owned by the run loop's goroutine.
type daemon struct {
	cfg    Config
	logf   func(string, ...any)
	ch     charon
	store  *fingerprints.Store
	hostFP fingerprints.Fingerprint
	hostID fingerprints.KeyID

	pol *policies
	pad *pad
	mon *latchmon.Monitor // nil in tests that do not latch

	connected bool
	resyncDue bool // a resync failed: try again
	// restartSeen: the event stream reconnected; the next resync sends
	// everything again.
	restartSeen bool
	audited     bool
	restarts    int
	started     time.Time
	lastSync    time.Time
	audit       []btnsauth.Finding
	errs        []string

	status atomic.Pointer[api.Status]
	apiGID int // the API group's id, -1 for none
}

func newDaemon(cfg Config, ch charon, store *fingerprints.Store, signer crypto.Signer, pub *fingerprints.PublicKey) *daemon {
	cfg = cfg.withDefaults()
	d := &daemon{
		cfg:     cfg,
		logf:    cfg.Logf,
		ch:      ch,
		store:   store,
		hostFP:  pub.Fingerprint,
		hostID:  pub.KeyID,
		pol:     newPolicies(cfg.PolicyDir),
		pad:     newPad(signer, pub, cfg.Logf),
		started: time.Now(),
		apiGID:  -1,
	}
	d.publish()
	return d
}

// run is the daemon's loop.
func (d *daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d.mon != nil {
		monDone := make(chan struct{})
		go func() {
			defer close(monDone)
			if err := d.mon.Run(ctx); err != nil && ctx.Err() == nil {
				d.logf("latch monitor stopped: %v", err)
			}
		}()
		// The monitor saves the latch database on its way out.
		defer func() { cancel(); <-monDone }()
	}

	policyCh, err := configs.Watch(ctx, []string{d.cfg.PolicyDir}, configs.WatchOptions{Debounce: d.cfg.Debounce, Logf: prefixed(d.logf, "policy watch: ")})
	if err != nil {
		return err
	}
	keyCh := make(chan struct{}, 1)
	go func() {
		err := d.store.Watch(ctx, fingerprints.WatchOptions{Debounce: d.cfg.Debounce}, func(c fingerprints.Changes, err error) {
			if err != nil {
				d.logf("key store: %v", err)
			}
			select {
			case keyCh <- struct{}{}:
			default:
			}
		})
		if err != nil {
			d.logf("key store watch stopped: %v", err)
		}
	}()
	events := d.ch.Watch(ctx)
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	// charon sends no event when connections are unloaded, and
	// "swanctl --load-conns" unloads every connection its files do not
	// name, btnsd's too: look for lost connections often (get-conns is
	// cheap) and load them again.
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()

	// The store's watcher reloads it before it reports a change; this
	// catches up with changes made between Open and the watch.
	if _, err := d.store.Reload(); err != nil {
		d.logf("key store: %v", err)
	}
	d.loadPolicies()
	for {
		select {
		case <-ctx.Done():
			d.logf("stopping")
			return nil
		case _, ok := <-policyCh:
			if !ok {
				return nil
			}
			if d.loadPolicies() {
				d.apply(ctx)
			}
		case <-keyCh:
			d.apply(ctx)
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if err := d.onEvent(ctx, ev); err != nil {
				return err
			}
		case <-check.C:
			switch {
			case d.resyncDue:
				if err := d.resync(ctx); err != nil {
					return err
				}
			case d.connected:
				d.checkConns(ctx)
			}
		case <-tick.C:
			if d.connected {
				if err := d.runAudit(ctx); err != nil {
					return err
				}
				d.enforceLimits(ctx)
				d.publish()
			}
		}
	}
}

// loadPolicies re-reads the policy directory and reports whether what
// runs changed.
func (d *daemon) loadPolicies() bool {
	changed, errs := d.pol.load(d.pad.hostPub)
	for _, err := range errs {
		d.logf("policy: %v (the last good version of the file stays in force)", err)
	}
	if changed {
		d.publish()
	}
	return changed
}

func (d *daemon) onEvent(ctx context.Context, ev vici.Event) error {
	if d.mon != nil {
		d.mon.HandleSAEvent(ev)
	}
	switch e := ev.(type) {
	case vici.Resync:
		d.logf("charon: resynchronising (%s)", e.Reason)
		if e.Reason == vici.ReasonReconnected {
			// The event stream lost charon and found it again: a new
			// charon (or the same one after a socket failure) that may
			// lack the host key and secret as well as connections.
			d.restartSeen = true
		}
		return d.resync(ctx)
	case vici.IKEUpDown:
		if e.Up && btnsauth.Owned(e.IKE.Name) {
			d.enforceLimits(ctx)
		}
	}
	return nil
}

// resync brings btnsd in step with a charon it (re)connected to. The
// command session may still hold the connection to the charon that went
// away: its first call fails and redials, so a failed resync is tried again
// once at once and then on every check tick until it succeeds.
func (d *daemon) resync(ctx context.Context) error {
	lost, err := d.pad.adopt(ctx, d.ch)
	if err != nil {
		lost, err = d.pad.adopt(ctx, d.ch)
	}
	if err != nil {
		if !d.resyncDue {
			d.logf("charon: get-conns: %v (retrying every 2 s)", err)
		}
		d.connected = false
		d.resyncDue = true
		d.publish()
		return nil
	}
	if d.resyncDue {
		d.logf("charon: reachable again")
		d.resyncDue = false
	}
	if d.restartSeen {
		lost = true
		d.restartSeen = false
	}
	d.connected = true
	if lost {
		d.restarts++
		d.logf("charon: it lost btnsd's connections (restarted?): loading everything again")
		d.pad.forget()
		if _, err := d.pad.adopt(ctx, d.ch); err != nil {
			d.logf("charon: get-conns: %v", err)
		}
	}
	if err := d.runAudit(ctx); err != nil {
		return err
	}
	d.apply(ctx)
	return nil
}

// checkConns loads again the connections charon lost without restarting.
func (d *daemon) checkConns(ctx context.Context) {
	lost, err := d.pad.adopt(ctx, d.ch)
	if err != nil {
		d.logf("charon: get-conns: %v", err)
		return
	}
	if lost {
		d.logf("charon: btnsd's connections were unloaded (by swanctl --load-conns, or charon restarted): loading them again")
		// If charon restarted, the event stream will say so soon; until
		// then the host key and secret must come back with the
		// connections (loading them again is harmless).
		d.pad.forgetCreds()
		d.apply(ctx)
	}
}

// runAudit checks the connections btnsd does not own. The first audit
// decides whether btnsd may run at all.
func (d *daemon) runAudit(ctx context.Context) error {
	conns, err := d.ch.ListConns(ctx)
	if err != nil {
		d.logf("audit: list-conns: %v", err)
		return nil
	}
	var ids []string
	for _, e := range d.store.List() {
		ids = append(ids, e.Key.KeyID.String())
		if !e.Identity.IsZero() {
			ids = append(ids, e.Identity.Value)
		}
	}
	findings := btnsauth.Audit(conns, ids)
	if !slices.Equal(findings, d.audit) {
		for _, f := range findings {
			d.logf("audit: %s", f)
		}
	}
	d.audit = findings
	unsafe := slices.ContainsFunc(findings, func(f btnsauth.Finding) bool { return f.Severity == btnsauth.Unsafe })
	first := !d.audited
	d.audited = true
	if unsafe && !d.cfg.AllowUnsafeForeign {
		if first {
			return fmt.Errorf("%w: %v; fix that connection, or start btnsd with --allow-unsafe-foreign", ErrUnsafeForeign, findings[slices.IndexFunc(findings, func(f btnsauth.Finding) bool { return f.Severity == btnsauth.Unsafe })])
		}
		d.logf("audit: WARNING: an unsafe foreign connection appeared while btnsd runs; see btnsctl audit")
	}
	return nil
}

// apply brings charon in step with the policies and keys.
func (d *daemon) apply(ctx context.Context) {
	defer d.publish()
	if !d.connected {
		return
	}
	var errs []error
	errs = append(errs, d.pad.desire(d.pol.current, d.store.List())...)
	res, serrs := d.pad.sync(ctx, d.ch)
	errs = append(errs, serrs...)
	d.errs = d.errs[:0]
	for _, err := range errs {
		d.logf("sync: %v", err)
		d.errs = append(d.errs, err.Error())
		if vici.Unavailable(err) {
			d.connected = false
		}
	}
	if len(res.Loaded)+len(res.Unloaded) > 0 {
		d.logf("sync: loaded %d connection(s) %v, unloaded %d %v, terminated %d SA(s)",
			len(res.Loaded), res.Loaded, len(res.Unloaded), res.Unloaded, res.Terminated)
	}
	d.lastSync = time.Now()
	if d.mon != nil {
		d.mon.SetConns(d.connInfos())
	}
	d.enforceLimits(ctx)
}

// enforceLimits terminates the IKE SAs over their policy's limits.
func (d *daemon) enforceLimits(ctx context.Context) {
	limited := false
	for _, c := range d.pad.want {
		if (c.limits != limits{}) {
			limited = true
			break
		}
	}
	if !limited {
		return
	}
	sas, err := d.ch.ListSAs(ctx, vici.ListSAsFilter{})
	if err != nil {
		d.logf("limits: list-sas: %v", err)
		return
	}
	for _, x := range overLimits(sas, d.pad.want) {
		if err := terminate(ctx, d.ch, x.sa.UniqueID); err != nil {
			d.logf("limits: terminating IKE SA #%d of %s: %v", x.sa.UniqueID, x.sa.Name, err)
			continue
		}
		d.logf("limits: terminated IKE SA #%d of %s (peer %s at %s): %s", x.sa.UniqueID, x.sa.Name, x.sa.RemoteID, x.sa.RemoteHost, x.reason)
	}
}

// publish makes a snapshot of the state for the API.
func (d *daemon) publish() {
	s := &api.Status{
		Version:   Version,
		Started:   d.started,
		HostKey:   api.KeyRef{Fingerprint: d.hostFP.String(), KeyID: d.hostID.String()},
		Charon:    api.Charon{Socket: d.cfg.VICISocket, Connected: d.connected, Restarts: d.restarts},
		LastSync:  d.lastSync,
		VICICalls: d.ch.Stats(),
		Errors:    slices.Clone(d.errs),
	}
	s.Policies = slices.Clone(d.pol.files)
	names := make([]string, 0, len(d.pad.want))
	for n := range d.pad.want {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := d.pad.want[n]
		dg, ok := d.pad.applied[n]
		s.Conns = append(s.Conns, api.Conn{Name: n, Policy: c.Policy, Peer: c.Peer, Anonymous: c.Anonymous,
			Loaded: ok && dg == c.digest, Error: d.pad.connErrors[n]})
	}
	for _, f := range d.audit {
		s.Audit = append(s.Audit, api.Finding{Conn: f.Conn, Round: f.Round, Severity: string(f.Severity), Reason: f.Reason})
	}
	for _, e := range d.store.List() {
		s.Keys.Total++
		if e.Trust == fingerprints.Trusted {
			s.Keys.Trusted++
		}
	}
	for _, p := range d.store.Problems() {
		s.Keys.Problems = append(s.Keys.Problems, p.String())
	}
	d.status.Store(s)
}
