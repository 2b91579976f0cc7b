package latchmon

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/latchmon/sockets"
	"github.com/btnsd/btnsd/vici"
)

// listTimeout bounds one list-sas.
const listTimeout = time.Minute

// dump takes a socket dump into the table and steps the machine with what
// changed. It runs on Run's goroutine, between the watch's notifications:
// those that arrive while it runs wait in the channel and are applied
// after it, so a dump that still lists a socket just closed cannot bring it
// back (sockets package doc).
func (l *loop) dump() {
	m := l.m
	start := time.Now()
	socks, err := m.src.Dump(l.ctx)
	l.pollEvery = max(m.pollInterval, 10*time.Since(start))
	if err != nil {
		// Logged once per kind of failure, not at every poll.
		if l.ctx.Err() == nil && err.Error() != l.dumpErr {
			m.logf("socket dump: %v (new flows are not seen until a dump succeeds)", err)
			l.dumpErr = err.Error()
		}
		return
	}
	if l.dumpErr != "" {
		m.logf("socket dump: works again")
		l.dumpErr = ""
	}
	at := m.now()
	resync := false
	m.locked(at, func() {
		seen, gone := m.applyDump(socks)
		if m.needSnap {
			return // the first SA snapshot takes the whole table
		}
		for _, f := range gone {
			resync = m.stepLocked(latch.FlowGone{At: at, Flow: f}) || resync
		}
		for _, f := range seen {
			resync = m.stepLocked(latch.FlowSeen{At: at, Flow: f}) || resync
		}
	})
	if resync {
		l.resyncDue = true
	}
}

// sockEvent applies one notification of the socket watch.
func (l *loop) sockEvent(ev sockets.Event) {
	m := l.m
	switch ev.Kind {
	case sockets.Closed:
		at := m.now()
		m.locked(at, func() {
			f, ok := m.closed(ev.Socket.Cookie)
			if ok && !m.needSnap {
				m.stepLocked(latch.FlowGone{At: at, Flow: f})
			}
		})
	case sockets.Overflow:
		m.logf("socket watch lost notifications: dumping again")
		l.dump()
	}
}

// saEvent applies one queued SA event.
func (l *loop) saEvent(it saItem) {
	m := l.m
	switch e := it.ev.(type) {
	case vici.Resync:
		l.resyncDue = true
		l.retryAt = time.Time{}
		return
	case vici.IKEUpdate:
		if !l.resyncDue {
			l.refreshIKE(e, it.at)
		}
		return
	}
	if l.resyncDue {
		if m.kv != nil {
			m.mu.Lock()
			m.kv.noteEvent(it.ev, time.Now())
			m.mu.Unlock()
		}
		return // older than the listing to come, which shows its effect
	}
	resync := false
	m.locked(it.at, func() {
		if m.kv != nil {
			// charon's new SA may own kernel objects taken for foreign
			// until now: remove those first, so that the SA is never
			// judged against them.
			m.kv.noteEvent(it.ev, time.Now())
			for _, ev := range m.kernelStepsLocked(it.at, true) {
				resync = m.stepLocked(ev) || resync
			}
		}
		for _, ev := range m.saEvents(it.ev, it.at) {
			resync = m.stepLocked(ev) || resync
		}
	})
	if resync {
		l.resyncDue = true
	}
}

// refreshIKE lists an IKE SA whose addresses changed (MOBIKE, NAT-T port
// float) and steps its child SAs again: charon moves the traffic selectors
// of transport mode SAs to the new addresses without a child event. Child
// SAs that did not change are no-ops for the machine.
func (l *loop) refreshIKE(e vici.IKEUpdate, at time.Time) {
	m := l.m
	if e.IKE.UniqueID == 0 || e.IKE.State != "ESTABLISHED" {
		return // IKE_SA_INIT: nothing installed yet
	}
	ctx, cancel := context.WithTimeout(l.ctx, listTimeout)
	sas, err := m.sas.ListSAs(ctx, vici.ListSAsFilter{IKEID: e.IKE.UniqueID})
	cancel()
	if err != nil {
		m.logf("list-sas of IKE SA %d after an address change: %v", e.IKE.UniqueID, err)
		return
	}
	resync := false
	m.locked(at, func() {
		for i := range sas {
			sa := &sas[i]
			if sa.UniqueID != e.IKE.UniqueID || !liveIKE(sa.State) {
				continue
			}
			resync = m.stepLocked(latch.IKEUp{At: at, IKE: m.ike(sa)}) || resync
			for j := range sa.Children {
				if c := &sa.Children[j]; liveChild(c.State) {
					resync = m.stepLocked(latch.ChildUp{At: at, Child: child(sa, c)}) || resync
				}
			}
		}
	})
	if resync {
		l.resyncDue = true
	}
}

// resync lists charon's SAs and steps them as a Snapshot (vici doc: after
// every (re)connection and possible loss). It waits for the daemon's
// connections (SetConns), which name the peers, except for restored latches
// past RestoreTimeout. The first snapshot after a restore also carries the
// socket table, so that each restored latch is judged once, on both (RFC
// 5660 2: restored or closed, with its disposition).
func (l *loop) resync() {
	m := l.m
	m.mu.Lock()
	known, needSnap := m.connsKnown, m.needSnap
	m.mu.Unlock()
	late := needSnap && !l.restoreBy.IsZero() && !time.Now().Before(l.restoreBy)
	if !known && !late {
		return
	}
	if !known && !l.warnedLate {
		l.warnedLate = true
		m.logf("restored latches waited %v for btnsd's connections: judging them with peers named from connection names", m.restoreTimeout)
	}
	// Every event queued so far happened before the listing below, which
	// shows its effect; events queued from now on are applied after it.
	for drained := false; !drained; {
		select {
		case <-m.queue:
		default:
			drained = true
		}
	}
	ctx, cancel := context.WithTimeout(l.ctx, listTimeout)
	listStart := time.Now()
	sas, err := m.sas.ListSAs(ctx, vici.ListSAsFilter{})
	cancel()
	if err != nil {
		if l.ctx.Err() != nil {
			return
		}
		l.retryAt = time.Now().Add(2 * time.Second)
		if !late {
			m.logf("list-sas: %v (retrying in 2s)", err)
			return
		}
		// charon cannot be listed and restored latches cannot wait
		// forever: without charon their flows have no SA (DESIGN.md:
		// a charon restart loses every SA).
		m.logf("list-sas: %v: restored latches are judged against no SA (retrying the listing in 2s)", err)
		sas = nil
	} else {
		l.resyncDue = false
	}
	at := m.now()
	m.locked(at, func() {
		ikes, children := m.snapshotSAs(sas)
		if m.kv != nil {
			if err == nil {
				m.kv.noteListing(sas, listStart)
			}
			// Synthetic SAs for kernel objects that are now charon's go;
			// the others are kept by listing them (spd.go).
			for _, ev := range m.kernelStepsLocked(at, true) {
				if !m.needSnap {
					m.stepLocked(ev)
				}
			}
			kikes, kchildren := m.kernelSnapshotLocked()
			ikes, children = append(ikes, kikes...), append(children, kchildren...)
		}
		snap := latch.Snapshot{At: at, SAs: true, IKEs: ikes, Children: children}
		if m.needSnap {
			snap.Flows, snap.Sockets = true, m.tableFlows()
		}
		if err := m.mach.Step(snap); err != nil {
			m.logf("SA snapshot: %v", err)
		}
		m.needSnap = false
	})
	l.restoreBy = time.Time{}
}

// save writes the LD to the state file (Persist, coalesced).
func (l *loop) save() {
	m := l.m
	start := time.Now()
	l.saved = start
	m.mu.Lock()
	m.dirty.Store(false)
	if m.statePath == "" {
		m.mu.Unlock()
		return
	}
	data, err := m.mach.Marshal()
	m.mu.Unlock()
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(m.statePath), 0o700); err == nil {
			err = writeAtomic(m.statePath, data)
		}
	}
	l.saveCost = time.Since(start)
	if err != nil {
		m.logf("saving the latch database to %s: %v", m.statePath, err)
		l.saveCost = max(l.saveCost, time.Second/10) // retry in a second at the earliest
		m.dirty.Store(true)
	}
}
