package fingerprints_test

import (
	"os"
	"sync"
	"testing"

	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/fingerprints/fptest"
)

const benchKeys = 10000

// bench is one store of benchKeys keys shared by the benchmarks: making it
// takes a few seconds.
var bench struct {
	once    sync.Once
	root    string
	entries []fingerprints.Entry
	err     error
}

func benchStore(b *testing.B) (string, []fingerprints.Entry) {
	b.Helper()
	bench.once.Do(func() {
		bench.root, bench.err = os.MkdirTemp("", "btnsd-bench-")
		if bench.err == nil {
			bench.entries, bench.err = fptest.MakeStore(bench.root, benchKeys)
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.root, bench.entries
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.root != "" {
		os.RemoveAll(bench.root)
	}
	os.Exit(code)
}

// BenchmarkOpen10k: open and index a store of 10,000 keys from disk (what
// btnsctl does on every call, and the daemon on start).
func BenchmarkOpen10k(b *testing.B) {
	root, _ := benchStore(b)
	for b.Loop() {
		s, err := fingerprints.Open(root)
		if err != nil || s.Len() != benchKeys {
			b.Fatalf("Open: %v, %d keys", err, s.Len())
		}
	}
}

// BenchmarkReloadUnchanged10k: what the daemon pays per directory event
// when few files changed: a listing and a stat per file.
func BenchmarkReloadUnchanged10k(b *testing.B) {
	root, _ := benchStore(b)
	s, err := fingerprints.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ch, err := s.Reload(); err != nil || !ch.Empty() {
			b.Fatalf("Reload: %v, %+v", err, ch)
		}
	}
}

func openBench(b *testing.B) (*fingerprints.Store, []fingerprints.Entry) {
	root, entries := benchStore(b)
	s, err := fingerprints.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	return s, entries
}

func BenchmarkGet10k(b *testing.B) {
	s, entries := openBench(b)
	i := 0
	for b.Loop() {
		if _, ok := s.Get(entries[i%len(entries)].Key.Fingerprint); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

func BenchmarkByKeyID10k(b *testing.B) {
	s, entries := openBench(b)
	i := 0
	for b.Loop() {
		if _, ok := s.ByKeyID(entries[i%len(entries)].Key.KeyID); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

// BenchmarkResolvePrefix10k: a person's 12-hex-digit prefix.
func BenchmarkResolvePrefix10k(b *testing.B) {
	s, entries := openBench(b)
	i := 0
	for b.Loop() {
		fp := entries[i%len(entries)].Key.Fingerprint
		if got, err := s.Resolve(fp.Hex()[:12]); err != nil || got != fp {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkList10k(b *testing.B) {
	s, _ := openBench(b)
	for b.Loop() {
		if len(s.List()) != benchKeys {
			b.Fatal("short list")
		}
	}
}
