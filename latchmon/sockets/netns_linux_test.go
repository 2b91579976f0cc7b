package sockets

import (
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// mustRun reports whether the environment demands the privileged tests:
// on CI, or when asked, a test that cannot run fails instead of skipping,
// so that a green run means they ran.
func mustRun() bool {
	return os.Getenv("CI") == "true" || os.Getenv("BTNSD_INTEGRATION") == "1"
}

func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if mustRun() {
		tb.Fatalf(format+" (CI=true or BTNSD_INTEGRATION=1: these tests must run)", args...)
	}
	tb.Skipf(format+" (skipped; with CI=true or BTNSD_INTEGRATION=1 this fails)", args...)
}

// inNetns moves the calling test goroutine, locked to its thread, into a
// fresh network namespace with loopback up, and back when the test ends.
// Sockets the test creates from this goroutine belong to the namespace;
// goroutines it starts run elsewhere and must not create sockets. Do not
// call t.Parallel or t.Run below it. It returns a handle on the namespace,
// valid until the test ends.
func inNetns(tb testing.TB) netns.NsHandle {
	tb.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(tb, "sock_diag destroy and network namespaces need root")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		skipOrFail(tb, "current network namespace: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		skipOrFail(tb, "new network namespace: %v", err)
	}
	tb.Cleanup(func() {
		err := netns.Set(orig)
		ns.Close()
		orig.Close()
		if err == nil {
			runtime.UnlockOSThread()
		}
		// Otherwise the thread stays locked and the runtime ends it with
		// the test goroutine, namespace and all.
	})
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("loopback up: %v", err)
	}
	return ns
}

// cookieOf returns the kernel's cookie of c's socket (SO_COOKIE).
func cookieOf(tb testing.TB, c syscall.Conn) uint64 {
	tb.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var v uint64
	var serr error
	if err := rc.Control(func(fd uintptr) {
		v, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); err != nil {
		tb.Fatal(err)
	}
	if serr != nil {
		tb.Fatalf("SO_COOKIE: %v", serr)
	}
	return v
}
