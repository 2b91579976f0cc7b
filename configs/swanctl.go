package configs

import (
	"io/fs"
	"path"
	"strings"

	"github.com/btnsd/btnsd/vici"
)

// Dirs are the folders swanctl reads relative file names from, for the
// file list keys (load_conns.c add_file_list_key): certs from X509, cacerts
// from X509CA, pubkeys from Pubkey. They are paths in the fs.FS the policy
// is read from (slash-separated; a leading '/' is dropped, as for every
// absolute path, so that with os.DirFS("/") they are real absolute paths).
//
// An empty field means swanctl's layout next to the policy file being
// loaded: <dir of the file>/x509, <dir>/x509ca, <dir>/pubkey, which is what
// "swanctl --load-conns --file <file>" uses (swanctl.c load_swanctl_conf
// sets swanctl_dir to the file's directory). Relative names are always
// relative to these folders, never to the file that names them, even when
// that file was included from elsewhere.
type Dirs struct {
	X509   string
	X509CA string
	Pubkey string
}

func (d Dirs) resolve(file string) Dirs {
	base := path.Dir(file)
	fix := func(p, def string) string {
		if p == "" {
			return path.Join(base, def)
		}
		return fsPath(p)
	}
	return Dirs{
		X509:   fix(d.X509, "x509"),
		X509CA: fix(d.X509CA, "x509ca"),
		Pubkey: fix(d.Pubkey, "pubkey"),
	}
}

// fsPath turns an absolute or relative slash path into an fs.FS name.
func fsPath(p string) string {
	p = path.Clean(strings.TrimLeft(p, "/"))
	if p == "" || p == "/" {
		return "."
	}
	return p
}

// Message is one load-conn request as swanctl builds it: the message is
// {Name: Body}.
type Message struct {
	Name string
	Body *vici.Msg
	Pos  Pos // the connection's section
}

// Msg returns the whole load-conn message, {Name: Body}.
func (m Message) Msg() *vici.Msg {
	msg := vici.NewMsg()
	msg.Set(m.Name, m.Body)
	return msg
}

// isListKey is load_conns.c is_list_key: values of these keys, in any
// section and in any letter case (strcaseeq), are sent as lists split at
// commas.
func isListKey(key string) bool {
	switch strings.ToLower(key) {
	case "local_addrs", "remote_addrs", "proposals", "esp_proposals",
		"ah_proposals", "local_ts", "remote_ts", "vips", "pools", "groups",
		"cert_policy":
		return true
	}
	return false
}

// isFileListKey is load_conns.c is_file_list_key: values of these keys are
// lists of files whose contents are sent (or inline 0x/0s blobs).
func isFileListKey(key string) bool {
	switch strings.ToLower(key) {
	case "certs", "cacerts", "pubkeys":
		return true
	}
	return false
}

// splitList is enumerator_create_token(value, ",", " ") from
// libstrongswan's enumerator.c, as add_list_key uses it: tokens separated
// by commas, spaces (not tabs) trimmed on both ends, empty tokens dropped,
// and a token starting with a single or double quote running to the next
// such quote (commas included, nothing trimmed). An empty value gives an
// empty list, which swanctl sends as an empty list.
func splitList(s string) []string {
	out := []string{}
	pos := 0
	for {
		// trim leading characters and separators
		for pos < len(s) && (s[pos] == ' ' || s[pos] == ',') {
			pos++
		}
		if pos < len(s) && (s[pos] == '"' || s[pos] == '\'') {
			// read quoted token; unterminated: an ordinary token
			if j := strings.IndexByte(s[pos+1:], s[pos]); j >= 0 {
				out = append(out, s[pos+1:pos+1+j])
				pos += j + 2
				continue
			}
		}
		j := strings.IndexByte(s[pos:], ',')
		if j < 0 {
			if tok := strings.TrimRight(s[pos:], " "); tok != "" {
				out = append(out, tok)
			}
			return out
		}
		out = append(out, strings.TrimRight(s[pos:pos+j], " "))
		pos += j + 1
	}
}

func hex2bin(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

// chunkFromHex is libstrongswan's chunk_from_hex: an optional 0x prefix,
// optional ':' separators, any other character read as 0, an odd number
// of digits filled from the right. Where the C code would read before the
// start of a malformed input, this reads zero.
func chunkFromHex(h string) []byte {
	if len(h) > 1 && h[1] == 'x' && h[0] == '0' {
		h = h[2:]
	}
	n := len(h) - strings.Count(h, ":")
	odd := n%2 == 1
	if odd {
		n++
	}
	n /= 2
	buf := make([]byte, n)
	p := len(h)
	prev := func() byte {
		p--
		if p < 0 {
			return 0
		}
		return h[p]
	}
	for i := n - 1; i >= 0; i-- {
		c := prev()
		if c == ':' {
			c = prev()
		}
		buf[i] = hex2bin(c)
		if i > 0 || !odd {
			buf[i] |= hex2bin(prev()) << 4
		}
	}
	return buf
}

func b642bin(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return 26 + c - 'a'
	case c >= '0' && c <= '9':
		return 52 + c - '0'
	case c == '+' || c == '-':
		return 62
	case c == '/' || c == '_':
		return 63
	case c == '=':
		return 0
	}
	return 0xff // -1 stored in a u_char
}

// chunkFromBase64 is libstrongswan's chunk_from_base64: blocks of four
// characters (a trailing partial block is ignored), '=' shortening the
// output, URL-safe digits accepted, no validation.
func chunkFromBase64(s string) []byte {
	n := len(s) / 4 * 3
	buf := make([]byte, n)
	outlen := 0
	p := 0
	for i := 0; i < n; i += 3 {
		outlen += 3
		var b [4]byte
		for j := range b {
			if s[p] == '=' && outlen > 0 {
				outlen--
			}
			b[j] = b642bin(s[p])
			p++
		}
		buf[i] = b[0]<<2 | b[1]>>4
		buf[i+1] = b[1]<<4 | b[2]>>2
		buf[i+2] = b[2]<<6 | b[3]
	}
	return buf[:outlen]
}

// VICI limits (libvici's builder and charon's vici_socket.h).
const (
	maxViciName  = 255        // one length byte for names
	maxViciValue = 0xffff     // two length bytes for values
	maxViciMsg   = 512 * 1024 // VICI_MESSAGE_SIZE_MAX
)

// swanctl's fixed buffers (load_conns.c, settings.c): a longer path is
// truncated or not found, and the request is silently wrong; btnsd rejects
// it instead.
const (
	maxPathComponent = 127 // settings.c find_sections_buffered buf[128]
	maxSectionPath   = 255 // load_conns.c add_sections buf[256]
)

type mapper struct {
	fsys   fs.FS
	v      *view
	dirs   Dirs
	onRead func(string, []byte)
	errs   ErrorList
	// budget is what is left of VICI's message size for the connection
	// being mapped; references can make a small file expand into a huge
	// tree, which mapping stops building once over the limit.
	budget int
	// over holds the connections whose message went over the limit.
	over map[string]bool
}

// maxErrors bounds the errors reported for one file: references can
// repeat one mistake endlessly.
const maxErrors = 50

func (m *mapper) errorf(p Pos, format string, args ...any) {
	m.add(errorf(p, format, args...))
}

func (m *mapper) add(e *Error) {
	switch {
	case len(m.errs) < maxErrors:
		m.errs = append(m.errs, e)
	case len(m.errs) == maxErrors:
		m.errs = append(m.errs, errorf(e.Pos(), "too many errors"))
	}
}

// Swanctl returns the load-conn requests "swanctl --load-conns --file F"
// sends for a tree parsed from F, in its order, reproducing
// src/swanctl/commands/load_conns.c (5.9.8):
//
//   - one request per section of "connections" (references followed, as
//     settings.c's enumerators do), named after it;
//   - in every section, first its settings in order, then its subsections
//     in order, recursively (load_conn, add_key_values, add_sections), so
//     local/remote rounds (local, local-1, remote-2, ...) and children keep
//     the order of the file;
//   - settings without a value ("key =") are omitted;
//   - is_list_key keys are split at commas into lists;
//   - certs, cacerts and pubkeys are lists of file contents, read from dirs
//     for relative names (see Dirs), or 0x<hex> / 0s<base64> inline data;
//   - everything else is sent as the string it is in the file.
//
// Nothing is stripped: a "btns" section is sent as swanctl would send it
// (LoadFile removes those). Cases where swanctl would build a broken
// request (a name longer than its buffers, a '%' in a section name, a key
// and a section of the same name, a value or message over the VICI
// limits, an unreadable file) are errors. Swanctl is what an equality test
// against real swanctl should call.
func Swanctl(fsys fs.FS, root *Section, dirs Dirs) ([]Message, error) {
	if root == nil {
		return nil, errorf(Pos{}, "no settings tree to map")
	}
	m := &mapper{fsys: fsys, v: &view{root: root}, dirs: dirs.resolve(root.Pos.File)}
	msgs := m.messages()
	m.done()
	return msgs, m.errs.Err()
}

// done reports a reference loop met by any lookup.
func (m *mapper) done() {
	if m.v.err != nil {
		m.add(m.v.err)
		m.v.err = nil
	}
}

// SwanctlFile parses name in fsys and maps it with Swanctl: the requests
// of "swanctl --load-conns --file name" (give Dirs{} for swanctl's layout
// beside the file). With os.DirFS("/") and a name without its leading
// '/', it reads the real file system as swanctl does.
func SwanctlFile(fsys fs.FS, name string, dirs Dirs) ([]Message, error) {
	root, err := ParseFile(fsys, name)
	if err != nil {
		return nil, err
	}
	return Swanctl(fsys, root, dirs)
}

func (m *mapper) messages() []Message {
	if errs := m.v.checkRefs(); len(errs) > 0 {
		for _, e := range errs {
			m.add(e)
		}
		return nil
	}
	var msgs []Message
	for _, c := range m.v.subsections([]string{"connections"}) {
		p := []string{"connections", c.Name}
		if !m.checkName(c) {
			continue
		}
		// the packet: type, command name, section start and end
		m.budget = maxViciMsg - (1 + 1 + len("load-conn") + 1 + 1 + len(c.Name) + 1)
		body := m.section(p, c.Pos)
		msgs = append(msgs, Message{Name: c.Name, Body: body, Pos: c.Pos})
		if m.budget < 0 {
			if m.over == nil {
				m.over = map[string]bool{}
			}
			m.over[c.Name] = true
			m.errorf(c.Pos, "connection %q makes a load-conn message larger than VICI's limit of %d bytes (too many or too large certificates, or references that expand without end?)", c.Name, maxViciMsg)
		}
	}
	return msgs
}

func (m *mapper) checkName(s *Section) bool {
	switch {
	case strings.Contains(s.Name, "%"):
		// settings.c print_key reads the path as a printf format
		m.errorf(s.Pos, "section name %q contains '%%', which swanctl cannot look up", s.Name)
	case len(s.Name) > maxPathComponent:
		m.errorf(s.Pos, "section name %.20q... is longer than %d bytes, which swanctl cannot look up", s.Name, maxPathComponent)
	default:
		return true
	}
	return false
}

// section maps one section (add_key_values, then add_sections).
func (m *mapper) section(p []string, at Pos) *vici.Msg {
	msg := vici.NewMsg()
	if m.v.err != nil || m.budget < 0 {
		return msg
	}
	for _, kv := range m.v.keys(p) {
		if len(kv.Key) > maxViciName {
			m.errorf(kv.Pos, "key %.20q... is longer than VICI's limit of %d bytes", kv.Key, maxViciName)
			continue
		}
		switch {
		case isListKey(kv.Key):
			items := splitList(kv.Value)
			for _, it := range items {
				if len(it) > maxViciValue {
					m.errorf(kv.ValuePos, "an element of %s is longer than VICI's limit of %d bytes", kv.Key, maxViciValue)
				}
			}
			msg.Set(kv.Key, items)
		case isFileListKey(kv.Key):
			msg.Set(kv.Key, m.fileList(kv))
		default:
			if len(kv.Value) > maxViciValue {
				m.errorf(kv.ValuePos, "value of %s is %d bytes, more than VICI's limit of %d", kv.Key, len(kv.Value), maxViciValue)
			}
			msg.Set(kv.Key, kv.Value)
		}
		if m.budget -= elemSize(kv.Key, msg.Get(kv.Key)); m.budget < 0 {
			return msg
		}
	}
	for _, sub := range m.v.subsections(p) {
		if !m.checkName(sub) {
			continue
		}
		sp := append(p[:len(p):len(p)], sub.Name)
		if len(strings.Join(sp, ".")) > maxSectionPath {
			m.errorf(sub.Pos, "section path %s is longer than the %d bytes swanctl handles", strings.Join(sp, "."), maxSectionPath)
			continue
		}
		if msg.Get(sub.Name) != nil {
			m.errorf(sub.Pos, "section %q has the name of a key of %s; a VICI message cannot hold both", sub.Name, strings.Join(p, "."))
			continue
		}
		m.budget -= 1 + 1 + len(sub.Name) + 1 // section start and end
		msg.Set(sub.Name, m.section(sp, sub.Pos))
		if m.budget < 0 {
			return msg
		}
	}
	return msg
}

// fileList is add_file_list_key.
func (m *mapper) fileList(kv *KeyValue) []string {
	items := []string{}
	for _, tok := range splitList(kv.Value) {
		lower := strings.ToLower(tok)
		switch {
		case strings.HasPrefix(lower, "0x"):
			items = append(items, string(chunkFromHex(tok[2:])))
			continue
		case strings.HasPrefix(lower, "0s"):
			items = append(items, string(chunkFromBase64(tok[2:])))
			continue
		}
		name := tok
		if !strings.HasPrefix(tok, "/") {
			// the folder is chosen with streq (case-sensitive): "CERTS"
			// is a file list key, but swanctl would open its relative
			// names from its working directory, which btnsd has not.
			var dir string
			switch kv.Key {
			case "certs":
				dir = m.dirs.X509
			case "cacerts":
				dir = m.dirs.X509CA
			case "pubkeys":
				dir = m.dirs.Pubkey
			default:
				m.errorf(kv.Pos, "relative file %q in %s: swanctl resolves it against its working directory only when the key is not lowercase; write the key as %s", tok, kv.Key, strings.ToLower(kv.Key))
				return items
			}
			name = path.Join(dir, tok)
		} else {
			name = fsPath(tok)
		}
		if !fs.ValidPath(name) {
			m.errorf(kv.ValuePos, "loading %s certificate %q failed: path %s is outside the policy file system", kv.Key, tok, name)
			return items
		}
		data, err := fs.ReadFile(m.fsys, name)
		if err != nil {
			m.add(wrapf(kv.ValuePos, err, "loading %s certificate %q failed: %v", kv.Key, name, unwrapPathError(err)))
			return items // swanctl stops at the first failure
		}
		if m.onRead != nil {
			m.onRead(name, data)
		}
		if len(data) > maxViciValue {
			m.errorf(kv.ValuePos, "%s file %s is %d bytes, more than VICI's limit of %d", kv.Key, name, len(data), maxViciValue)
		}
		items = append(items, string(data))
	}
	return items
}

// elemSize returns the encoded size of a VICI message element.
func elemSize(k string, v any) int {
	n := 0
	switch v := v.(type) {
	case string:
		n += 1 + 1 + len(k) + 2 + len(v)
	case []string:
		n += 1 + 1 + len(k) + 1
		for _, it := range v {
			n += 1 + 2 + len(it)
		}
	case *vici.Msg:
		n += 1 + 1 + len(k) + 1
		for _, k := range v.Keys() {
			n += elemSize(k, v.Get(k))
		}
	}
	return n
}
