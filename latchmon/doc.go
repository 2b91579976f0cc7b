// Package latchmon is the driver of IPsec connection latching (RFC 5660,
// draft-ietf-btns-connection-latching-11; DESIGN.md, "Connection
// latching"). The latch database and its state machine are the pure
// package latch; this package does the I/O around it: it turns charon's SA
// events, the kernel's sockets and the daemon's connections into the
// machine's events, and carries out the machine's actions (alerts, socket
// resets, saving the LD).
//
// # Model
//
//	charon (vici stream) --daemon--> HandleSAEvent --queue--+
//	daemon sync ----------------------> SetConns ------------+--> latch.Machine --> Alert: log + Subscribe
//	kernel: sock_diag Watch (closes) + Dump (polled) --------+                  --> Reset: sockets.Destroy
//	API: CreateConnection, CreateListener, Release, ... -----+                  --> Persist: StatePath
//
// One mutex guards the machine; Run's goroutine does the slow I/O (dumps,
// list-sas, writing the LD) without it, and the API methods step the
// machine directly under it, so an API call never waits for a dump.
//
// The daemon owns the one VICI event stream and hands every event to
// HandleSAEvent, which never blocks; Run steps them in order. A vici.Resync
// (first after every connection to charon, and after a possible loss), a
// full queue, or an event the machine cannot place (an unknown IKE SA)
// makes Run list charon's SAs and step them as a latch.Snapshot; the events
// queued before the listing are dropped (the listing shows their effect),
// those queued during it are applied after it.
//
// # Polling
//
// The kernel announces closed sockets (sock_diag destroy notifications) but
// not new ones, so new flows are found by dumping every socket, every
// PollInterval (200 ms by default, so that a flow is latched within a
// fraction of a second of its first packets), stretched to ten times the
// last dump's duration on hosts with tens of thousands of sockets. Run
// watches first and then dumps, and applies the watch's notifications
// between dumps, never during one. Each dump is compared with the last by
// socket cookie, and the machine is stepped only with what changed
// (FlowSeen, FlowGone): an unchanged socket costs one map lookup. With
// 100,000 latched flows a poll takes about 10 ms of the monitor's time,
// where stepping the whole dump as a Snapshot takes 45 ms (BenchmarkPoll,
// on this project's 2-core machines). A closed socket is matched by
// its cookie, since the kernel may report it with local port 0. Dumps skip
// TIME-WAIT and request (SYN-RECV) sockets, TCP sockets that are closed, and
// FIN-WAIT, LAST-ACK and CLOSING sockets their application has closed;
// listening TCP sockets and unconnected UDP sockets are listening flows.
//
// A socket whose latch breaks with disposition reset (RFC 5660 5.5 (b)), or
// that the administrator closes (2.3), is destroyed by its cookie (a newer
// socket on the same tuple is never hit); the log gives the outcome and the
// time since the event that broke the latch. A socket already gone is not
// an error.
//
// # Peers
//
// The machine needs the peer of every IKE SA; charon lists no
// authentication class and no public key, so the peer comes from the
// connection the SA belongs to (DESIGN.md, "BTNS on strongSwan: the PAD";
// btnsauth.ConnName):
//
//   - btns.<policy>.<fp16>, a connection that pins one trusted key: a key
//     peer named by the key's fingerprint (ConnInfo.PeerFP), the same across
//     rekeys, reauthentication and new IKE SAs;
//   - btns.<policy>.anon, the public-PSK connection: an anonymous peer, that
//     is its IKE SA lineage (RFC 5387 5.8); its remote id, chosen by the
//     peer, proves nothing;
//   - any other connection, btnsd's own without the BTNS flag, or one btnsd
//     does not own: the identity the connection authenticated
//     ("id:<remote id>", which never equals a fingerprint), or an anonymous
//     peer when it is %any.
//
// SAs of every connection are stepped, btnsd's or not: an attacker's SA
// that covers a latched flow may come from a connection btnsd does not own,
// and must break the latch (RFC 5660 2.3); it always does, since its
// protection names another connection. Only children whose policy latches
// (ConnInfo, ChildInfo.Latch) latch flows by themselves. Each IKE SA keeps
// the peer it was first given, whatever SetConns says later. SAs are taken
// from charon only after the first SetConns; a btnsd connection SetConns
// has not named gets the fingerprint a restored latch recorded for it (its
// name carries the first 16 hex digits, which must match), else is treated
// like a connection of the last kind.
//
// Child SAs carry their IKE SA's DH group when charon lists none (one made
// with its IKE SA), so that a PFS rekey does not look like a new protection.
// charon's down events have no reason: one sent while the IKE SA is
// DELETING is "deleted"; one sent while it is still ESTABLISHED is a dead
// peer (DPD or another exchange timed out, or a duplicate IKE SA destroyed
// on INITIAL_CONTACT), reported as "dpd: ...". The two cannot be told apart
// further from the event.
//
// # Kernel SPD and SAD
//
// RFC 5660 2.3 REQUIRES the key manager to break the latches that an SPD
// change would bypass or whose protection it would change, and 2.2 and 2.3
// any SA that conflicts with a latch; 1 describes latching as "a monitor of
// SPD and SAD changes". charon's events only show charon's own SAs, so on
// hosts where the kernel carries the SAs (charon's kernel-netlink) the
// monitor also watches the kernel's SPD and SAD (package xfrm: XFRM netlink
// groups SA, POLICY and EXPIRE; a new listing after lost notifications or a
// flush) and keeps a view of both (spd.go).
//
// What is charon's: charon's child SAs, from its events and from list-sas,
// give their reqids and SPIs (spi-in, spi-out). kernel-netlink installs
// every policy of a child SA with the child's reqid in its templates, and
// its SAs with the child's SPIs. So a policy is charon's when one of its
// templates carries a reqid of charon's, an SA when its SPI is one of
// charon's; reqids and SPIs stay charon's for two minutes after charon last
// listed them, for the kernel objects of a deleted child SA to go. Everything
// else is outside charon:
//
//   - a policy (directions in and out, applying to unmarked packets, not
//     bound to an XFRM interface) that is not charon's: bypass (allow
//     without templates), block, or protect with templates of another reqid
//     (another peer, SPI or mode), unless charon's policies override it
//     (same direction, a lower priority value: Linux XFRM takes the lowest;
//     a tie, decided by insertion order, is taken as not overridden). A
//     policy that charon's override for part of its selector is judged for
//     each latched flow: it interferes with those that none of charon's
//     stronger policies match;
//   - a keyed ESP or AH SA (larval states, SPIs allocated for a
//     negotiation, have no keys) whose SPI is not charon's: it may carry
//     the flows between its selector's (or, without one, its) addresses,
//     either way.
//
// Such an object is stepped into the machine as a child SA of its own
// marked latch.Child.Interference: it conflicts with (breaks) every latch
// whose flow it covers, with a reason such as "conflicting SPD: bypass
// policy 10.99.0.1/32 -> 10.99.0.2/32 dir out priority 100 added outside
// charon: not the key manager's", runs the latch's disposition, and makes
// a latch born over it BROKEN (or CreateConnection fail with ErrConflict);
// no latch is ever made from it. Its removal (or charon's policy coming to
// override it) removes the synthetic SA, and a notify latch mends (2.2).
// Their IDs (latch.LatchInfo.Conflicts) are above 2^40.
//
// charon installs a new child SA's SAs and policies in the kernel before it
// announces the SA: an object outside charon waits KernelGrace (500 ms) and
// a list-sas taken after that before it breaks anything, and an event of
// charon's that makes objects its own removes their synthetic SAs before
// the event is stepped. A break therefore comes about half a second after
// the change: the monitor is no synchronous part of the kernel's
// processing (the draft's "prior to accepting" cannot be had from outside
// the kernel). charon's own shunt policies (list-pols: pass and drop) carry
// no reqid and are judged like any other: a pass policy over a latched flow
// does bypass its protection.
//
// KernelSPD selects it: auto (the default) watches when an XFRM socket
// opens (it needs CAP_NET_ADMIN) and judges once one of charon's SPIs is
// in the kernel's SAD (kernel-netlink); under kernel-libipsec charon's SAs
// live in userspace, the kernel's policies do not decide their packets'
// protection, and nothing is judged. on judges from the start; off does
// not watch. Latch inquiry reports the kernel SAs (KernelSAs: SPIs in and
// out of the latch's child SAs found in the SAD) that protect the flow.
//
// # Restarts
//
// The LD is saved to StatePath after changes (Persist, at most every
// PersistInterval, and when Run ends), atomically: a temporary file,
// fsynced, renamed over the old one. New restores it; a file that cannot be
// restored is kept aside and the monitor starts empty, which the log says.
// Restored latches are judged before anything else (RFC 5660 2: restored
// or closed, never kept unchecked): Run dumps the sockets, waits for the
// daemon's connections, lists the SAs, and steps one Snapshot of both; a
// latch whose socket and a congruent SA exist stays, one without a
// congruent SA breaks (and its disposition runs), one without its socket
// closes. Past RestoreTimeout they are judged with what there is: without
// the connections, or against no SA if charon cannot be listed.
package latchmon
