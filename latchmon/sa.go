package latchmon

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/vici"
)

// ConnInfo describes one charon connection btnsd owns, as the daemon's last
// sync made it (btnsauth.Conn plus the latching settings of its children).
type ConnInfo struct {
	// Name is the charon connection name (btnsauth.Prefix...).
	Name string
	// Policy is the policy connection it comes from.
	Policy string
	// PeerFP is the fingerprint of the key the connection pins (64 hex
	// digits or SHA256:<base64>); empty for the anonymous connection and
	// for connections without the BTNS flag.
	PeerFP string
	// Anonymous marks the public-PSK connection of anonymous peers.
	Anonymous bool
	// Children are the connection's child configs.
	Children []ChildInfo
}

// ChildInfo is the latching policy of one child config.
type ChildInfo struct {
	Name string
	// Latch asks for automatic latching of the flows the child's SAs
	// cover (configs.ChildPolicy.Latch).
	Latch bool
	// OnBreak is "reset", "notify", or "" for the default (reset for TCP
	// and SCTP, notify otherwise; RFC 5660 5.5).
	OnBreak string
}

// connEntry is what the monitor keeps of a connection to derive the peers
// of its IKE SAs. Entries stay after the connection leaves the set: its SAs
// may outlive it for a while.
type connEntry struct {
	anonymous bool
	fp        string // "SHA256:..." of a trusted-key connection
}

// identityPrefix names, in latch.Auth.Fingerprint, a peer identified by the
// IKE identity it proved rather than by a key btnsd trusts; it keeps such
// names apart from fingerprints ("SHA256:...").
const identityPrefix = "id:"

// canonFP returns the SHA256:<base64> form of a fingerprint given in any
// form fingerprints.ParseFingerprint takes, or s itself.
func canonFP(s string) string {
	if f, err := fingerprints.ParseFingerprint(s); err == nil {
		return f.String()
	}
	return s
}

// authFor derives the peer of an IKE SA from its connection (DESIGN.md,
// "Peer identity"):
//
//   - a btnsd connection that pins a trusted key (btns.<policy>.<fp16>): a
//     key peer, its fingerprint;
//   - btnsd's anonymous connection (btns.<policy>.anon): an anonymous peer,
//     whose identity is its IKE SA lineage; its remote id proves nothing;
//   - any other connection, btnsd's own without the BTNS flag or one btnsd
//     does not own: the IKE identity the connection authenticated
//     ("id:<remote id>"), or an anonymous peer when there is none (%any).
//
// A btnsd connection the monitor has not been told of (SetConns) is named
// by the fingerprint a restored latch recorded for it when there is one,
// then as in the last case.
func (m *Monitor) authFor(ike *vici.IKESA) latch.Auth {
	name := ike.Name
	if c, ok := m.conns[name]; ok {
		switch {
		case c.anonymous:
			return latch.Auth{Kind: latch.AnonymousPeer}
		case c.fp != "":
			return latch.Auth{Kind: latch.KeyPeer, Fingerprint: c.fp}
		}
		return identityAuth(ike.RemoteID)
	}
	if btnsauth.Owned(name) {
		if strings.HasSuffix(name, ".anon") {
			return latch.Auth{Kind: latch.AnonymousPeer}
		}
		if fp, ok := m.learnedFP[name]; ok {
			return latch.Auth{Kind: latch.KeyPeer, Fingerprint: fp}
		}
	}
	return identityAuth(ike.RemoteID)
}

func identityAuth(remoteID string) latch.Auth {
	if remoteID == "" || remoteID == "%any" || remoteID == "%any6" {
		return latch.Auth{Kind: latch.AnonymousPeer}
	}
	return latch.Auth{Kind: latch.KeyPeer, Fingerprint: identityPrefix + remoteID}
}

// learnFromLatches records, for the btnsd connections that restored
// latches name, the fingerprint of their key peer, when it matches the 16
// hex digits the connection's name carries (btnsauth.ConnName).
func learnFromLatches(infos []latch.LatchInfo) map[string]string {
	out := make(map[string]string)
	for _, li := range infos {
		conn := li.Protection.Conn
		if li.Peer.Kind != latch.KeyPeer || !btnsauth.Owned(conn) {
			continue
		}
		f, err := fingerprints.ParseFingerprint(li.Peer.Fingerprint)
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(conn, '.'); i >= 0 && len(conn)-i-1 == 16 && f.Hex()[:16] == conn[i+1:] {
			out[conn] = f.String()
		}
	}
	return out
}

// ikeMemo fixes the Auth of an IKE SA for its whole life, so that a change
// of what the monitor knows of connections (SetConns) never makes the
// machine see a known IKE SA with another peer, which it would take for a
// new IKE SA replacing the old one.
type ikeMemo struct {
	ispi, rspi uint64
	auth       latch.Auth
}

func parseSPI(s string) uint64 {
	n, _ := strconv.ParseUint(s, 16, 64)
	return n
}

// ike translates an IKE SA, remembering its Auth.
func (m *Monitor) ike(sa *vici.IKESA) latch.IKE {
	ispi, rspi := parseSPI(sa.InitiatorSPI), parseSPI(sa.ResponderSPI)
	memo, ok := m.ikeAuth[sa.UniqueID]
	if !ok || memo.ispi != ispi || memo.rspi != rspi {
		memo = ikeMemo{ispi: ispi, rspi: rspi, auth: m.authFor(sa)}
		m.ikeAuth[sa.UniqueID] = memo
	}
	return latch.IKE{ID: sa.UniqueID, InitiatorSPI: ispi, ResponderSPI: rspi, Auth: memo.auth, RemoteID: sa.RemoteID}
}

// child translates a child SA of the IKE SA ike. The DH group of a child
// SA created with its IKE SA is empty in charon's listings (it had no key
// exchange of its own); it is the IKE SA's, so that the child's first PFS
// rekey does not look like a change of protection (latch.Protection).
func child(ike *vici.IKESA, c *vici.ChildSA) latch.Child {
	dh := c.DHGroup
	if dh == "" {
		dh = ike.DHGroup
	}
	return latch.Child{
		IKEID: ike.UniqueID,
		ID:    c.UniqueID,
		Protection: latch.Protection{
			Conn: ike.Name, Child: c.Name,
			Protocol: c.Protocol, Mode: c.Mode, Encap: c.Encap,
			Encr: c.EncrAlg, EncrKeySize: c.EncrKeySize,
			Integ: c.IntegAlg, IntegKeySize: c.IntegKeySize,
			DHGroup: dh,
			LocalID: ike.LocalID,
		},
		LocalTS:  selectors(c.LocalTS),
		RemoteTS: selectors(c.RemoteTS),
	}
}

// selectors translates charon's traffic selectors. An address range that
// is no CIDR prefix becomes the prefixes that make it up; the bare bracket
// form (any address) becomes 0.0.0.0/0 and ::/0; "dynamic", which no
// installed SA has, is dropped.
func selectors(tss []vici.TrafficSelector) []latch.Selector {
	out := make([]latch.Selector, 0, len(tss))
	for _, ts := range tss {
		sel := latch.Selector{Proto: ts.Proto, FromPort: ts.FromPort, ToPort: ts.ToPort}
		switch {
		case ts.Dynamic:
		case ts.Prefix.IsValid():
			sel.Prefix = ts.Prefix
			out = append(out, sel)
		case ts.First.IsValid() && ts.Last.IsValid():
			for _, p := range rangePrefixes(ts.First, ts.Last) {
				sel.Prefix = p
				out = append(out, sel)
			}
		default:
			for _, p := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
				sel.Prefix = p
				out = append(out, sel)
			}
		}
	}
	return out
}

// rangePrefixes returns the fewest prefixes that cover first..last exactly.
func rangePrefixes(first, last netip.Addr) []netip.Prefix {
	if first.BitLen() != last.BitLen() || last.Less(first) {
		return nil
	}
	var out []netip.Prefix
	for {
		bits := first.BitLen()
		// Grow the prefix at first while it stays aligned and within last.
		for bits > 0 {
			p := netip.PrefixFrom(first, bits-1).Masked()
			if p.Addr() != first || lastOf(p).Compare(last) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(first, bits)
		out = append(out, p)
		end := lastOf(p)
		if end.Compare(last) >= 0 {
			return out
		}
		first = end.Next()
	}
}

// lastOf returns the last address of the masked prefix p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Which SAs of a listing are live. A listing shows SAs in every state; the
// snapshot takes those the event stream reports as up: not half-open IKE
// SAs, not IKE SAs superseded by a rekey or being deleted (their children
// have moved or go with them), and not child SAs superseded by a rekey
// (REKEYED: charon sends no down event when it deletes them) or on their
// way out. An empty state (a hand-made SA) counts as live.

func liveIKE(state string) bool {
	switch state {
	case "CREATED", "CONNECTING", "REKEYED", "DELETING", "DESTROYING":
		return false
	}
	return true
}

func liveChild(state string) bool {
	switch state {
	case "CREATED", "ROUTED", "INSTALLING", "REKEYED", "DELETING", "DELETED", "DESTROYING":
		return false
	}
	return true
}

// downReason says why charon reports an SA down, from the states of its
// IKE SA and child SA in the down event. charon has no reason field; what
// it tells apart:
//
//   - a delete (either end's INFORMATIONAL delete, an expiry, charon
//     shutting down): the IKE SA, or the child SA alone, is DELETING;
//   - a dead peer: when DPD or any other exchange times out, charon sends
//     the down events while the IKE SA is still ESTABLISHED (or REKEYING),
//     with no delete exchange (ike_sa.c retransmit(); dpd_timeout_job.c).
//     A duplicate IKE SA destroyed on the peer's INITIAL_CONTACT looks the
//     same: both mean the peer is gone or restarted, which RFC 5660 2 asks
//     to treat as irremediable.
func downReason(ikeState, childState string) string {
	switch {
	case ikeState == "DELETING" || childState == "DELETING" || childState == "DELETED":
		return "deleted"
	case ikeState == "ESTABLISHED" || ikeState == "REKEYING" || ikeState == "REKEYED":
		return "dpd: peer dead or restarted (destroyed without a delete exchange)"
	case ikeState == "":
		return "down"
	}
	return "down (IKE SA " + ikeState + ")"
}

// saEvents translates one VICI event into latch events, in the order the
// machine must see them. It is called with m.mu held (it updates the IKE
// memo). IKEUpdate and Resync need I/O and are handled by the caller.
func (m *Monitor) saEvents(ev vici.Event, at time.Time) []latch.Event {
	switch e := ev.(type) {
	case vici.IKEUpDown:
		if e.Up {
			return []latch.Event{latch.IKEUp{At: at, IKE: m.ike(&e.IKE)}}
		}
		delete(m.ikeAuth, e.IKE.UniqueID)
		return []latch.Event{latch.IKEDown{At: at, ID: e.IKE.UniqueID, Reason: downReason(e.IKE.State, "")}}
	case vici.ChildUpDown:
		if e.Up {
			// IKEUp is idempotent: it makes the child's IKE SA known even
			// when its own event was lost.
			return []latch.Event{latch.IKEUp{At: at, IKE: m.ike(&e.IKE)}, latch.ChildUp{At: at, Child: child(&e.IKE, &e.Child)}}
		}
		return []latch.Event{latch.ChildDown{At: at, ID: e.Child.UniqueID, Reason: downReason(e.IKE.State, e.Child.State)}}
	case vici.IKERekey:
		old, ok := m.ikeAuth[e.Old.UniqueID]
		delete(m.ikeAuth, e.Old.UniqueID)
		nw := e.New
		if ok {
			// The machine carries the old SA's peer over anyway; the memo
			// must agree with it for the events of the new SA.
			m.ikeAuth[nw.UniqueID] = ikeMemo{ispi: parseSPI(nw.InitiatorSPI), rspi: parseSPI(nw.ResponderSPI), auth: old.auth}
		}
		return []latch.Event{latch.IKERekeyed{At: at, Old: e.Old.UniqueID, New: m.ike(&nw)}}
	case vici.ChildRekey:
		return []latch.Event{latch.IKEUp{At: at, IKE: m.ike(&e.IKE)}, latch.ChildRekeyed{At: at, Old: e.Old.UniqueID, New: child(&e.IKE, &e.New)}}
	}
	return nil
}

// snapshotSAs translates a listing into the SA part of a Snapshot and
// renews the IKE memo to the SAs listed.
func (m *Monitor) snapshotSAs(sas []vici.IKESA) (ikes []latch.IKE, children []latch.Child) {
	old := m.ikeAuth
	m.ikeAuth = make(map[uint64]ikeMemo, len(sas))
	for i := range sas {
		sa := &sas[i]
		if !liveIKE(sa.State) || sa.UniqueID == 0 {
			continue
		}
		if memo, ok := old[sa.UniqueID]; ok {
			m.ikeAuth[sa.UniqueID] = memo
		}
		ikes = append(ikes, m.ike(sa))
		for j := range sa.Children {
			if c := &sa.Children[j]; liveChild(c.State) && c.UniqueID != 0 {
				children = append(children, child(sa, c))
			}
		}
	}
	return ikes, children
}

// policies returns the latch policies of conns, keyed by connection and
// child.
func policies(conns []ConnInfo) map[polKey]latch.Policy {
	out := make(map[polKey]latch.Policy)
	for _, c := range conns {
		for _, ch := range c.Children {
			out[polKey{c.Name, ch.Name}] = latch.Policy{Conn: c.Name, Child: ch.Name, Latch: ch.Latch, OnBreak: disposition(ch.OnBreak)}
		}
	}
	return out
}

type polKey struct{ conn, child string }

func disposition(s string) latch.Disposition {
	switch strings.ToLower(s) {
	case "reset":
		return latch.DispositionReset
	case "notify":
		return latch.DispositionNotify
	}
	return latch.DispositionDefault
}
