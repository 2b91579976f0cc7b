package latchmon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btnsd/btnsd/latchmon/latch"
	"github.com/btnsd/btnsd/vici"
	"github.com/btnsd/btnsd/vici/vicitest"
)

// savedLatches reads the state file and restores it as latch.Restore would
// after a restart.
func savedLatches(t *testing.T, path string) []latch.LatchInfo {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := latch.Restore(data)
	if err != nil {
		t.Fatalf("the saved LD does not restore: %v", err)
	}
	return m.Latches()
}

// The LD is saved after changes, as a whole file that latch.Restore takes,
// written through a temporary file renamed over the old one.
func TestPersistIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "latches.json")
	w := newWorld(t, worldOpts{statePath: path})
	w.start(worldOpts{})
	latchAlice(t, w)
	waitFor(t, "latch 1 saved", func() bool {
		_, err := os.Stat(path)
		return err == nil && len(savedLatches(t, path)) == 1
	})
	if li := savedLatches(t, path)[0]; li.ID != 1 || li.Tuple != flowA || li.Cookie != 0x2a || li.State != latch.Established {
		t.Errorf("saved %+v", li)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	w.socks.close(0x2a)
	w.expect(1, latch.Established, latch.Closed, "socket closed")
	waitFor(t, "the close saved", func() bool { return len(savedLatches(t, path)) == 0 })
	w.stop()
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "latches.json" {
		t.Errorf("state directory holds %v", ents)
	}
}

func TestWriteAtomicFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "latches.json")
	if err := writeAtomic(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: the write fails, the temporary
	// file goes, nothing else changes.
	if err := writeAtomic(dir, []byte("new")); err == nil {
		t.Fatal("rename over a directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %v", ents)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("file holds %q", b)
	}
}

// A state file that cannot be restored does not stop the monitor: it is
// kept aside, the LD starts empty, and the next save writes a good file.
func TestCorruptStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latches.json")
	if err := os.WriteFile(path, []byte(`{"Version":1,"Latches":[{`), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, worldOpts{statePath: path})
	if n := len(w.m.Latches()); n != 0 {
		t.Fatalf("%d latches from a corrupt file", n)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("kept aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !strings.HasPrefix(string(b), `{"Version":1`) {
		t.Errorf("copy aside holds %q", b)
	}
	if !w.log.has("kept aside as " + aside[0]) {
		t.Error("not logged")
	}
	w.start(worldOpts{})
	latchAlice(t, w)
	waitFor(t, "a good file", func() bool {
		_, err := os.Stat(path)
		return err == nil && len(savedLatches(t, path)) == 1
	})
}

// RFC 5660 2: a restarted key manager restores its latches or closes them,
// never keeps them unchecked. btnsd stops with three latches; while it is
// down, the SA of one goes (it breaks, and its socket is reset: 5.5 (b))
// and the socket of another closes (it closes). The third survives as it
// was, without an alert.
func TestRestartRevalidates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latches.json")
	w := newWorld(t, worldOpts{statePath: path})
	w.start(worldOpts{})
	w.up(ikeSA(alice, 1, "10.99.0.2",
		childSA("web", 1, "10.99.0.1/32", "10.99.0.2/32"),
		childSA("web", 2, "10.99.0.1/32", "10.99.0.3/32")))
	for i, s := range [][2]string{
		{"10.99.0.1:5001", "10.99.0.2:40000"},
		{"10.99.0.1:5002", "10.99.0.3:40000"},
		{"10.99.0.1:5003", "10.99.0.2:40001"},
	} {
		w.socks.add(tcpSock(uint64(0x2a+i), s[0], s[1]))
		w.expect(latch.LatchID(i+1), latch.None, latch.Established, "latched")
	}
	w.stop()
	if n := len(savedLatches(t, path)); n != 3 {
		t.Fatalf("%d latches saved at stop", n)
	}

	// While btnsd is down: child SA 2 is gone, socket 0x2c closed.
	sa := w.sas[0]
	sa.Children = sa.Children[:1]
	w.ch.SetSAs([]vici.IKESA{sa})
	w.socks.close(0x2c)

	w2 := newWorld(t, worldOpts{statePath: path, ch: w.ch, socks: w.socks})
	if n := len(w2.m.Latches()); n != 3 {
		t.Fatalf("%d latches restored", n)
	}
	// Until they are checked, the API refuses to latch anything.
	if _, err := w2.m.CreateConnection(context.Background(), flowA, 0x99, latch.Want{}); !errors.Is(err, latch.ErrNeedSnapshot) {
		t.Errorf("CreateConnection before the check: %v", err)
	}
	w2.start(worldOpts{})
	w2.expect(2, latch.Established, latch.Broken, "restart: no congruent SA")
	w2.expect(3, latch.Established, latch.Closed, "restart: socket gone")
	w2.expect(2, latch.Broken, latch.Closed, "socket closed")
	if got := w2.socks.destroyedCookies(); !slices.Equal(got, []uint64{0x2b}) {
		t.Errorf("destroyed %v", got)
	}
	w2.quiet()
	li := w2.inquire(1)
	if li.State != latch.Established || !slices.Equal(li.SAs, []uint64{1}) || li.Peer.Fingerprint != fpString(fpAlice) {
		t.Errorf("latch 1 after the restart: %+v", li)
	}
	waitFor(t, "the checked LD saved", func() bool { return len(savedLatches(t, path)) == 1 })
}

// Restored latches do not wait forever (RFC 5660 2): without the daemon's
// connections they are judged with peers named from connection names (the
// restored latch gives the fingerprint of alice's connection, so its latch
// survives); without charon, against no SA.
func TestRestoreTimeout(t *testing.T) {
	saved := func(t *testing.T) (string, *vicitest.Charon, *fakeSockets) {
		path := filepath.Join(t.TempDir(), "latches.json")
		w := newWorld(t, worldOpts{statePath: path})
		w.start(worldOpts{})
		latchAlice(t, w)
		w.stop()
		return path, w.ch, w.socks
	}
	t.Run("no connections", func(t *testing.T) {
		path, ch, socks := saved(t)
		w := newWorld(t, worldOpts{statePath: path, ch: ch, socks: socks, restore: 20 * time.Millisecond})
		w.start(worldOpts{noConns: true})
		waitFor(t, "the restored latch checked", func() bool {
			_, err := w.m.CreateConnection(context.Background(), flowA, 0x2a, latch.Want{})
			return errors.Is(err, latch.ErrExists)
		})
		w.quiet()
		if li := w.inquire(1); li.State != latch.Established || !slices.Equal(li.SAs, []uint64{1}) {
			t.Errorf("latch 1: %+v", li)
		}
		if !w.log.has("judging them with peers named from connection names") {
			t.Error("not logged")
		}
	})
	t.Run("no charon", func(t *testing.T) {
		path, ch, socks := saved(t)
		for range 3 {
			ch.FailNext("list-sas", syscall.ECONNREFUSED)
		}
		w := newWorld(t, worldOpts{statePath: path, ch: ch, socks: socks, restore: 20 * time.Millisecond})
		w.start(worldOpts{})
		w.expect(1, latch.Established, latch.Broken, "restart: no congruent SA")
		w.expect(1, latch.Broken, latch.Closed, "socket closed")
		if !w.log.has("restored latches are judged against no SA") {
			t.Error("not logged")
		}
	})
}
