package cli

import (
	"context"
	"io"
	"testing"

	"github.com/btnsd/btnsd/fingerprints/fptest"
)

// BenchmarkKeyList10k: `btnsctl key list` on a store of 10,000 keys, from
// opening the store to the last line of the table (the process start is
// not included; docs/keys.md has the wall time of the binary).
func BenchmarkKeyList10k(b *testing.B) {
	benchList(b, "key", "list")
}

func BenchmarkKeyListJSON10k(b *testing.B) {
	benchList(b, "key", "list", "--json")
}

func benchList(b *testing.B, args ...string) {
	root := b.TempDir()
	if _, err := fptest.MakeStore(root, 10000); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cmd := NewRootCmd(testEnv(map[string]string{"BTNSD_ROOT": root}))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if code := Run(context.Background(), cmd, args); code != ExitOK {
			b.Fatalf("exit %d", code)
		}
	}
}
