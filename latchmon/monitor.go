package latchmon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/btnsd/btnsd/latchmon/xfrm"
	"github.com/btnsd/btnsd/vici"
)

// SALister is what the monitor needs of charon: list-sas. *vici.Client and
// *vicitest.Charon provide it.
type SALister interface {
	ListSAs(ctx context.Context, f vici.ListSAsFilter) ([]vici.IKESA, error)
}

// Config configures a Monitor.
type Config struct {
	// StatePath is where the latch database is saved (atomically) and
	// restored from at start; "" keeps it in memory only.
	StatePath string
	// Logf logs one line; it must be safe for concurrent use. Nil
	// discards.
	Logf func(format string, args ...any)
	// Sockets is the source of flows; nil means HostSockets.
	Sockets SocketSource
	// SAs lists charon's SAs at start and on every Resync. Required.
	SAs SALister
	// PollInterval is the shortest time between two socket dumps (new
	// flows are found only by dumping); default 200 ms. The monitor
	// stretches it to ten times the last dump's duration, so that dumping
	// a host with very many sockets takes at most about a tenth of a core.
	PollInterval time.Duration
	// PersistInterval is the shortest time between two saves of the LD;
	// default 100 ms, stretched likewise to ten times the last save's
	// duration.
	PersistInterval time.Duration
	// RestoreTimeout bounds how long restored latches wait for their
	// re-validation (RFC 5660 2: restore or close, never keep unchecked):
	// past it, they are judged against charon's SAs without the daemon's
	// connections (SetConns), or against no SA at all when charon cannot
	// be listed. Default 30 s.
	RestoreTimeout time.Duration
	// SubscriberBuffer is the number of alerts a subscriber may fall
	// behind before it is dropped; default 1024.
	SubscriberBuffer int
	// Now gives the time stamped on events; default time.Now.
	Now func() time.Time
	// KernelSPD says whether the kernel's SPD and SAD are watched and
	// judged (package doc, "Kernel SPD and SAD"); default auto.
	KernelSPD KernelSPDMode
	// Kernel is the source of the kernel's SPD and SAD; nil means
	// HostKernel.
	Kernel KernelSource
	// KernelGrace is how long a kernel object that is not charon's waits
	// before it breaks latches, for charon to announce the SA it may
	// belong to (charon installs its SAs and policies before its event);
	// default 500 ms.
	KernelGrace time.Duration
}

// saQueueSize bounds the SA events waiting for the monitor; beyond it
// HandleSAEvent drops them and a resynchronisation from list-sas follows.
const saQueueSize = 4096

// Monitor is the driver of the latch machine (see the package doc).
//
// Concurrency: every method is safe for concurrent use. The machine and
// the monitor's tables are guarded by one mutex; Run's goroutine does its
// I/O (socket dumps, list-sas, saving the LD) without holding it, and the
// API methods step the machine directly under it. Actions are carried out
// by whichever goroutine stepped: alerts are logged and published under the
// mutex, so that every subscriber sees them in the machine's order; sockets
// are destroyed after it is released.
type Monitor struct {
	logf            func(string, ...any)
	src             SocketSource
	sas             SALister
	statePath       string
	pollInterval    time.Duration
	persistInterval time.Duration
	restoreTimeout  time.Duration
	subBuf          int
	now             func() time.Time

	queue    chan saItem
	overflow atomic.Bool // the queue was full: resynchronise
	dirty    atomic.Bool // the LD changed since the last save
	wake     chan struct{}
	running  atomic.Bool

	mu sync.Mutex
	// Guarded by mu.
	mach       *latch.Machine
	needSnap   bool // restored latches await the first snapshot of SAs and flows
	conns      map[string]connEntry
	connsKnown bool
	learnedFP  map[string]string // btnsd connection -> fingerprint, from restored latches
	policies   map[polKey]latch.Policy
	ikeAuth    map[uint64]ikeMemo
	socks      map[uint64]*sockEntry // live sockets of the last dump, by cookie
	sockGen    uint64
	subs       map[*subscriber]struct{}
	kv         *kernelView // nil: kernel SPD and SAD not watched

	ksrc        KernelSource
	kernelGrace time.Duration
}

type saItem struct {
	ev vici.Event
	at time.Time
}

// New returns a monitor holding the LD saved at cfg.StatePath, if any. A
// file that cannot be restored is logged and kept aside, and the monitor
// starts empty: New fails only on a bad Config.
func New(cfg Config) (*Monitor, error) {
	if cfg.SAs == nil {
		return nil, errors.New("latchmon: Config.SAs is required")
	}
	m := &Monitor{
		logf:            cfg.Logf,
		src:             cfg.Sockets,
		sas:             cfg.SAs,
		statePath:       cfg.StatePath,
		pollInterval:    cfg.PollInterval,
		persistInterval: cfg.PersistInterval,
		restoreTimeout:  cfg.RestoreTimeout,
		subBuf:          cfg.SubscriberBuffer,
		now:             cfg.Now,
		queue:           make(chan saItem, saQueueSize),
		wake:            make(chan struct{}, 1),
		conns:           make(map[string]connEntry),
		learnedFP:       make(map[string]string),
		policies:        make(map[polKey]latch.Policy),
		ikeAuth:         make(map[uint64]ikeMemo),
		socks:           make(map[uint64]*sockEntry),
		subs:            make(map[*subscriber]struct{}),
	}
	if m.logf == nil {
		m.logf = func(string, ...any) {}
	}
	if m.src == nil {
		m.src = HostSockets
	}
	if m.pollInterval <= 0 {
		m.pollInterval = 200 * time.Millisecond
	}
	if m.persistInterval <= 0 {
		m.persistInterval = 100 * time.Millisecond
	}
	if m.restoreTimeout <= 0 {
		m.restoreTimeout = 30 * time.Second
	}
	if m.subBuf <= 0 {
		m.subBuf = 1024
	}
	if m.now == nil {
		m.now = time.Now
	}
	if cfg.KernelSPD != KernelSPDOff {
		m.kv = newKernelView(cfg.KernelSPD)
		m.ksrc = cfg.Kernel
		if m.ksrc == nil {
			m.ksrc = HostKernel
		}
	}
	m.kernelGrace = cfg.KernelGrace
	if m.kernelGrace <= 0 {
		m.kernelGrace = 500 * time.Millisecond
	}
	mach, restored := load(m.statePath, m.now(), m.logf)
	m.mach = mach
	if restored && mach.Len() > 0 {
		m.needSnap = true
		m.learnedFP = learnFromLatches(mach.Latches())
		m.logf("latch database %s: %d latch(es) restored; they are checked against charon's SAs and the sockets before anything else", m.statePath, mach.Len())
	}
	return m, nil
}

func (m *Monitor) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// locked runs fn with m.mu held, then carries out the machine's actions;
// cause is the time of the event that fn steps (for the reset latency).
func (m *Monitor) locked(cause time.Time, fn func()) {
	m.mu.Lock()
	fn()
	jobs := m.drainLocked(cause)
	m.mu.Unlock()
	m.doResets(jobs)
}

// drainLocked takes the machine's actions: alerts are logged and
// published, resets returned to be done once m.mu is released, and
// Persist marks the LD for saving (Run coalesces the saves).
func (m *Monitor) drainLocked(cause time.Time) []resetJob {
	var jobs []resetJob
	for _, a := range m.mach.Ready() {
		switch a := a.(type) {
		case latch.Alert:
			m.publishLocked(a)
			if a.From == latch.None && m.kv != nil {
				m.kv.dirty = true // a new latch: judge the kernel's objects for it (spd.go)
			}
		case latch.Reset:
			jobs = append(jobs, resetJob{r: a, s: m.socketFor(a), cause: cause})
		case latch.Persist:
			if !m.dirty.Swap(true) {
				m.signal()
			}
		}
	}
	return jobs
}

// stepLocked steps one event and logs what the machine refuses. It
// reports whether the refusal means that the SA side must be resynchronised
// (events were lost).
func (m *Monitor) stepLocked(ev latch.Event) (resync bool) {
	err := m.mach.Step(ev)
	switch {
	case err == nil:
		return false
	case errors.Is(err, latch.ErrUnknownIKE), errors.Is(err, latch.ErrNeedSnapshot):
		m.logf("%T: %v: resynchronising from list-sas", ev, err)
		return true
	}
	m.logf("%T: %v", ev, err)
	return false
}

// HandleSAEvent hands one event of charon's stream (vici.Watch) to the
// monitor. It never blocks: the daemon's loop calls it for every event,
// Resync included. When the queue is full the event is dropped and the
// monitor resynchronises from list-sas, as after a gap in the stream.
func (m *Monitor) HandleSAEvent(ev vici.Event) {
	if _, ok := ev.(vici.Log); ok || ev == nil {
		return
	}
	select {
	case m.queue <- saItem{ev: ev, at: m.now()}:
	default:
		if !m.overflow.Swap(true) {
			m.signal()
		}
	}
}

// SetConns tells the monitor the connections btnsd owns, after every sync
// of the daemon with charon: their children's latching policies (a
// PolicyChanged for each one that changed; a child or connection that left
// the set is Removed, which breaks its latches, RFC 5660 2.2), and how to
// name the peers of their IKE SAs. SAs are taken from charon only after the
// first call. Connections btnsd does not own are never latched
// automatically; their SAs are still followed, since they can conflict
// with a latch.
func (m *Monitor) SetConns(conns []ConnInfo) {
	conns = slices.DeleteFunc(slices.Clone(conns), func(c ConnInfo) bool {
		if !btnsauth.Owned(c.Name) {
			m.logf("SetConns: %s is not a connection of btnsd's: ignored", c.Name)
			return true
		}
		return false
	})
	at := m.now()
	m.locked(at, func() {
		for _, c := range conns {
			e := connEntry{anonymous: c.Anonymous}
			if c.PeerFP != "" && !c.Anonymous {
				e.fp = canonFP(c.PeerFP)
			}
			m.conns[c.Name] = e
		}
		want := policies(conns)
		keys := make([]polKey, 0, len(want)+len(m.policies))
		for k := range want {
			keys = append(keys, k)
		}
		for k := range m.policies {
			if _, ok := want[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b polKey) int {
			if a.conn != b.conn {
				return cmp.Compare(a.conn, b.conn)
			}
			return cmp.Compare(a.child, b.child)
		})
		for _, k := range keys {
			p, ok := want[k]
			old, had := m.policies[k]
			switch {
			case !ok && (!had || old.Removed):
				continue
			case !ok:
				p = latch.Policy{Conn: k.conn, Child: k.child, Removed: true}
			case had && !old.Removed && old.Latch == p.Latch && old.OnBreak == p.OnBreak:
				continue
			}
			m.policies[k] = p
			m.stepLocked(latch.PolicyChanged{At: at, Policy: p})
		}
		m.connsKnown = true
	})
	m.signal()
}

// CreateConnection is RFC 5660 2.3 CREATE_CONNECTION_LATCH for the flow t.
// cookie is its socket's cookie; 0 looks the socket up in a fresh dump
// (when there is none yet, the latch takes the first socket seen on t).
// Errors are the machine's: latch.ErrExists, ErrConflict, ErrNoSA,
// ErrNeedSnapshot, ErrInvalid.
func (m *Monitor) CreateConnection(ctx context.Context, t latch.Tuple, cookie uint64, w latch.Want) (latch.LatchID, error) {
	if cookie == 0 {
		socks, err := m.src.Dump(ctx)
		if err != nil {
			return 0, fmt.Errorf("latchmon: looking for the socket of %v: %w", t, err)
		}
		cookie = findCookie(socks, t)
	}
	at := m.now()
	var id latch.LatchID
	var err error
	m.locked(at, func() { id, err = m.mach.CreateConnection(at, t, cookie, w) })
	return id, err
}

// CreateListener is RFC 5660 2.3 CREATE_LISTENER_LATCH for the listening
// endpoint e; cookie as for CreateConnection.
func (m *Monitor) CreateListener(ctx context.Context, e latch.Endpoint, cookie uint64, w latch.Want) (latch.LatchID, error) {
	if cookie == 0 {
		socks, err := m.src.Dump(ctx)
		if err != nil {
			return 0, fmt.Errorf("latchmon: looking for the socket of %v: %w", e, err)
		}
		cookie = findCookie(socks, e.Tuple())
	}
	at := m.now()
	var id latch.LatchID
	var err error
	m.locked(at, func() { id, err = m.mach.CreateListener(at, e, cookie, w) })
	return id, err
}

// Release is RFC 5660 2.3 RELEASE_LATCH: the latch goes to CLOSED and
// leaves the LD; its socket is left alone.
func (m *Monitor) Release(id latch.LatchID) error {
	at := m.now()
	var err error
	m.locked(at, func() { err = m.mach.Release(at, id) })
	return err
}

// AdminClose closes a latch administratively (RFC 5660 2.2) and resets its
// socket (2.3: the ULP acts as though the connection had been reset).
func (m *Monitor) AdminClose(id latch.LatchID, reason string) error {
	at := m.now()
	var err error
	m.locked(at, func() { err = m.mach.AdminClose(at, id, reason) })
	return err
}

// Find is RFC 5660 2.3 FIND_LATCH.
func (m *Monitor) Find(t latch.Tuple) (latch.LatchID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mach.Find(t)
}

// Inquire is RFC 5660 2.3 INQUIRE_LATCH.
func (m *Monitor) Inquire(id latch.LatchID) (latch.LatchInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mach.Inquire(id)
}

// Latches returns every latch of the LD, by ID.
func (m *Monitor) Latches() []latch.LatchInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mach.Latches()
}

// Run drives the machine until ctx is done: it watches and dumps sockets,
// takes the SA events HandleSAEvent queued, resynchronises from list-sas,
// and saves the LD. It returns nil when ctx ends (after a last save), or an
// error when sockets cannot be watched at all. Run may be called once at a
// time.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("latchmon: Run is already running")
	}
	defer m.running.Store(false)
	// Watch first, so that no close is missed between the dump and the
	// watch (sockets package doc).
	events, err := m.src.Watch(ctx)
	if err != nil {
		return fmt.Errorf("latchmon: watching sockets: %w", err)
	}
	l := &loop{m: m, ctx: ctx, events: events, resyncDue: true, pollEvery: m.pollInterval}
	m.mu.Lock()
	if m.needSnap {
		l.restoreBy = time.Now().Add(m.restoreTimeout)
	}
	m.mu.Unlock()
	l.dump()
	l.kernelStart()
	return l.run()
}

// loop is the state of Run's goroutine.
type loop struct {
	m      *Monitor
	ctx    context.Context
	events <-chan sockets.Event

	pollEvery time.Duration
	// resyncDue: list-sas is needed (at start, after a Resync or lost
	// events); not before retryAt.
	resyncDue bool
	retryAt   time.Time
	// restoreBy: when restored latches stop waiting for the daemon's
	// connections or for charon (zero when none wait).
	restoreBy  time.Time
	warnedLate bool
	rewatchAt  time.Time
	dumpErr    string // the last dump's failure, logged once

	saveCost time.Duration
	saved    time.Time

	// The kernel's SPD and SAD (spd.go).
	kevents    <-chan xfrm.Event
	kRewatchAt time.Time
	kRelistAt  time.Time
	kOff       bool // auto, and XFRM cannot be watched
}

func (l *loop) run() error {
	m := l.m
	poll := time.NewTimer(l.pollEvery)
	defer poll.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	for {
		l.housekeeping()
		if next, ok := l.nextDeadline(); ok {
			deadline.Reset(max(time.Until(next), 0))
		} else {
			deadline.Reset(time.Hour)
		}
		select {
		case <-l.ctx.Done():
			if m.dirty.Load() {
				l.save()
			}
			return nil
		case ev, ok := <-l.events:
			if !ok {
				l.events = nil
				l.rewatchAt = time.Now().Add(time.Second)
				m.logf("socket watch ended: watching again in 1s")
				continue
			}
			l.sockEvent(ev)
		case ev, ok := <-l.kevents:
			if !ok {
				l.kevents = nil
				l.kRewatchAt = time.Now().Add(time.Second)
				m.logf("kernel SPD/SAD watch ended: watching again in 1s")
				continue
			}
			l.kernelEvent(ev)
		case <-poll.C:
			l.dump()
			poll.Reset(l.pollEvery)
		case it := <-m.queue:
			l.saEvent(it)
		case <-m.wake:
		case <-deadline.C:
		}
	}
}

// housekeeping does what is due: resynchronise the SAs, watch sockets
// again, save the LD.
func (l *loop) housekeeping() {
	m := l.m
	now := time.Now()
	if m.overflow.Swap(false) {
		m.logf("SA events came faster than the monitor took them: resynchronising from list-sas")
		l.resyncDue = true
		l.retryAt = time.Time{}
	}
	// Restored latches past their wait do not wait for a retry either.
	late := !l.restoreBy.IsZero() && !now.Before(l.restoreBy)
	if l.resyncDue && (!now.Before(l.retryAt) || late) {
		l.resync()
	}
	if l.events == nil && !now.Before(l.rewatchAt) {
		ev, err := m.src.Watch(l.ctx)
		if err != nil {
			m.logf("watching sockets: %v (retrying in 5s)", err)
			l.rewatchAt = now.Add(5 * time.Second)
		} else {
			l.events = ev
			l.dump() // closes between the two watches
		}
	}
	if m.dirty.Load() && !now.Before(l.saved.Add(l.persistEvery())) {
		l.save()
	}
	l.kernelHousekeeping()
}

func (l *loop) persistEvery() time.Duration { return max(l.m.persistInterval, 10*l.saveCost) }

// nextDeadline returns when housekeeping has something to do next. A
// resynchronisation that is due and was not done waits for SetConns, which
// wakes the loop.
func (l *loop) nextDeadline() (time.Time, bool) {
	var next time.Time
	now := time.Now()
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if l.resyncDue {
		if l.retryAt.After(now) {
			consider(l.retryAt)
		}
		consider(l.restoreBy)
	}
	if l.events == nil {
		consider(l.rewatchAt)
	}
	if l.m.dirty.Load() {
		consider(l.saved.Add(l.persistEvery()))
	}
	consider(l.kernelDeadline())
	return next, !next.IsZero()
}
