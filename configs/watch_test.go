package configs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func expectChange(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatalf("no change reported after %s", what)
	}
}

func expectQuiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("change reported after %s", what)
	case <-time.After(150 * time.Millisecond):
	}
}

func TestWatchEditorSaveAndConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, []string{dir}, WatchOptions{Debounce: 10 * time.Millisecond, Rescan: time.Hour, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}

	// An editor's atomic save: write a temporary file, rename it over.
	tmp := filepath.Join(dir, ".p.conf.swp")
	if err := os.WriteFile(tmp, []byte("connections {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "p.conf")); err != nil {
		t.Fatal(err)
	}
	expectChange(t, ch, "an atomic save")
	expectQuiet(t, ch, "the save was reported once (debounced)")

	// A bare chmod is not a change.
	if err := os.Chmod(filepath.Join(dir, "p.conf"), 0o600); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, ch, "a chmod")

	// A Kubernetes ConfigMap update: a new timestamped directory, a
	// ..data_tmp symlink renamed over ..data. The file name we care about
	// (p.conf -> ..data/p.conf) never shows up in the events.
	for i, ts := range []string{"..2026_11_22_01", "..2026_11_22_02"} {
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, "q.conf"), []byte("# v"+ts+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := os.Symlink("..data/q.conf", filepath.Join(dir, "q.conf")); err != nil {
				t.Fatal(err)
			}
		}
		expectChange(t, ch, "a ConfigMap swap to "+ts)
	}

	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// A last coalesced notification may be pending; the next
			// receive must see the close.
			if _, ok := <-ch; ok {
				t.Fatal("channel not closed after cancel")
			}
		}
	case <-time.After(2 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestWatchPicksUpDirectoryCreatedLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy.d")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const rescan = time.Second
	ch, err := Watch(ctx, []string{dir}, WatchOptions{Debounce: 10 * time.Millisecond, Rescan: rescan})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	expectChange(t, ch, "rescan") // the rescan tick adds the watch and reports
	// The next tick is a whole rescan period away: a change seen well
	// before it came through the watch the tick added.
	start := time.Now()
	if err := os.WriteFile(filepath.Join(dir, "x.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	expectChange(t, ch, "a write in the new directory")
	if d := time.Since(start); d > rescan/2 {
		t.Fatalf("write reported after %v: by the rescan, not by a watch on the new directory", d)
	}
}
