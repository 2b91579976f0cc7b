package fingerprints

import (
	"context"
	"slices"
	"testing"
	"time"
)

// watchStore runs Watch on a new Store of root and returns its reports.
func watchStore(t *testing.T, root string) (*Store, <-chan Changes) {
	t.Helper()
	s := openStore(t, root)
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan Changes, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, WatchOptions{Debounce: 20 * time.Millisecond, Rescan: time.Hour}, func(ch Changes, err error) {
			if err != nil {
				t.Errorf("Watch reported %v", err)
				return
			}
			reports <- ch
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	return s, reports
}

// waitFor collects reports until one contains fp in the list pick selects.
func waitFor(t *testing.T, reports <-chan Changes, pick func(Changes) []Fingerprint, fp Fingerprint) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ch := <-reports:
			if slices.Contains(pick(ch), fp) {
				return
			}
		case <-timeout:
			t.Fatalf("no report of %s within 10 s", fp)
		}
	}
}

func TestWatch(t *testing.T) {
	// The key directory does not exist yet when the daemon starts.
	root := t.TempDir()
	daemon, reports := watchStore(t, root)
	cli := openStore(t, root)

	a := addKey(t, cli, testMeta("a")).Key.Fingerprint
	waitFor(t, reports, func(c Changes) []Fingerprint { return c.Added }, a)
	if _, ok := daemon.Get(a); !ok {
		t.Fatal("reported but not in the store")
	}

	if _, err := cli.SetTrust(a, Untrusted, testActor); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reports, func(c Changes) []Fingerprint { return c.Changed }, a)
	if e, _ := daemon.Get(a); e.Trust != Untrusted {
		t.Error("change reported but not applied")
	}

	if _, err := cli.Remove(a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, reports, func(c Changes) []Fingerprint { return c.Removed }, a)
}
