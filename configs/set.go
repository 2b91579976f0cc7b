package configs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io/fs"
	"path"
	"strings"

	"github.com/btnsd/btnsd/vici"
)

// Options tune how policy files are turned into connections.
type Options struct {
	// Dirs are the folders for relative certs, cacerts and pubkeys; the
	// zero value is swanctl's layout beside each policy file.
	Dirs Dirs
}

// Conn is one connection of a policy file, ready for charon.
type Conn struct {
	Name string
	// File is the policy file the connection was loaded from (Pos.File
	// may name a file it includes).
	File string
	Pos  Pos
	// Body is the load-conn body, {Name: Body} being the message: what
	// swanctl would send, without the btns sections. For a connection
	// with Policy.Enabled false it is what charon should get; for a BTNS
	// connection it is the template btnsd expands.
	Body   *vici.Msg
	Policy Policy
	// Hash identifies Name, Body and Policy: a connection whose Hash did
	// not change need not be sent again.
	Hash [32]byte
}

// Msg returns the load-conn message, {Name: Body}.
func (c *Conn) Msg() *vici.Msg { return Message{Name: c.Name, Body: c.Body}.Msg() }

// File is the result of loading one policy file: its connections, or the
// reasons it could not be loaded. A file with any error has no
// connections: the daemon keeps running the last good version of it.
type File struct {
	Name string
	// Hash covers the name and content of every file read for this one:
	// the file, its includes and the certificate and key files it names.
	Hash  [32]byte
	Conns []*Conn
	// Err is nil, an *Error or an ErrorList.
	Err error
}

// Conn returns the connection name of f, or nil.
func (f *File) Conn(name string) *Conn {
	for _, c := range f.Conns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// unsupported top-level sections: swanctl loads them with other commands,
// which btnsd does not do (yet). Ignoring them would drop a PSK silently.
var unsupported = []string{"secrets", "pools", "authorities"}

// LoadFile parses the policy file name of fsys and maps its connections:
// ParseFile, then Swanctl, then the btns settings of each connection are
// checked and removed from its body. Problems are reported in File.Err;
// all of them are collected (after the first syntax error parsing stops).
func LoadFile(fsys fs.FS, name string, opt Options) *File {
	f := &File{Name: name}
	h := sha256.New()
	onRead := func(n string, data []byte) {
		writeString(h, n)
		writeString(h, string(data))
	}
	defer func() { h.Sum(f.Hash[:0]) }()

	root, perr := parseFile(fsys, name, onRead)
	if perr != nil {
		f.Err = perr
		return f
	}
	var errs ErrorList
	for _, s := range root.Sections {
		for _, u := range unsupported {
			if s.Name == u {
				errs = append(errs, errorf(s.Pos, "%s sections are not supported in btnsd policy files; load them with swanctl", u))
			}
		}
	}
	m := &mapper{fsys: fsys, v: &view{root: root}, dirs: opt.Dirs.resolve(root.Pos.File), onRead: onRead}
	msgs := m.messages()
	var conns []*Conn
	for _, msg := range msgs {
		if m.over[msg.Name] || m.v.err != nil {
			continue // already an error; the tree may be endless
		}
		c := &Conn{Name: msg.Name, File: name, Pos: msg.Pos}
		c.Policy = m.policy(msg.Name, msg.Pos, msg.Body)
		if c.Pos.File == "" {
			c.Pos = root.Pos
		}
		c.Body = strip(msg.Body)
		c.Hash = c.hash()
		conns = append(conns, c)
	}
	m.done()
	errs = append(errs, m.errs...)
	if len(errs) > 0 {
		f.Err = errs.Err()
		return f
	}
	f.Conns = conns
	return f
}

func (c *Conn) hash() [32]byte {
	h := sha256.New()
	writeString(h, c.Name)
	hashMsg(h, c.Body)
	pj, _ := json.Marshal(c.Policy)
	writeString(h, string(pj))
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func writeString(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// hashMsg writes an unambiguous encoding of m (binary values included).
func hashMsg(h hash.Hash, m *vici.Msg) {
	for _, k := range m.Keys() {
		switch v := m.Get(k).(type) {
		case string:
			h.Write([]byte{'s'})
			writeString(h, k)
			writeString(h, v)
		case []string:
			h.Write([]byte{'l'})
			writeString(h, k)
			var n [8]byte
			binary.BigEndian.PutUint64(n[:], uint64(len(v)))
			h.Write(n[:])
			for _, it := range v {
				writeString(h, it)
			}
		case *vici.Msg:
			h.Write([]byte{'{'})
			writeString(h, k)
			hashMsg(h, v)
			h.Write([]byte{'}'})
		}
	}
}

// Set is a whole policy directory: every file's result, and the
// connections of the good files, whose names are unique.
//
// A Set, its Files and Conns (bodies included) must not be modified once
// built; it is then safe for concurrent reads.
type Set struct {
	// Files holds every policy file, good or bad, sorted by name.
	Files []*File
	// Conns holds the connections of the good files, in file order.
	Conns  []*Conn
	byName map[string]*Conn
}

// Conn returns the connection name, or nil.
func (s *Set) Conn(name string) *Conn {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// File returns the result for the policy file name, or nil.
func (s *Set) File(name string) *File {
	if s == nil {
		return nil
	}
	for _, f := range s.Files {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// NewSet combines per-file results. A connection name defined in more
// than one good file is an error in each of those files (wrapping
// ErrDuplicate and naming the other definitions), and all of them are
// left out: which one is right cannot be decided from the files, and a
// daemon that keeps last good versions keeps the one that ran before. The
// *File values given are not modified; files that become bad are copied.
//
// The daemon calls NewSet again on the mix of current files and last good
// versions it decides to run, since that mix can hold duplicates that no
// single load had. The errors returned are the duplicates found.
func NewSet(files []*File) (*Set, []error) {
	type def struct {
		file *File
		conn *Conn
	}
	defs := map[string][]def{}
	for _, f := range files {
		if f.Err != nil {
			continue
		}
		for _, c := range f.Conns {
			defs[c.Name] = append(defs[c.Name], def{f, c})
		}
	}
	bad := map[*File]ErrorList{}
	var errs []error
	for _, f := range files {
		if f.Err != nil {
			continue
		}
		for _, c := range f.Conns {
			ds := defs[c.Name]
			if len(ds) < 2 {
				continue
			}
			var others []string
			for _, d := range ds {
				if d.file != f {
					others = append(others, d.conn.Pos.String())
				}
			}
			e := errorf(c.Pos, "connection %q is also defined at %s; connection names must be unique across policy files", c.Name, strings.Join(others, ", "))
			e.Err = ErrDuplicate
			bad[f] = append(bad[f], e)
			errs = append(errs, e)
		}
	}
	s := &Set{byName: map[string]*Conn{}}
	for _, f := range files {
		if el, ok := bad[f]; ok {
			g := *f
			g.Conns = nil
			g.Err = el.Err()
			s.Files = append(s.Files, &g)
			continue
		}
		s.Files = append(s.Files, f)
		if f.Err != nil {
			continue
		}
		for _, c := range f.Conns {
			s.Conns = append(s.Conns, c)
			s.byName[c.Name] = c
		}
	}
	return s, errs
}

// LoadDir loads every policy file of the directory dir in fsys: files
// named *.conf (not starting with '.'; symbolic links followed, as a
// Kubernetes ConfigMap needs), each loaded on its own with LoadFile in
// sorted order, then combined with NewSet. The errors are those of every
// file, each an *Error naming its file; a bad file does not stop the
// others from loading.
//
// A file included by a policy file should not itself end in .conf in dir,
// or it is loaded twice and its connections are duplicates.
func LoadDir(fsys fs.FS, dir string, opt Options) (*Set, []error) {
	dir = fsPath(dir)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		e := wrapf(Pos{File: dir}, err, "cannot read policy directory: %v", unwrapPathError(err))
		return &Set{byName: map[string]*Conn{}}, []error{e}
	}
	var files []*File
	for _, ent := range entries {
		n := ent.Name()
		if !strings.HasSuffix(n, ".conf") || strings.HasPrefix(n, ".") {
			continue
		}
		name := path.Join(dir, n)
		st, err := fs.Stat(fsys, name)
		if err != nil {
			files = append(files, &File{Name: name, Err: wrapf(Pos{File: name}, err, "cannot read policy file: %v", unwrapPathError(err))})
			continue
		}
		if st.IsDir() {
			continue
		}
		files = append(files, LoadFile(fsys, name, opt))
	}
	var errs []error
	for _, f := range files {
		errs = append(errs, Errors(f.Err)...)
	}
	s, dups := NewSet(files)
	return s, append(errs, dups...)
}

// Diff returns what changes from old to cur: the connections of cur that
// are new or whose Hash differs (to load, in cur's order) and the names of
// the connections of old that cur no longer has (to unload). old may be
// nil.
func Diff(old, cur *Set) (load []*Conn, unload []string) {
	for _, c := range cur.Conns {
		if o := old.Conn(c.Name); o == nil || o.Hash != c.Hash {
			load = append(load, c)
		}
	}
	if old != nil {
		for _, c := range old.Conns {
			if cur.Conn(c.Name) == nil {
				unload = append(unload, c.Name)
			}
		}
	}
	return load, unload
}

// String returns a short description for logs.
func (c *Conn) String() string {
	kind := "swanctl"
	if c.Policy.Enabled {
		kind = "btns"
	}
	return fmt.Sprintf("%s (%s, %s)", c.Name, kind, c.Pos)
}
