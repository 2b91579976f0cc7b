package latch

import (
	"encoding/json"
	"fmt"
	"time"
)

// persistVersion is the version of the Marshal format.
const persistVersion = 1

type persisted struct {
	Version     int
	NextID      LatchID
	NextLineage uint64
	// IKEs keep the lineages of anonymous peers across a restart of btnsd:
	// an IKE SA that still exists (same uniqueid, same SPIs) continues its
	// lineage; any other is a new peer.
	IKEs    []persistedIKE
	Latches []persistedLatch
}

type persistedIKE struct {
	IKE
	Peer Peer
}

type persistedLatch struct {
	ID           LatchID
	State        State
	Listener     bool `json:",omitempty"`
	Tuple        Tuple
	Cookie       uint64
	Origin       Origin
	Parent       LatchID `json:",omitempty"`
	Peer         Peer
	PeerID       string      `json:",omitempty"`
	Protection   *Protection `json:",omitempty"`
	Disposition  Disposition
	QoPIndet     bool `json:",omitempty"`
	Lost         bool `json:",omitempty"`
	PolicyBroken bool `json:",omitempty"`
	Reset        bool `json:",omitempty"`
	Created      time.Time
	Changed      time.Time
	Reason       string
}

// Marshal encodes the latch database (and the IKE lineages it depends on)
// as JSON, for Restore after a restart of btnsd. SAs, sockets and policies
// are not kept: the driver gives them again after the restart.
func (m *Machine) Marshal() ([]byte, error) {
	p := persisted{Version: persistVersion, NextID: m.nextID, NextLineage: m.nextLineage}
	for _, id := range sortedKeys(m.ikes) {
		r := m.ikes[id]
		if r.peer.Kind != AnonymousPeer {
			continue
		}
		p.IKEs = append(p.IKEs, persistedIKE{IKE: r.IKE, Peer: r.peer})
	}
	for _, id := range sortedKeys(m.latches) {
		r := m.latches[id]
		p.Latches = append(p.Latches, persistedLatch{
			ID: r.id, State: r.state, Listener: r.listener, Tuple: r.tuple, Cookie: r.cookie,
			Origin: r.origin, Parent: r.parent, Peer: r.peer, PeerID: r.peerID, Protection: r.prot,
			Disposition: r.disp, QoPIndet: r.qopIndet, Lost: r.lost, PolicyBroken: r.policyBroken,
			Reset: r.reset, Created: r.created, Changed: r.changed, Reason: r.reason,
		})
	}
	return json.Marshal(p)
}

// Restore returns a machine holding the latch database saved by Marshal.
// RFC 5660 2 requires a restarted key manager to restore its latches or to
// close them, never to keep them unchecked: until a Snapshot with SAs and a
// Snapshot with Flows (or one with both) have been stepped, Step accepts
// nothing else but PolicyChanged, and the API methods fail with
// ErrNeedSnapshot. The snapshots re-validate each restored latch: it stays
// as it was when its socket (same cookie) and a congruent SA exist; it
// breaks, with its disposition, when no congruent SA exists or a
// conflicting one does; it closes when its socket is gone. Each change
// raises an Alert.
func Restore(data []byte) (*Machine, error) {
	var p persisted
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("latch: restore: %w", err)
	}
	if p.Version != persistVersion {
		return nil, fmt.Errorf("latch: restore: unknown version %d", p.Version)
	}
	m := New()
	m.nextID, m.nextLineage = p.NextID, p.NextLineage
	for _, pi := range p.IKEs {
		if pi.ID == 0 || m.ikes[pi.ID] != nil {
			return nil, fmt.Errorf("latch: restore: bad IKE SA %d", pi.ID)
		}
		m.ikes[pi.ID] = &ikeRec{IKE: pi.IKE, peer: pi.Peer, children: make(map[uint64]*childRec)}
	}
	for _, pl := range p.Latches {
		valid := pl.ID != 0 && pl.ID <= p.NextID && m.latches[pl.ID] == nil &&
			(pl.Listener && pl.State == Listener || !pl.Listener && (pl.State == Established || pl.State == Broken))
		if !valid {
			return nil, fmt.Errorf("latch: restore: bad latch %d in state %v", pl.ID, pl.State)
		}
		r := &rec{
			id: pl.ID, state: pl.State, listener: pl.Listener, tuple: pl.Tuple.canon(), cookie: pl.Cookie,
			origin: pl.Origin, parent: pl.Parent, peer: pl.Peer, peerID: pl.PeerID, disp: pl.Disposition,
			qopIndet: pl.QoPIndet, lost: pl.Lost, policyBroken: pl.PolicyBroken, reset: pl.Reset,
			created: pl.Created, changed: pl.Changed, reason: pl.Reason, restored: true,
		}
		if pl.Protection != nil {
			r.prot = m.intern(*pl.Protection)
		}
		if r.listener {
			e := r.endpoint()
			if m.listeners[e] != nil {
				return nil, fmt.Errorf("latch: restore: two latches on %v", e)
			}
			m.listeners[e] = r
		} else {
			if r.prot == nil || r.peer.Kind == 0 || !r.tuple.Remote.IsValid() || m.flows[r.tuple] != nil {
				return nil, fmt.Errorf("latch: restore: bad connection latch %d on %v", r.id, r.tuple)
			}
			m.indexFlow(r)
		}
		m.latches[r.id] = r
	}
	m.needSAs, m.needFlows = len(m.latches) > 0, len(m.latches) > 0
	return m, nil
}
