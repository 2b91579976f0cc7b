// Package xfrm reads the kernel's IPsec databases, the SPD (policies) and
// the SAD (states), for connection latching (RFC 5660,
// draft-ietf-btns-connection-latching-11, 1 and 2.3: latching is "a monitor
// of SPD and SAD changes").
//
// Watch subscribes a NETLINK_XFRM socket of the network namespace to the
// multicast groups XFRMNLGRP_SA, XFRMNLGRP_POLICY and XFRMNLGRP_EXPIRE
// (vishvananda/netlink's XfrmMonitor subscribes to EXPIRE only) and decodes
// XFRM_MSG_NEWSA, DELSA, UPDSA, EXPIRE, FLUSHSA, NEWPOLICY, DELPOLICY,
// UPDPOLICY, POLEXPIRE and FLUSHPOLICY into Events with typed States and
// Policies. A socket that falls behind fails with ENOBUFS: the kernel
// dropped notifications, and Watch sends a Resync; the consumer then lists
// both databases again (Policies, States). A flush also calls for a new
// listing, since it names no object.
//
// Decode is pure and portable (golden bytes in the tests); the socket code
// is Linux only. The wire layouts are those of linux/xfrm.h on the host's
// byte order.
package xfrm
