package lab

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Required reports whether integration tests must run here rather than be
// skipped: under CI (CI=true) or when BTNSD_INTEGRATION=1, which the
// project's test command sets. A green run must mean the real tests ran.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("BTNSD_INTEGRATION") == "1"
}

// Require skips tb when the machine cannot run real-charon tests (not root,
// no charon), or fails it when Required says they must run.
func Require(tb testing.TB) {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces)")
	}
	if _, err := os.Stat(Charon); err != nil {
		missing = append(missing, "charon ("+Charon+")")
	}
	for _, tool := range []string{"ip", "swanctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "integration test needs " + strings.Join(missing, ", ") + "; run scripts/test.sh as root"
	if Required() {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// Start builds a lab for a test and removes it when the test ends, whether
// it passes, fails or panics. On failure it prints the tail of each host's
// charon log.
func Start(tb testing.TB, opts Options) *Lab {
	tb.Helper()
	Require(tb)
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	l, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, h := range l.hosts {
				var b strings.Builder
				h.CopyCharonLog(&b, 40)
				tb.Log(b.String())
			}
		}
		if err := l.Close(); err != nil {
			tb.Errorf("lab cleanup: %v", err)
		}
	})
	return l
}

// StartCharons starts charon on every host of l, failing tb on error.
func StartCharons(tb testing.TB, l *Lab) {
	tb.Helper()
	for _, h := range l.hosts {
		if err := h.StartCharon(); err != nil {
			tb.Fatal(err)
		}
	}
}
