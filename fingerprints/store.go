package fingerprints

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Layout of the store under its root directory.
const (
	// KeyDir holds one PEM file per key, named by the fingerprint's hex,
	// as the iked BTNS patch does, and its metadata beside it in
	// <hex>.json.
	KeyDir = "pubkeys/fp"
	// metaSuffix ends the name of a key's metadata file.
	metaSuffix = ".json"
	// metaVersion is the version of the metadata format this package
	// writes; it reads this version and older ones.
	metaVersion = 1
	// minPrefix is the shortest fingerprint prefix Resolve takes, so that
	// a slip of the keyboard does not name a key by chance.
	minPrefix = 4
)

// Entry is a key in the store with its metadata. Entries are values; the
// PublicKey they point to is immutable and shared.
type Entry struct {
	Key *PublicKey
	Meta
}

// Accepts reports whether a BTNS policy taking keys of the given scope may
// accept this key: it is trusted and its scope includes the policy's.
func (e Entry) Accepts(scope string) bool {
	return e.Trust == Trusted && e.Scope.Includes(scope)
}

// Changes is what a Reload found different from the previous load.
type Changes struct {
	Added, Removed, Changed []Fingerprint
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0
}

// Store is the key store of one btnsd root directory: trusted and untrusted
// raw public keys under <root>/pubkeys/fp, indexed in memory by fingerprint
// and by keyid.
//
// The files are the truth. Writes (Add, Update, Remove) take an exclusive
// lock on the directory, re-read what they change from disk, and replace
// files atomically, so several processes (two btnsctl runs, btnsctl and the
// daemon) can share a store. Reload brings the memory index up to date with
// the files, cheaply: only files whose inode, size or time changed are read.
//
// A Store is safe for concurrent use.
type Store struct {
	root, dir string

	wmu sync.Mutex // serialises Reload and writes within this process

	mu       sync.RWMutex // guards the index below
	records  map[Fingerprint]*record
	byKeyID  map[KeyID]Fingerprint
	byName   map[string][]Fingerprint
	byHex    []indexed // sorted by text, for prefix search
	byB64    []indexed
	problems []Problem
}

type record struct {
	entry     Entry
	key, meta stamp
}

type indexed struct {
	text string
	fp   Fingerprint
}

// Open loads the store under root (the btnsd state directory, /etc/btnsd by
// default). A missing key directory is an empty store; it is created by
// the first write. Files that cannot be used are skipped and listed by
// Problems; only an unreadable directory fails Open.
func Open(root string) (*Store, error) {
	s := &Store{
		root:    root,
		dir:     filepath.Join(root, filepath.FromSlash(KeyDir)),
		records: map[Fingerprint]*record{},
		byKeyID: map[KeyID]Fingerprint{},
		byName:  map[string][]Fingerprint{},
	}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the root directory the store was opened on.
func (s *Store) Root() string { return s.root }

// Dir returns the key directory, <root>/pubkeys/fp: the directory to watch.
func (s *Store) Dir() string { return s.dir }

// KeyPath returns the file that holds the key with fingerprint fp.
func (s *Store) KeyPath(fp Fingerprint) string { return filepath.Join(s.dir, fp.Hex()) }

func (s *Store) metaPath(fp Fingerprint) string { return s.KeyPath(fp) + metaSuffix }

// Get returns the key with fingerprint fp.
func (s *Store) Get(fp Fingerprint) (Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.records[fp]
	if !ok {
		return Entry{}, false
	}
	return r.entry.clone(), true
}

// ByKeyID returns the key whose keyid (SHA-1 of its SubjectPublicKeyInfo,
// as charon reports a raw key's identity) is id.
func (s *Store) ByKeyID(id KeyID) (Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fp, ok := s.byKeyID[id]
	if !ok {
		return Entry{}, false
	}
	return s.records[fp].entry.clone(), true
}

// List returns every usable key, in fingerprint order.
func (s *Store) List() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Entry, 0, len(s.byHex))
	for _, ix := range s.byHex {
		out = append(out, s.records[ix.fp].entry.clone())
	}
	return out
}

// Len returns the number of usable keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.records)
}

// Problems returns the files the last load skipped or found fault with,
// and problems of the directory itself (ownership, permissions).
func (s *Store) Problems() []Problem {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.problems)
}

// Resolve finds the one key that text names. It accepts a complete
// fingerprint (SHA256:<base64>, hex, colon hex), a keyid (colon hex as
// swanctl prints it, keyid:#<hex>), a prefix of at least 4 characters of
// the hex or of the SHA256: form, or a key's name. Every reading that
// matches counts: if they name more than one key the error is an
// *AmbiguousError listing them; if none, the error wraps ErrNotFound.
func (s *Store) Resolve(text string) (Fingerprint, error) {
	in := strings.TrimSpace(text)
	if in == "" {
		return Fingerprint{}, fmt.Errorf("%w: empty", ErrBadFingerprint)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var matches []Fingerprint
	add := func(fp Fingerprint) {
		if !slices.Contains(matches, fp) {
			matches = append(matches, fp)
		}
	}
	if fp, err := ParseFingerprint(in); err == nil {
		if _, ok := s.records[fp]; !ok {
			return fp, fmt.Errorf("%w: %s", ErrNotFound, fp)
		}
		return fp, nil
	}
	if id, err := ParseKeyID(in); err == nil {
		if fp, ok := s.byKeyID[id]; ok {
			add(fp)
		}
	}
	tooShort := false
	if b64, ok := cutPrefixFold(in, fingerprintPrefix); ok {
		if len(b64) < minPrefix {
			tooShort = true
		} else {
			for _, fp := range prefixMatches(s.byB64, b64) {
				add(fp)
			}
		}
	} else if h := strings.ToLower(in); isHex(h) {
		if len(h) < minPrefix {
			tooShort = true
		} else {
			for _, fp := range prefixMatches(s.byHex, h) {
				add(fp)
			}
		}
	}
	for _, fp := range s.byName[in] {
		add(fp)
	}
	switch {
	case len(matches) == 1:
		return matches[0], nil
	case len(matches) > 1:
		slices.SortFunc(matches, Fingerprint.Compare)
		return Fingerprint{}, &AmbiguousError{Input: in, Matches: matches}
	case tooShort:
		return Fingerprint{}, fmt.Errorf("%w: prefix %q is shorter than %d characters", ErrBadFingerprint, in, minPrefix)
	}
	return Fingerprint{}, fmt.Errorf("%w: nothing matches %q", ErrNotFound, in)
}

// prefixMatches returns the fingerprints whose text starts with prefix.
func prefixMatches(sorted []indexed, prefix string) []Fingerprint {
	i, _ := slices.BinarySearchFunc(sorted, indexed{text: prefix}, compareIndexed)
	var out []Fingerprint
	for ; i < len(sorted) && strings.HasPrefix(sorted[i].text, prefix); i++ {
		out = append(out, sorted[i].fp)
	}
	return out
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// Reload brings the index up to date with the files and reports what
// changed. Unchanged files are not read again, so a reload of a large
// store costs a directory listing and a stat per file. If the directory
// cannot be read the index stays as it was and the error is returned.
func (s *Store) Reload() (Changes, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	unlock, err := lockDir(s.dir, false)
	if err != nil {
		return Changes{}, err
	}
	defer unlock()

	dirents, err := os.ReadDir(s.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Changes{}, fmt.Errorf("reading key store: %w", err)
	}
	var problems []Problem
	if err == nil {
		problems = s.checkDir()
	}
	keys := map[Fingerprint]bool{}
	metas := map[Fingerprint]bool{}
	for _, de := range dirents {
		name := de.Name()
		if strings.HasPrefix(name, ".") { // lock, temporary files, ConfigMap's ..data
			continue
		}
		base, isMeta := strings.CutSuffix(name, metaSuffix)
		fp, err := ParseFingerprint(base)
		if err != nil || base != fp.Hex() {
			problems = append(problems, Problem{filepath.Join(s.dir, name),
				errors.New("foreign file: the store holds only <64 lowercase hex> key files and their .json metadata")})
			continue
		}
		if isMeta {
			metas[fp] = true
		} else {
			keys[fp] = true
		}
	}

	s.mu.RLock()
	old := s.records
	s.mu.RUnlock()
	records, loadProblems := s.loadAll(keys, metas, old)
	problems = append(problems, loadProblems...)
	for fp := range metas {
		if !keys[fp] {
			problems = append(problems, Problem{s.metaPath(fp), errors.New("metadata without its key file")})
		}
	}
	slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })

	var ch Changes
	for fp, r := range records {
		switch o, ok := old[fp]; {
		case !ok:
			ch.Added = append(ch.Added, fp)
		case o != r && !o.entry.equal(r.entry):
			ch.Changed = append(ch.Changed, fp)
		}
	}
	for fp := range old {
		if _, ok := records[fp]; !ok {
			ch.Removed = append(ch.Removed, fp)
		}
	}
	for _, l := range [][]Fingerprint{ch.Added, ch.Changed, ch.Removed} {
		slices.SortFunc(l, Fingerprint.Compare)
	}
	if ch.Empty() {
		// The same keys with the same content: keep the index, take the
		// records (a rewrite with equal content has new stamps).
		s.mu.Lock()
		s.records, s.problems = records, problems
		s.mu.Unlock()
		return ch, nil
	}
	s.swap(records, problems)
	return ch, nil
}

// loadAll loads every key in parallel: the work is mostly system calls
// (open, fstat, read, close of two files per key), which run on as many
// threads as there are workers.
func (s *Store) loadAll(keys, metas map[Fingerprint]bool, old map[Fingerprint]*record) (map[Fingerprint]*record, []Problem) {
	type result struct {
		fp  Fingerprint
		r   *record
		err error
	}
	work := make(chan Fingerprint)
	results := make(chan result)
	workers := min(max(2*runtime.GOMAXPROCS(0), 4), 16, len(keys))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for fp := range work {
				r, err := s.load(fp, old[fp], metas[fp])
				results <- result{fp, r, err}
			}
		})
	}
	go func() {
		for fp := range keys {
			work <- fp
		}
		close(work)
		wg.Wait()
		close(results)
	}()
	records := make(map[Fingerprint]*record, len(keys))
	var problems []Problem
	for res := range results {
		if res.err != nil {
			problems = append(problems, Problem{s.KeyPath(res.fp), res.err})
		} else {
			records[res.fp] = res.r
		}
	}
	return records, problems
}

// load reads a key and its metadata, reusing what old holds of a file that
// did not change.
func (s *Store) load(fp Fingerprint, old *record, hasMeta bool) (*record, error) {
	if !hasMeta {
		return nil, fmt.Errorf("no metadata file %s%s: add the key again (btnsctl key add)", fp.Hex(), metaSuffix)
	}
	var oldKey, oldMeta stamp
	if old != nil {
		oldKey, oldMeta = old.key, old.meta
	}
	kb, ks, kSame, err := readStamped(s.KeyPath(fp), oldKey)
	if err != nil {
		return nil, err
	}
	mb, ms, mSame, err := readStamped(s.metaPath(fp), oldMeta)
	if err != nil {
		return nil, err
	}
	// Metadata anyone may write could be changed to trust a key: refuse it.
	// (A key file's content is checked against its name, its metadata's
	// cannot be.)
	if ms.perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s%s is writable by group or others (mode %04o): chmod go-w it", fp.Hex(), metaSuffix, ms.perm())
	}
	if kSame && mSame {
		return old, nil
	}
	r := &record{key: ks, meta: ms}
	if kSame {
		r.entry.Key = old.entry.Key
	} else if r.entry.Key, err = decodeKey(fp, kb); err != nil {
		return nil, err
	}
	if mSame {
		r.entry.Meta = old.entry.Meta
	} else if r.entry.Meta, err = decodeMeta(fp, mb); err != nil {
		return nil, err
	}
	return r, nil
}

// readKey reads a key file and checks that it holds the key its name says.
func (s *Store) readKey(fp Fingerprint) (*PublicKey, error) {
	b, _, _, err := readStamped(s.KeyPath(fp), stamp{})
	if err != nil {
		return nil, err
	}
	return decodeKey(fp, b)
}

func decodeKey(fp Fingerprint, b []byte) (*PublicKey, error) {
	k, err := ParsePublicKey(b)
	if err != nil {
		return nil, err
	}
	if k.Fingerprint != fp {
		return nil, fmt.Errorf("holds key %s, not the key its name says", k.Fingerprint)
	}
	return k, nil
}

// metaFile is the on-disk form of Meta: the fingerprint and keyid are
// repeated so that a metadata file copied under the wrong name is caught,
// and so that a person reading it knows which key it is about.
type metaFile struct {
	Version     int         `json:"version"`
	Fingerprint Fingerprint `json:"fingerprint"`
	KeyID       KeyID       `json:"keyid"`
	Meta
}

func (s *Store) readMeta(fp Fingerprint) (Meta, error) {
	b, _, _, err := readStamped(s.metaPath(fp), stamp{})
	if err != nil {
		return Meta{}, err
	}
	return decodeMeta(fp, b)
}

func decodeMeta(fp Fingerprint, b []byte) (Meta, error) {
	var mf metaFile
	if err := json.Unmarshal(b, &mf); err != nil {
		return Meta{}, fmt.Errorf("corrupt metadata %s%s: %v", fp.Hex(), metaSuffix, err)
	}
	switch {
	case mf.Version < 1:
		return Meta{}, fmt.Errorf("metadata %s%s has no version", fp.Hex(), metaSuffix)
	case mf.Version > metaVersion:
		return Meta{}, fmt.Errorf("metadata %s%s is version %d, written by a newer btnsd (this one reads %d)", fp.Hex(), metaSuffix, mf.Version, metaVersion)
	case mf.Fingerprint != fp:
		return Meta{}, fmt.Errorf("metadata %s%s is about another key, %s", fp.Hex(), metaSuffix, mf.Fingerprint)
	}
	return mf.Meta, nil
}

func encodeMeta(k *PublicKey, m Meta) []byte {
	b, err := json.MarshalIndent(metaFile{metaVersion, k.Fingerprint, k.KeyID, m}, "", "  ")
	if err != nil {
		panic("fingerprints: encoding metadata: " + err.Error()) // only plain fields
	}
	return append(b, '\n')
}

// checkDir reports a key directory that others than its owner may write,
// or (when running as root) one that root does not own: whoever can write
// it can make btnsd trust a key.
func (s *Store) checkDir() []Problem {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return []Problem{{s.dir, err}}
	}
	var ps []Problem
	if fi.Mode().Perm()&0o022 != 0 {
		ps = append(ps, Problem{s.dir, fmt.Errorf("writable by group or others (mode %04o): chmod go-w it", fi.Mode().Perm())})
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != 0 {
		ps = append(ps, Problem{s.dir, fmt.Errorf("owned by uid %d, not root", st.Uid)})
	}
	return ps
}

// swap installs a new index.
func (s *Store) swap(records map[Fingerprint]*record, problems []Problem) {
	byKeyID := make(map[KeyID]Fingerprint, len(records))
	byName := map[string][]Fingerprint{}
	byHex := make([]indexed, 0, len(records))
	byB64 := make([]indexed, 0, len(records))
	for fp, r := range records {
		byKeyID[r.entry.Key.KeyID] = fp
		if r.entry.Name != "" {
			byName[r.entry.Name] = append(byName[r.entry.Name], fp)
		}
		byHex = append(byHex, indexed{fp.Hex(), fp})
		byB64 = append(byB64, indexed{b64Text(fp), fp})
	}
	slices.SortFunc(byHex, compareIndexed)
	slices.SortFunc(byB64, compareIndexed)
	s.mu.Lock()
	s.records, s.byKeyID, s.byName, s.byHex, s.byB64, s.problems = records, byKeyID, byName, byHex, byB64, problems
	s.mu.Unlock()
}

// Add puts a key in the store with its metadata. Added is set to now if
// zero. A key already in the store is left alone and the error wraps
// ErrExists; a key file left without metadata (by hand, or by a crash) is
// replaced.
func (s *Store) Add(k *PublicKey, m Meta) (Entry, error) {
	es, err := s.add([]Entry{{Key: k, Meta: m}}, true)
	if err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

// AddMany adds several keys under one lock. It checks them all before it
// writes any: if one is already in the store (ErrExists), twice in the
// list, or has bad metadata, nothing is written. (An I/O error halfway
// through the renames can leave part of the batch; the next Reload sees
// it.) It flushes the file system once for the batch instead of twice per
// key, so it suits importing many keys.
func (s *Store) AddMany(entries []Entry) ([]Entry, error) {
	return s.add(entries, false)
}

func (s *Store) add(entries []Entry, syncEach bool) ([]Entry, error) {
	now := time.Now().UTC().Truncate(time.Second)
	out := make([]Entry, len(entries))
	seen := make(map[Fingerprint]bool, len(entries))
	for i, e := range entries {
		if err := e.Meta.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Key.Fingerprint, err)
		}
		if seen[e.Key.Fingerprint] {
			return nil, fmt.Errorf("%w: %s is given twice", ErrExists, e.Key.Fingerprint)
		}
		seen[e.Key.Fingerprint] = true
		if e.Added.IsZero() {
			e.Added = now
		}
		out[i] = e
	}
	err := s.write(func() error {
		for _, e := range out {
			fp := e.Key.Fingerprint
			if _, err := os.Stat(s.metaPath(fp)); err == nil {
				if existing, err := s.readMeta(fp); err == nil && existing.Name != "" {
					return fmt.Errorf("%w: %s (%q)", ErrExists, fp, existing.Name)
				}
				return fmt.Errorf("%w: %s", ErrExists, fp)
			}
		}
		var pending []pendingFile
		committed := 0
		defer func() {
			for _, p := range pending[committed:] {
				p.abort()
			}
		}()
		for _, e := range out {
			fp := e.Key.Fingerprint
			meta, err := writeTemp(s.dir, fp.Hex()+metaSuffix, encodeMeta(e.Key, e.Meta), 0o644, syncEach)
			if err != nil {
				return err
			}
			pending = append(pending, meta)
			key, err := writeTemp(s.dir, fp.Hex(), e.Key.PEM(), 0o644, syncEach)
			if err != nil {
				return err
			}
			pending = append(pending, key)
		}
		if !syncEach {
			if err := syncFS(s.dir); err != nil {
				return err
			}
		}
		// Metadata before key: a reader without the lock that sees the key
		// file sees its metadata too.
		for _, p := range pending {
			if err := p.commit(); err != nil {
				return err
			}
			committed++
		}
		for _, e := range out {
			if err := s.indexWritten(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Update changes a key's metadata with fn, on the metadata as it is on
// disk now (not as this Store last loaded it). fn sets Changed and
// ChangedBy if it wants them recorded; SetTrust and SetScope do.
func (s *Store) Update(fp Fingerprint, fn func(*Meta) error) (Entry, error) {
	var e Entry
	err := s.write(func() error {
		k, err := s.readKey(fp)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, fp)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.KeyPath(fp), err)
		}
		m, err := s.readMeta(fp)
		if err != nil {
			return fmt.Errorf("%s: %w", s.metaPath(fp), err)
		}
		if err := fn(&m); err != nil {
			return err
		}
		if err := m.check(); err != nil {
			return err
		}
		if err := writeFileAtomic(s.dir, fp.Hex()+metaSuffix, encodeMeta(k, m), 0o644); err != nil {
			return err
		}
		e = Entry{Key: k, Meta: m}
		return s.indexWritten(e)
	})
	return e, err
}

// SetTrust marks a key trusted or untrusted, recording who did it.
func (s *Store) SetTrust(fp Fingerprint, t Trust, by Actor) (Entry, error) {
	return s.Update(fp, func(m *Meta) error {
		m.Trust, m.Changed, m.ChangedBy = t, time.Now().UTC().Truncate(time.Second), by
		return nil
	})
}

// SetScope sets the policies that may accept a key (nil: all of them).
func (s *Store) SetScope(fp Fingerprint, sc Scope, by Actor) (Entry, error) {
	return s.Update(fp, func(m *Meta) error {
		m.Scope, m.Changed, m.ChangedBy = sc, time.Now().UTC().Truncate(time.Second), by
		return nil
	})
}

// Remove deletes a key and its metadata from the store and returns what
// was there. The key file goes first: a key without metadata is never
// used, metadata without a key is ignored.
func (s *Store) Remove(fp Fingerprint) (Entry, error) {
	var e Entry
	err := s.write(func() error {
		k, kerr := s.readKey(fp)
		m, merr := s.readMeta(fp)
		if errors.Is(kerr, fs.ErrNotExist) && errors.Is(merr, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, fp)
		}
		if kerr == nil {
			e = Entry{Key: k, Meta: m}
		}
		for _, p := range []string{s.KeyPath(fp), s.metaPath(fp)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		s.mu.Lock()
		s.deleteLocked(fp)
		s.mu.Unlock()
		return nil
	})
	return e, err
}

// write runs fn under the directory's exclusive lock, then makes its
// renames durable.
func (s *Store) write(fn func() error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("creating key store: %w", err)
	}
	unlock, err := lockDir(s.dir, true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := fn(); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// indexWritten puts an entry just written into the memory index, with the
// stamps of its files so that the next Reload does not read them again.
func (s *Store) indexWritten(e Entry) error {
	fp := e.Key.Fingerprint
	ks, err := statStamp(s.KeyPath(fp))
	if err != nil {
		return err
	}
	ms, err := statStamp(s.metaPath(fp))
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(fp)
	s.records[fp] = &record{entry: e, key: ks, meta: ms}
	s.byKeyID[e.Key.KeyID] = fp
	if e.Name != "" {
		s.byName[e.Name] = append(s.byName[e.Name], fp)
	}
	s.byHex = insertSorted(s.byHex, indexed{fp.Hex(), fp})
	s.byB64 = insertSorted(s.byB64, indexed{b64Text(fp), fp})
	return nil
}

// deleteLocked takes fp out of the index, and forgets the problems of its
// files. The caller holds s.mu and s.wmu.
func (s *Store) deleteLocked(fp Fingerprint) {
	s.problems = slices.DeleteFunc(s.problems, func(p Problem) bool {
		return strings.HasPrefix(filepath.Base(p.Path), fp.Hex())
	})
	r, ok := s.records[fp]
	if !ok {
		return
	}
	delete(s.records, fp)
	delete(s.byKeyID, r.entry.Key.KeyID)
	if n := r.entry.Name; n != "" {
		s.byName[n] = slices.DeleteFunc(s.byName[n], func(f Fingerprint) bool { return f == fp })
		if len(s.byName[n]) == 0 {
			delete(s.byName, n)
		}
	}
	s.byHex = deleteSorted(s.byHex, fp.Hex())
	s.byB64 = deleteSorted(s.byB64, b64Text(fp))
}

func b64Text(fp Fingerprint) string { return strings.TrimPrefix(fp.String(), fingerprintPrefix) }

func compareIndexed(a, b indexed) int { return strings.Compare(a.text, b.text) }

func insertSorted(l []indexed, ix indexed) []indexed {
	i, _ := slices.BinarySearchFunc(l, ix, compareIndexed)
	return slices.Insert(l, i, ix)
}

func deleteSorted(l []indexed, text string) []indexed {
	i, ok := slices.BinarySearchFunc(l, indexed{text: text}, compareIndexed)
	if !ok {
		return l
	}
	return slices.Delete(l, i, i+1)
}

// check refuses metadata that could not be shown safely or written back.
func (m *Meta) check() error {
	for what, v := range map[string]string{"name": m.Name, "comment": m.Comment} {
		if len(v) > 256 {
			return fmt.Errorf("%s is longer than 256 bytes", what)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%s contains control characters", what)
		}
	}
	if _, err := NewScope(m.Scope); err != nil {
		return err
	}
	return nil
}

func (e Entry) clone() Entry {
	e.Scope = slices.Clone(e.Scope)
	return e
}

func (e Entry) equal(f Entry) bool {
	return e.Key.Fingerprint == f.Key.Fingerprint && bytes.Equal(encodeMeta(e.Key, e.Meta), encodeMeta(f.Key, f.Meta))
}
