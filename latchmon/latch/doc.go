// Package latch is the latch database (LD) and state machine of IPsec
// connection latching (RFC 5660, draft-ietf-btns-connection-latching-11)
// for btnsd, kept pure in the manner of etcd's raft: no I/O, no clock, no
// logging, no goroutines. The driver (latchmon) turns VICI events, socket
// dumps, policy reloads and API calls into inputs, steps the Machine, and
// carries out its outputs:
//
//	m := latch.New() // or latch.Restore(saved)
//	for {
//		select {
//		case ev := <-events: // VICI, sock_diag, policy files: IKEUp, ChildUp, FlowSeen, ...
//			err = m.Step(ev) // each event carries its own time
//		case req := <-api:
//			id, err = m.CreateConnection(req.At, req.Tuple, req.Cookie, req.Want)
//		}
//		for _, a := range m.Ready() {
//			switch a := a.(type) {
//			case latch.Alert:   // log it, send it to the API's subscribers
//			case latch.Reset:   // SOCK_DESTROY the socket with cookie a.Cookie
//			case latch.Persist: // save m.Marshal()
//			}
//		}
//	}
//
// A Machine is not safe for concurrent use.
//
// # States
//
// The states and transitions of RFC 5660 2.2. Every transition, birth and
// end included, raises an Alert (2.3 ALERT).
//
//	               listening socket covered by a latching SA,
//	               CreateListener
//	(none) ──────────────────────────────────────► LISTENER
//	  │                                               │ socket closed, Release,
//	  │ flow covered by a latching SA,                │ AdminClose (+ Reset)
//	  │ flow accepted on a LISTENER latch,            ▼
//	  │ CreateConnection                    ┌────► CLOSED ──► leaves the LD
//	  │                                     │         ▲
//	  ├─ no conflicting SA ─► ESTABLISHED ──┘         │ socket closed, Release,
//	  │                         │     ▲               │ AdminClose (+ Reset)
//	  │    SA with another peer │     │ conflicts     │
//	  │    or protection; all   │     │ cleared; a    │
//	  │    congruent SAs gone   │     │ congruent SA  │
//	  │    (delete, DPD);       │     │ back; policy  │
//	  │    policy changed       ▼     │ allows again  │
//	  └─ conflicting SAs ───► BROKEN ─┘ (not after    │
//	     at birth               │       a Reset)      │
//	                            └─────────────────────┘
//
//	entering BROKEN: + Reset when the disposition is reset (5.5 (b))
//
// A latch is BROKEN exactly when a covering child SA conflicts with it, when
// it lost every congruent SA, when its policy no longer allows its
// protection, or when its socket was reset; it is ESTABLISHED otherwise. The
// machine keeps these bindings and derives the state from them, and each
// step raises one Alert per latch whose state differs from its state before
// the step: a rekey that brings the new SA before it drops the old raises
// nothing, and so does a Snapshot that finds a rekey the driver missed.
//
// # Peers, protection, congruence
//
// A latch records its peer (Peer) and its protection (Protection: charon
// connection and child, ESP or AH, mode, encapsulation, algorithms and key
// sizes, DH group, local identity). A child SA is congruent with a latch
// when both are equal. A peer that proved a trusted key is the same peer
// across rekeys, reauthentication and new IKE SAs. An anonymous peer is its
// IKE SA lineage: IKERekeyed continues it, any other IKE SA (a
// reauthentication, a new initiation, charon reusing a uniqueid after a
// restart, told apart by the SPIs) starts another, which is the defence
// against connection hijacking through rekeying (RFC 5387 5.8).
//
// # Decisions where the draft is open
//
//   - CLOSED is fleeting (2.2): a latch leaves the LD in the step that
//     closes it, and its Alert is the owner's notice. Inquire then answers
//     ErrNotFound; a new socket on the same 5-tuple gets a new latch.
//   - Conflicts are judged on traffic selectors, literally (2.2, 2.3): any
//     child SA whose selectors cover the flow and whose peer or protection
//     differs conflicts, including a child config of the same peer whose
//     selectors overlap a narrower one (testdata/overlap.txt). The machine
//     does not know the SPD's priorities; policies should not overlap.
//   - A flow covered at birth by SAs that conflict (2.3: no latch may be
//     made over them) gets a latch born BROKEN, latched to the oldest
//     covering SA whose policy latches (the likeliest original peer), so
//     that its disposition runs; the API (CreateConnection) fails with
//     ErrConflict instead.
//   - Disposition (5.5): per policy (Policy.OnBreak) or per API request,
//     fixed when the latch is born; the default is reset for TCP and SCTP
//     (5.5 (b)) and notify for the rest. A latch whose socket was reset
//     stays BROKEN until the socket is gone: a reset connection cannot
//     come back. Under notify (5.5 (a)) it mends as 2.2 says.
//   - DPD (2: the system SHOULD consider the latches irremediably broken):
//     the latches break; for an anonymous peer no SA can ever mend them (its
//     lineage is gone); a key peer proving its key again mends a notify
//     latch, as DESIGN.md asks.
//   - Automatic latching (2: SHOULD by default) latches a flow when it is
//     first seen covered by a latching SA, also when the socket was seen
//     before the SA came up (an on-demand SA triggered by the flow's first
//     packet). A socket whose latch was released or closed by the
//     administrator is never latched again by itself.
//   - Listener latches (2.3) come from listening sockets on endpoints that
//     a latching SA's local selectors cover, or from CreateListener; a flow
//     accepted on one is latched whatever its SAs' policy, but only when an
//     SA covers it (an unprotected accepted flow is the SPD's business).
//   - Policy changes (2.2, 2.3): the REQUIRED behaviour, breaking the
//     latches whose protection the policy no longer allows; the OPTIONAL
//     logical SPD update (2.3, 3) is not done, btnsd never rewrites
//     charon's policy on its own. A policy that stops latching does not
//     release existing latches.
//   - Quality of protection (2.1): the negotiated algorithms are latched;
//     LatchInfo.QoPIndeterminate reports, as 2.1 requires, when the SA's
//     selectors cover more than the one flow, so that a new SA may
//     negotiate another suite from the same proposals (and break the
//     latch).
//   - Restarts (2, 2.6): Marshal saves the LD and the lineages of
//     anonymous peers; after Restore the machine takes nothing but
//     policies and snapshots until SAs and sockets have both been
//     re-validated: a latch stays when its socket (same cookie) and a
//     congruent SA exist, breaks (and runs its disposition) otherwise, and
//     closes when its socket is gone or was never seen.
//
// # Performance
//
// Flows are indexed by remote address and child SAs by remote selector in
// prefix tries, latches by the SAs bound to them: a child SA event visits
// only the flows its selectors cover, and a rekey with equal parameters
// hands its records over without visiting any. Listening sockets are
// assumed few: a latching child SA's arrival looks at all of them.
// BenchmarkSAEvents and BenchmarkMemoryPerLatch measure 100,000 latches
// over 10,000 SAs.
package latch
