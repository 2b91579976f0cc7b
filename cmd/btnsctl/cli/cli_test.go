package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/fingerprints"
)

// testEnv is a fixed clock and user, and an environment with only vars.
func testEnv(vars map[string]string) Env {
	return Env{
		Getenv: func(k string) string { return vars[k] },
		Now:    func() time.Time { return time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC) },
		Actor:  func() fingerprints.Actor { return fingerprints.Actor{UID: 0, User: "root", SudoUser: "alice"} },
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// btnsctl runs the command tree as the binary would, on the store under
// root, with stdin as standard input.
func btnsctl(t testing.TB, root, stdin string, args ...string) result {
	t.Helper()
	cmd := NewRootCmd(testEnv(map[string]string{"BTNSD_ROOT": root}))
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	code := Run(context.Background(), cmd, args)
	return result{out.String(), errb.String(), code}
}

// ok runs btnsctl and fails the test unless it succeeds.
func ok(t testing.TB, root, stdin string, args ...string) string {
	t.Helper()
	r := btnsctl(t, root, stdin, args...)
	if r.code != ExitOK {
		t.Fatalf("btnsctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func wantContains(t testing.TB, what, got string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(got, p) {
			t.Errorf("%s does not contain %q:\n%s", what, p, got)
		}
	}
}
