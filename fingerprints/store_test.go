package fingerprints

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testActor = Actor{UID: 0, User: "root", SudoUser: "alice"}

func testMeta(name string) Meta {
	return Meta{
		Name:    name,
		Trust:   Trusted,
		Added:   time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		AddedBy: testActor,
	}
}

func openStore(t testing.TB, root string) *Store {
	t.Helper()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addKey(t testing.TB, s *Store, m Meta) Entry {
	t.Helper()
	e, err := s.Add(mustKey(t, genKey(t, "ed25519")), m)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStoreEmpty(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "missing"))
	if s.Len() != 0 || len(s.List()) != 0 || len(s.Problems()) != 0 {
		t.Fatalf("empty store has %d keys, problems %v", s.Len(), s.Problems())
	}
	if _, err := s.Resolve("abcd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve on empty store: %v", err)
	}
}

func TestStoreAddGetReopen(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	id, _ := ParseIdentity("peer.example.org")
	m := testMeta("db1")
	m.Comment = "the database"
	m.Identity = id
	m.Scope = Scope{"db", "web"}
	k := mustKey(t, genKey(t, "p256"))
	e, err := s.Add(k, m)
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != k || e.Name != "db1" {
		t.Fatalf("Add returned %+v", e)
	}
	rsa := addKey(t, s, testMeta("web1"))

	got, ok := s.Get(k.Fingerprint)
	if !ok || got.Key.Fingerprint != k.Fingerprint {
		t.Fatalf("Get: %v %v", got, ok)
	}
	if byID, ok := s.ByKeyID(k.KeyID); !ok || byID.Key.Fingerprint != k.Fingerprint {
		t.Fatalf("ByKeyID: %v", ok)
	}
	if !got.Accepts("db") || got.Accepts("mail") || !rsa.Accepts("mail") {
		t.Errorf("Accepts wrong for scope %v / %v", got.Scope, rsa.Scope)
	}

	// A second process sees the same store, metadata intact.
	s2 := openStore(t, root)
	if len(s2.Problems()) != 0 {
		t.Fatalf("problems: %v", s2.Problems())
	}
	opt := cmp.Comparer(func(a, b *PublicKey) bool { return a.Fingerprint == b.Fingerprint })
	if diff := cmp.Diff(s.List(), s2.List(), opt); diff != "" {
		t.Errorf("reopened store differs (-first +second):\n%s", diff)
	}
	if l := s2.List(); len(l) != 2 || l[0].Key.Fingerprint.Compare(l[1].Key.Fingerprint) >= 0 {
		t.Errorf("List not in fingerprint order")
	}

	// Files: PEM key and JSON metadata, world-readable, nothing else left.
	b, err := os.ReadFile(s.KeyPath(k.Fingerprint))
	if err != nil || string(b) != string(k.PEM()) {
		t.Errorf("key file holds %q, %v", b, err)
	}
	var mf map[string]any
	b, _ = os.ReadFile(s.KeyPath(k.Fingerprint) + ".json")
	if err := json.Unmarshal(b, &mf); err != nil {
		t.Fatal(err)
	}
	if mf["version"] != 1.0 || mf["fingerprint"] != k.Fingerprint.String() || mf["keyid"] != k.KeyID.String() ||
		mf["identity"] != "fqdn:peer.example.org" || mf["trust"] != "trusted" {
		t.Errorf("metadata file: %s", b)
	}
	names := dirNames(t, s.Dir())
	want := []string{".lock", k.Fingerprint.Hex(), k.Fingerprint.Hex() + ".json", rsa.Key.Fingerprint.Hex(), rsa.Key.Fingerprint.Hex() + ".json"}
	slices.Sort(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
	for _, n := range names[1:] {
		fi, _ := os.Stat(filepath.Join(s.Dir(), n))
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %04o, want 0644", n, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(s.Dir()); fi.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %04o, want 0755", fi.Mode().Perm())
	}

	if _, err := s.Add(k, testMeta("again")); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), `"db1"`) {
		t.Errorf("second Add: %v", err)
	}
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestStoreResolve(t *testing.T) {
	s := openStore(t, t.TempDir())
	// Find two keys whose hex shares 4 digits, to have an ambiguous prefix.
	seen := map[string]*PublicKey{}
	var a, b *PublicKey
	for a == nil {
		k := mustKey(t, genKey(t, "ed25519"))
		p := k.Fingerprint.Hex()[:4]
		if o, ok := seen[p]; ok {
			a, b = o, k
		}
		seen[p] = k
	}
	for _, k := range []*PublicKey{a, b} {
		if _, err := s.Add(k, testMeta("twin")); err != nil {
			t.Fatal(err)
		}
	}
	c := addKey(t, s, testMeta("solo")).Key
	prefix := a.Fingerprint.Hex()[:4]

	unique := func(fp Fingerprint) string { // shortest unambiguous hex prefix, at least 4
		h := fp.Hex()
		for n := 4; ; n++ {
			if _, err := s.Resolve(h[:n]); err == nil {
				return h[:n]
			}
		}
	}
	for in, want := range map[string]Fingerprint{
		a.Fingerprint.String():                    a.Fingerprint,
		a.Fingerprint.Hex():                       a.Fingerprint,
		strings.ToUpper(a.Fingerprint.Hex()[:12]): a.Fingerprint,
		unique(b.Fingerprint):                     b.Fingerprint,
		a.Fingerprint.String()[:7+8]:              a.Fingerprint,
		a.KeyID.String():                          a.Fingerprint,
		a.KeyID.Swanctl():                         a.Fingerprint,
		"solo":                                    c.Fingerprint,
		"  " + c.Fingerprint.Hex()[:10] + "\n":    c.Fingerprint,
		"sha256:" + c.Fingerprint.String()[7:7+6]: c.Fingerprint,
	} {
		got, err := s.Resolve(in)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %s, %v; want %s", in, got, err, want)
		}
	}

	for _, in := range []string{"id:" + c.KeyID.Swanctl()[6:], "SHA256:" + c.Fingerprint.Hex()[:8], "sol"} {
		if fp, err := s.Resolve(in); err == nil {
			t.Errorf("Resolve(%q) = %s, want an error", in, fp)
		}
	}

	var amb *AmbiguousError
	_, err := s.Resolve(prefix)
	if !errors.As(err, &amb) || !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("Resolve(%q) = %v, want ambiguous", prefix, err)
	}
	want := []Fingerprint{a.Fingerprint, b.Fingerprint}
	slices.SortFunc(want, Fingerprint.Compare)
	if diff := cmp.Diff(want, amb.Matches); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), a.Fingerprint.Hex()) || !strings.Contains(err.Error(), b.Fingerprint.String()) {
		t.Errorf("error does not list the matches: %v", err)
	}
	if _, err := s.Resolve("twin"); !errors.As(err, &amb) {
		t.Errorf("Resolve(twin) = %v, want ambiguous", err)
	}
	if _, err := s.Resolve(prefix[:3]); !errors.Is(err, ErrBadFingerprint) || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("short prefix: %v", err)
	}
	other := mustKey(t, genKey(t, "ed25519"))
	if _, err := s.Resolve(other.Fingerprint.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent key: %v", err)
	}
	if _, err := s.Resolve("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent name: %v", err)
	}
}

func TestStoreUpdateRemove(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	m := testMeta("peer")
	m.Trust = Untrusted
	e := addKey(t, s, m)
	fp := e.Key.Fingerprint

	by := Actor{UID: 1000, User: "bob"}
	got, err := s.SetTrust(fp, Trusted, by)
	if err != nil || got.Trust != Trusted || got.ChangedBy != by || got.Changed.IsZero() || !got.Added.Equal(m.Added) {
		t.Fatalf("SetTrust = %+v, %v", got.Meta, err)
	}
	got, err = s.SetScope(fp, Scope{"web"}, by)
	if err != nil || got.Scope.String() != "web" || got.Trust != Trusted {
		t.Fatalf("SetScope = %+v, %v", got.Meta, err)
	}
	if again := openStore(t, root); !mustGet(t, again, fp).Accepts("web") || mustGet(t, again, fp).Accepts("db") {
		t.Errorf("trust and scope not on disk")
	}
	if _, err := s.Update(fp, func(m *Meta) error { m.Name = "bad\nname"; return nil }); err == nil {
		t.Errorf("control character in name accepted")
	}

	removed, err := s.Remove(fp)
	if err != nil || removed.Name != "peer" {
		t.Fatalf("Remove = %+v, %v", removed, err)
	}
	if _, ok := s.Get(fp); ok {
		t.Errorf("Get after Remove found the key")
	}
	if _, ok := s.ByKeyID(e.Key.KeyID); ok {
		t.Errorf("ByKeyID after Remove found the key")
	}
	if _, err := s.Resolve(fp.Hex()[:8]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve after Remove: %v", err)
	}
	if names := dirNames(t, s.Dir()); !slices.Equal(names, []string{".lock"}) {
		t.Errorf("left in directory: %v", names)
	}
	for _, err := range []error{
		func() error { _, err := s.Remove(fp); return err }(),
		func() error { _, err := s.SetTrust(fp, Trusted, by); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("on removed key: %v, want ErrNotFound", err)
		}
	}
}

func mustGet(t testing.TB, s *Store, fp Fingerprint) Entry {
	t.Helper()
	e, ok := s.Get(fp)
	if !ok {
		t.Fatalf("%s not in store", fp)
	}
	return e
}

// TestStoreProblems: every kind of bad file is reported and skipped, and
// the good keys still load.
func TestStoreProblems(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	good := addKey(t, s, testMeta("good"))
	dir := s.Dir()
	put := func(name string, b []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	k := func() *PublicKey { return mustKey(t, genKey(t, "ed25519")) }

	wrongName, inside := k(), k() // a key file under another key's name
	put(wrongName.Fingerprint.Hex(), inside.PEM(), 0o644)
	put(wrongName.Fingerprint.Hex()+".json", encodeMeta(wrongName, testMeta("x")), 0o644)

	noMeta := k()
	put(noMeta.Fingerprint.Hex(), noMeta.PEM(), 0o644)

	orphan := k()
	put(orphan.Fingerprint.Hex()+".json", encodeMeta(orphan, testMeta("x")), 0o644)

	corrupt := k()
	put(corrupt.Fingerprint.Hex(), corrupt.PEM(), 0o644)
	put(corrupt.Fingerprint.Hex()+".json", []byte(`{"version":1,"trust":"maybe"`), 0o644)

	badTrust := k()
	put(badTrust.Fingerprint.Hex(), badTrust.PEM(), 0o644)
	put(badTrust.Fingerprint.Hex()+".json", []byte(`{"version":1,"fingerprint":"`+badTrust.Fingerprint.String()+`","trust":"maybe"}`), 0o644)

	future := k()
	put(future.Fingerprint.Hex(), future.PEM(), 0o644)
	put(future.Fingerprint.Hex()+".json", []byte(`{"version":9,"fingerprint":"`+future.Fingerprint.String()+`","trust":"trusted"}`), 0o644)

	writable := k()
	put(writable.Fingerprint.Hex(), writable.PEM(), 0o644)
	put(writable.Fingerprint.Hex()+".json", encodeMeta(writable, testMeta("x")), 0o666)

	otherMeta := k() // metadata of another key under this key's name
	put(otherMeta.Fingerprint.Hex(), otherMeta.PEM(), 0o644)
	put(otherMeta.Fingerprint.Hex()+".json", encodeMeta(inside, testMeta("x")), 0o644)

	garbage := k()
	put(garbage.Fingerprint.Hex(), []byte("not a key"), 0o644)
	put(garbage.Fingerprint.Hex()+".json", encodeMeta(garbage, testMeta("x")), 0o644)

	put("README", []byte("hello"), 0o644)
	put(strings.ToUpper(good.Key.Fingerprint.Hex()), good.Key.PEM(), 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	put(".tmp-leftover-123", []byte("half"), 0o600) // a crashed writer's temporary file: ignored

	s2 := openStore(t, root)
	if s2.Len() != 1 || mustGet(t, s2, good.Key.Fingerprint).Name != "good" {
		t.Fatalf("store holds %d keys, want only the good one", s2.Len())
	}
	want := map[string]string{
		wrongName.Fingerprint.Hex():                 "not the key its name says",
		noMeta.Fingerprint.Hex():                    "no metadata file",
		orphan.Fingerprint.Hex() + ".json":          "metadata without its key file",
		corrupt.Fingerprint.Hex():                   "corrupt metadata",
		badTrust.Fingerprint.Hex():                  "want trusted or untrusted",
		future.Fingerprint.Hex():                    "written by a newer btnsd",
		writable.Fingerprint.Hex():                  "writable by group or others",
		otherMeta.Fingerprint.Hex():                 "about another key",
		garbage.Fingerprint.Hex():                   "not a public key",
		"README":                                    "foreign file",
		strings.ToUpper(good.Key.Fingerprint.Hex()): "foreign file",
		"sub": "foreign file",
	}
	got := map[string]string{}
	for _, p := range s2.Problems() {
		got[filepath.Base(p.Path)] = p.Err.Error()
	}
	for name, says := range want {
		if !strings.Contains(got[name], says) {
			t.Errorf("problem for %s = %q, want it to say %q", name, got[name], says)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(got), len(want), s2.Problems())
	}

	// Re-adding a key whose metadata is missing repairs it.
	if _, err := s2.Add(noMeta, testMeta("repaired")); err != nil {
		t.Fatal(err)
	}
	if mustGet(t, s2, noMeta.Fingerprint).Name != "repaired" {
		t.Errorf("not repaired")
	}
	for _, p := range s2.Problems() {
		if strings.HasPrefix(filepath.Base(p.Path), noMeta.Fingerprint.Hex()) {
			t.Errorf("problem still listed after repair: %v", p)
		}
	}
}

func TestStoreDirPermissions(t *testing.T) {
	s := openStore(t, t.TempDir())
	addKey(t, s, testMeta("a"))
	if err := os.Chmod(s.Dir(), 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(s.Dir(), 0o755) })
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	ps := s.Problems()
	if len(ps) != 1 || ps[0].Path != s.Dir() || !strings.Contains(ps[0].Err.Error(), "writable by group or others") {
		t.Errorf("problems %v", ps)
	}
}

func TestStoreReloadChanges(t *testing.T) {
	root := t.TempDir()
	daemon := openStore(t, root) // the reader
	cli := openStore(t, root)    // another process writing
	a := addKey(t, cli, testMeta("a")).Key.Fingerprint
	b := addKey(t, cli, testMeta("b")).Key.Fingerprint

	ch, err := daemon.Reload()
	if err != nil {
		t.Fatal(err)
	}
	want := []Fingerprint{a, b}
	slices.SortFunc(want, Fingerprint.Compare)
	if diff := cmp.Diff(Changes{Added: want}, ch); diff != "" {
		t.Errorf("after adds (-want +got):\n%s", diff)
	}

	rec := daemon.records[a]
	if ch, _ := daemon.Reload(); !ch.Empty() {
		t.Errorf("reload without change: %+v", ch)
	}
	if daemon.records[a] != rec {
		t.Errorf("an unchanged key was read again")
	}

	if _, err := cli.SetTrust(a, Untrusted, testActor); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Remove(b); err != nil {
		t.Fatal(err)
	}
	c := addKey(t, cli, testMeta("c")).Key.Fingerprint
	ch, _ = daemon.Reload()
	if diff := cmp.Diff(Changes{Added: []Fingerprint{c}, Changed: []Fingerprint{a}, Removed: []Fingerprint{b}}, ch); diff != "" {
		t.Errorf("after changes (-want +got):\n%s", diff)
	}
	if mustGet(t, daemon, a).Trust != Untrusted {
		t.Errorf("daemon still trusts a")
	}

	// A write that does not change the metadata is no change.
	if _, err := cli.Update(a, func(m *Meta) error { m.Changed = mustGet(t, daemon, a).Changed; return nil }); err != nil {
		t.Fatal(err)
	}
	if ch, _ := daemon.Reload(); !ch.Empty() {
		t.Errorf("rewrite with equal content reported as %+v", ch)
	}

	// The directory vanishing empties the store; it is not an error.
	if err := os.RemoveAll(filepath.Join(root, "pubkeys")); err != nil {
		t.Fatal(err)
	}
	ch, err = daemon.Reload()
	if err != nil || len(ch.Removed) != 2 || daemon.Len() != 0 {
		t.Errorf("after rm -r: %+v, %v", ch, err)
	}
}

func TestStoreUnreadableDir(t *testing.T) {
	// root reads any directory: put a file where the directory should be.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "pubkeys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "pubkeys", "fp"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err == nil {
		t.Errorf("Open on a key directory that is a file succeeded")
	}
	var pe *fs.PathError
	s := &Store{root: root, dir: filepath.Join(root, "pubkeys", "fp")}
	if _, err := s.Reload(); !errors.As(err, &pe) {
		t.Errorf("Reload error %v, want a PathError", err)
	}
}

func TestStoreAddMany(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	var batch []Entry
	for i := range 5 {
		batch = append(batch, Entry{Key: mustKey(t, genKey(t, "ed25519")), Meta: testMeta(strconv.Itoa(i))})
	}
	added, err := s.AddMany(batch)
	if err != nil || len(added) != 5 {
		t.Fatalf("AddMany = %d, %v", len(added), err)
	}
	if s2 := openStore(t, root); s2.Len() != 5 || len(s2.Problems()) != 0 {
		t.Fatalf("reopened: %d keys, problems %v", s2.Len(), s2.Problems())
	}

	// All or nothing: one key already there, or one given twice.
	fresh := Entry{Key: mustKey(t, genKey(t, "ed25519")), Meta: testMeta("fresh")}
	for name, b := range map[string][]Entry{
		"existing": {fresh, batch[2]},
		"twice":    {fresh, fresh},
		"bad meta": {fresh, {Key: mustKey(t, genKey(t, "ed25519")), Meta: Meta{Name: "a\x00b"}}},
	} {
		if _, err := s.AddMany(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, ok := s.Get(fresh.Key.Fingerprint); ok {
			t.Errorf("%s: part of a refused batch was added", name)
		}
	}
	for _, n := range dirNames(t, s.Dir()) {
		if strings.HasPrefix(n, ".tmp-") {
			t.Errorf("temporary file left: %s", n)
		}
	}
	if len(dirNames(t, s.Dir())) != 1+2*5 {
		t.Errorf("directory holds %v", dirNames(t, s.Dir()))
	}
}
