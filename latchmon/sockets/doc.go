// Package sockets is the host's TCP and UDP sockets as a source of flows
// for connection latching (RFC 5660; DESIGN.md, "Connection latching"),
// read from the kernel's sock_diag netlink interface (NETLINK_SOCK_DIAG,
// inet_diag). It does I/O only; the latch state machine (latchmon/latch)
// decides, and the monitor carries its decisions out here.
//
// # The model
//
// The kernel gives three things, and the package one function for each:
//
//   - Dump: every TCP and UDP socket, IPv4 and IPv6, in every state, of one
//     network namespace (four dump requests, one per family and protocol;
//     no per-socket system call; like `ss -tuan`). Unprivileged.
//   - Watch: a notification for every socket the kernel frees (the
//     sock_diag multicast groups SKNLGRP_INET{,6}_{TCP,UDP}_DESTROY).
//     Unprivileged too: the kernel lets any user join these groups.
//   - Destroy: abort one socket (SOCK_DESTROY, `ss -K`), the "reset"
//     disposition of a broken latch. Needs CAP_NET_ADMIN and a kernel
//     with CONFIG_INET_DIAG_DESTROY.
//
// There is no notification of a new socket: the kernel has destroy groups
// only (connection tracking could tell new flows, but only once a
// conntrack rule is active, and eBPF is another dependency). So new flows
// are found by polling Dump, and Watch only makes closes prompt. The
// monitor's loop:
//
//	events, err := h.Watch(ctx)         // first, so no close is missed
//	snapshot(h.Dump(ctx))               // latch.Snapshot{Flows: true, ...}
//	for {
//		select {
//		case ev := <-events:
//			switch ev.Kind {
//			case sockets.Closed:    // latch.FlowGone, by ev.Socket.Cookie
//			case sockets.Overflow:  // notifications lost: dump again
//				snapshot(h.Dump(ctx))
//			}
//		case <-poll.C:              // new sockets: only a dump shows them
//			snapshot(h.Dump(ctx))
//		}
//	}
//
// Dump from the loop itself, not beside it: the notifications of sockets
// that close while a dump runs then wait in the channel and are applied
// after the dump's snapshot, which may still list them. A dump is not a
// snapshot of one instant: a socket that opens or closes while it runs may
// or may not be in it.
//
// # Cookies
//
// A flow's tuple is not an identity: when a connection closes, a new one
// can take the same 5-tuple at once. Every socket has a 64-bit cookie
// (SO_COOKIE, inet_diag_sockid.idiag_cookie) that the kernel draws from a
// counter and never reuses, and the package reports it with each socket
// and each notification. Destroy passes it to the kernel, whose lookup
// checks it (sock_diag_check_cookie): a socket that has closed, or a newer
// socket on the same tuple, answers ENOENT, which Destroy returns as
// ErrGone, and nothing is touched. Match notifications by cookie too: when
// it frees a socket, the kernel may already have released its local port,
// and reports port 0.
//
// What cookies do not cover:
//
//   - A TCP socket in TIME-WAIT, which the kernel lists after it reported
//     the original socket Closed, carries that socket's cookie (with Inode
//     0). A consumer that takes a dump as the set of live flows skips
//     StateTimeWait; sockets the application has closed but that still
//     finish their exchange (FIN-WAIT, LAST-ACK, CLOSING) also have Inode 0.
//   - Multipath TCP (the default for Go listeners since Go 1.24): the
//     TCP dump shows an MPTCP listener's TCP subflow, whose cookie is not
//     the application socket's SO_COOKIE. A connection from a plain TCP
//     peer falls back to TCP and is the very socket, cookie and all. MPTCP
//     connections with subflows appear as their subflows.
//   - In a SO_REUSEPORT group, the kernel's lookup picks one member by a
//     hash of the remote end; Destroy retries with other remote ports
//     until it reaches the member with the cookie, which can fail for very
//     large groups (see Handle.Destroy).
//
// # Addresses
//
// A dual-stack IPv6 socket on an IPv4 flow is reported with its IPv4-mapped
// addresses unmapped, so a flow has the same tuple whichever family its
// socket has; Destroy finds such a socket from the unmapped tuple (the
// kernel hashes it under its IPv4 addresses). Sockets without a peer (TCP
// listeners, unconnected UDP sockets) have Listening set and a zero
// Remote; their Local address is the unspecified address of their family
// when they are bound to none.
//
// # Namespaces
//
// The package-level functions work in the network namespace of the calling
// thread, which is the process's unless the caller locked its goroutine to
// a thread and moved that thread (as the tests do). A Handle from NewHandle
// with a namespace handle works in that namespace from any goroutine.
// Every call opens its own netlink socket: calls are safe concurrently and
// cost one socket(2) each besides their requests.
//
// # Cost
//
// One Dump of a namespace with 50,000 TCP sockets took 104 to 175 ms
// (95 to 124 ms of CPU, most of it in the kernel) on this project's 2-core
// machines while other work loaded them (BenchmarkDump). A monitor that
// polls every few seconds spends a few per cent of a core on it at that
// size.
package sockets
