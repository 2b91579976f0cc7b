package sockets

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchPairs is the number of connected TCP pairs BenchmarkDump opens:
// 50,000 sockets, half IPv4 and half IPv6, plus the listeners.
const benchPairs = 25000

// BenchmarkDump measures one Dump of a namespace holding 50,000 TCP
// sockets (target: under 200 ms). Run it with
//
//	go test -run '^$' -bench Dump -benchtime 20x ./latchmon/sockets/
func BenchmarkDump(b *testing.B) {
	inNetns(b)
	if pairs := openPairs(b, benchPairs); pairs < benchPairs {
		b.Logf("only %d pairs could be opened", pairs)
	}
	ctx := context.Background()
	n := 0
	cpu0 := cpuTime(b)
	for b.Loop() {
		ss, err := Dump(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n = len(ss)
	}
	if n < 2*benchPairs {
		b.Logf("dump found %d sockets, fewer than %d", n, 2*benchPairs)
	}
	b.ReportMetric(float64(n), "sockets/dump")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/dump")
	// CPU time (user and system, the kernel's side of the dump included)
	// tells the cost apart from waits on a busy machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/dump")
}

// cpuTime returns the process's CPU time, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openPairs opens up to want connected TCP pairs on loopback, alternating
// IPv4 and IPv6 over a few listeners each (so that no destination runs out
// of ephemeral ports), with raw system calls on the calling thread, and
// returns the number opened; all close when the benchmark ends.
//
// 50,000 sockets need more descriptors than RLIMIT_NOFILE may allow (the
// hard limit can only be raised with CAP_SYS_RESOURCE). openPairs raises
// the soft limit to the hard one, and parks descriptors in flight on a Unix
// socket pair (SCM_RIGHTS, never received): there they keep their sockets
// open without taking a slot in the descriptor table. The kernel caps the
// descriptors in flight at RLIMIT_NOFILE too, except for a holder of
// CAP_SYS_RESOURCE or CAP_SYS_ADMIN; without either, openPairs stops where
// the limits stop it.
func openPairs(tb testing.TB, want int) int {
	tb.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}

	var fds []int
	closeAll := func(fds []int) {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	tb.Cleanup(func() { closeAll(fds) })
	park, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { closeAll(park[:]) })
	_ = unix.SetsockoptInt(park[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
	parked, parkErr := 0, error(nil)

	const listeners = 8
	type lsn struct {
		fd   int
		addr unix.Sockaddr
	}
	var ls []lsn
	for i := range listeners {
		fam, addr := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		if i%2 == 1 {
			fam, addr = unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}
		}
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		fds = append(fds, fd)
		if err := unix.Bind(fd, addr); err != nil {
			tb.Fatal(err)
		}
		if err := unix.Listen(fd, 1024); err != nil {
			tb.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, lsn{fd, sa})
	}
	batch := make([]int, 0, 250) // SCM_MAX_FD is 253
	n := 0
	for ; n < want; n++ {
		if len(batch) == cap(batch) {
			if parkErr == nil {
				parkErr = unix.Sendmsg(park[0], []byte{0}, unix.UnixRights(batch...), nil, 0)
			}
			if parkErr != nil {
				fds = append(fds, batch...) // keep them open here
			} else {
				parked += len(batch)
				closeAll(batch)
			}
			batch = batch[:0]
		}
		l := ls[n%listeners]
		fam := unix.AF_INET
		if n%2 == 1 {
			fam = unix.AF_INET6
		}
		c, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Logf("pair %d: %v (%d descriptors parked; parking: %v)", n, err, parked, parkErr)
			break
		}
		if err := unix.Connect(c, l.addr); err != nil {
			unix.Close(c)
			tb.Fatalf("pair %d: connect: %v", n, err)
		}
		s, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
		if err != nil {
			unix.Close(c)
			tb.Logf("pair %d: accept: %v (%d descriptors parked; parking: %v)", n, err, parked, parkErr)
			break
		}
		batch = append(batch, c, s)
	}
	fds = append(fds, batch...)
	return n
}
