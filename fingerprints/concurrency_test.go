package fingerprints

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each writer adds its own keys and increments a counter kept in the
// metadata of one shared key, a read-modify-write. Lost updates or torn
// files show as a wrong count, a missing key, or a problem seen by the
// reader that reloads all the while.
const (
	writerKeys  = 20
	writerIncrs = 20
)

func bump(s *Store, shared Fingerprint) error {
	_, err := s.Update(shared, func(m *Meta) error {
		n, _ := strconv.Atoi(m.Comment)
		m.Comment = strconv.Itoa(n + 1)
		m.Trust = Trust(n % 2) // flip trust too, as `key trust` and `untrust` would
		return nil
	})
	return err
}

func writer(root string, shared Fingerprint, name string) error {
	s, err := Open(root)
	if err != nil {
		return err
	}
	for i := range writerKeys {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		k, err := NewPublicKey(pub)
		if err != nil {
			return err
		}
		if _, err := s.Add(k, Meta{Name: fmt.Sprintf("%s-%d", name, i), AddedBy: testActor}); err != nil {
			return err
		}
		if i < writerIncrs {
			if err := bump(s, shared); err != nil {
				return err
			}
		}
	}
	return nil
}

// reader reloads its own Store until ctx ends and reports any problem it
// ever sees: with atomic writes and the shared lock there must be none.
func reader(ctx context.Context, root string) error {
	s, err := Open(root)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		if _, err := s.Reload(); err != nil {
			return err
		}
		if ps := s.Problems(); len(ps) > 0 {
			return fmt.Errorf("reader saw problems: %v", ps)
		}
		for _, e := range s.List() {
			if e.AddedBy != testActor {
				return fmt.Errorf("reader saw %s without its metadata", e.Key.Fingerprint)
			}
		}
	}
	return nil
}

func checkWriters(t *testing.T, root string, shared Fingerprint, writers int) {
	t.Helper()
	s := openStore(t, root)
	if ps := s.Problems(); len(ps) > 0 {
		t.Errorf("problems: %v", ps)
	}
	if got, want := s.Len(), 1+writers*writerKeys; got != want {
		t.Errorf("%d keys, want %d", got, want)
	}
	if got, want := mustGet(t, s, shared).Comment, strconv.Itoa(writers*writerIncrs); got != want {
		t.Errorf("shared counter = %s, want %s: updates were lost", got, want)
	}
	for _, n := range dirNames(t, s.Dir()) {
		if strings.HasPrefix(n, ".tmp-") {
			t.Errorf("temporary file left: %s", n)
		}
	}
}

func TestStoreConcurrentWriters(t *testing.T) {
	root := t.TempDir()
	shared := addKey(t, openStore(t, root), Meta{Name: "shared", Comment: "0", AddedBy: testActor}).Key.Fingerprint

	ctx, cancel := context.WithCancel(context.Background())
	readerErr := make(chan error, 1)
	go func() { readerErr <- reader(ctx, root) }()

	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() { errs <- writer(root, shared, fmt.Sprintf("w%d", w)) })
	}
	wg.Wait()
	cancel()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := <-readerErr; err != nil {
		t.Error(err)
	}
	checkWriters(t, root, shared, writers)
}

// TestStoreConcurrentProcesses runs the writers as separate processes (this
// test binary again), as two btnsctl calls would, while this process reads.
func TestStoreConcurrentProcesses(t *testing.T) {
	if root := os.Getenv("BTNSD_TEST_WRITER_ROOT"); root != "" {
		shared, err := ParseFingerprint(os.Getenv("BTNSD_TEST_WRITER_SHARED"))
		if err == nil {
			err = writer(root, shared, os.Getenv("BTNSD_TEST_WRITER_NAME"))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	root := t.TempDir()
	shared := addKey(t, openStore(t, root), Meta{Name: "shared", Comment: "0", AddedBy: testActor}).Key.Fingerprint

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	readCtx, stopReading := context.WithCancel(ctx)
	readerErr := make(chan error, 1)
	go func() { readerErr <- reader(readCtx, root) }()

	const writers = 3
	var cmds []*exec.Cmd
	for w := range writers {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStoreConcurrentProcesses$")
		cmd.Env = append(os.Environ(),
			"BTNSD_TEST_WRITER_ROOT="+root,
			"BTNSD_TEST_WRITER_SHARED="+shared.String(),
			"BTNSD_TEST_WRITER_NAME=p"+strconv.Itoa(w))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer process: %v", err)
		}
	}
	stopReading()
	if err := <-readerErr; err != nil {
		t.Error(err)
	}
	checkWriters(t, root, shared, writers)
	if _, err := os.Stat(filepath.Join(root, "pubkeys", "fp", lockName)); err != nil {
		t.Errorf("lock file: %v", err)
	}
}
