package configs

import (
	"io/fs"
	"slices"
	"strings"
)

// Section is a section of a parsed settings file, as strongSwan's
// settings_types.c keeps it: keys and subsections each in the order they
// first appeared, references in the order given. The root section of a
// file has an empty Name.
//
// Merging follows settings_section_add/extend: a section defined twice
// (in one file or across includes) is one section with the keys and
// subsections of both; a key assigned twice keeps its first place and its
// last value.
type Section struct {
	Name     string
	Pos      Pos // the name at the first definition
	Refs     []Ref
	Keys     []*KeyValue
	Sections []*Section
}

// Ref is a reference in a section header, "name : ref1, ref2 {": the
// absolute, dot-separated path of a section whose keys and subsections the
// section inherits (strongswan.conf(5), REFERENCING OTHER SECTIONS).
type Ref struct {
	Name string
	Pos  Pos
}

// KeyValue is a "key = value" setting.
type KeyValue struct {
	Key string
	// Value is the value as strongSwan's parser builds it: unquoted words
	// joined by single spaces, quoted strings kept as they are with their
	// escapes resolved.
	Value string
	// Null is set for "key =" with nothing after '=': strongSwan stores
	// a NULL value, which hides the key (also one inherited through a
	// reference) so that swanctl does not send it.
	Null     bool
	Pos      Pos // the key, at its last assignment
	ValuePos Pos // the first character of the value
}

// Sub returns the subsection name of s, or nil.
func (s *Section) Sub(name string) *Section {
	if s == nil {
		return nil
	}
	for _, c := range s.Sections {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Value returns the setting key of s, or nil.
func (s *Section) Value(key string) *KeyValue {
	if s == nil {
		return nil
	}
	for _, kv := range s.Keys {
		if kv.Key == key {
			return kv
		}
	}
	return nil
}

// Lookup returns the section at a dot-separated path below s, or nil. It
// does not follow references.
func (s *Section) Lookup(path string) *Section {
	for _, c := range strings.Split(path, ".") {
		s = s.Sub(c)
	}
	return s
}

func (s *Section) addKey(kv *KeyValue) {
	if old := s.Value(kv.Key); old != nil {
		// settings_kv_add: the value moves to the existing pair
		old.Value, old.Null, old.Pos, old.ValuePos = kv.Value, kv.Null, kv.Pos, kv.ValuePos
		return
	}
	s.Keys = append(s.Keys, kv)
}

func (s *Section) addRef(r Ref) {
	// settings_reference_add: a name already referenced is not added again
	if slices.ContainsFunc(s.Refs, func(o Ref) bool { return o.Name == r.Name }) {
		return
	}
	s.Refs = append(s.Refs, r)
}

// addSection adds sec to s, extending an existing section of that name.
func (s *Section) addSection(sec *Section) {
	old := s.Sub(sec.Name)
	if old == nil {
		s.Sections = append(s.Sections, sec)
		return
	}
	for _, c := range sec.Sections {
		old.addSection(c)
	}
	for _, kv := range sec.Keys {
		old.addKey(kv)
	}
	for _, r := range sec.Refs {
		old.addRef(r)
	}
}

// maxNesting bounds section nesting (swanctl.conf needs five levels).
const maxNesting = 64

// ParseFile parses the settings file name in fsys, with its includes, into
// a tree, following the grammar of strongSwan's settings_parser.y and
// settings_lexer.l (5.9.8), the syntax of strongswan.conf(5) and
// swanctl.conf(5):
//
//	name {             # a section; "name\n{" is the same
//	    key = value    # a value runs to the end of the line, '#' or '}'
//	    key = a  b     # words are joined by one space: "a b"
//	    key = "a  b"   # quoted: kept as is; \n \t \r \" \\ and a
//	                   # backslash before a newline (continuation)
//	    key =          # no value: hides the key (and an inherited one)
//	}
//	child : name, other.sub {  # references: inherit from absolute paths
//	}
//	include conf.d/*.conf      # relative to this file's directory
//
// Names may hold any character but . , : { } = " # and blanks. A section
// or key given twice is merged, as in strongSwan. Includes are expanded
// where they stand (inside a section, the included settings go into it);
// a pattern with glob characters may match nothing, a plain name must
// exist, matches are read in sorted order, hidden files are not matched,
// an include loop is an error. Absolute include paths are looked up from
// the root of fsys (give os.DirFS("/") to read the real file system).
//
// The error, if any, is an *Error with the position of the first problem;
// parsing stops there, as strongSwan's does.
func ParseFile(fsys fs.FS, name string) (*Section, error) {
	root, err := parseFile(fsys, name, nil)
	if err != nil {
		return nil, err
	}
	return root, nil
}

func parseFile(fsys fs.FS, name string, onRead func(string, []byte)) (*Section, *Error) {
	name = strings.TrimLeft(name, "/")
	if !fs.ValidPath(name) || name == "." {
		return nil, errorf(Pos{File: name}, "invalid file name %q for an fs.FS", name)
	}
	lex := newLexer(fsys, onRead)
	if err := lex.open(name, Pos{}); err != nil {
		return nil, err
	}
	p := parser{lex: lex}
	return p.parse(name)
}

type parser struct {
	lex *lexer
}

func (p *parser) parse(name string) (*Section, *Error) {
	root := &Section{Pos: Pos{File: name}}
	stack := []*Section{root}
	for {
		t := p.lex.next()
		switch t.kind {
		case tError:
			return nil, t.err
		case tNewline:
			// statements: statements NEWLINE
		case tEOF:
			if len(stack) > 1 {
				open := stack[len(stack)-1]
				return nil, errorf(t.pos, "unexpected end of file: section %q opened at %s is not closed, expected '}'", open.Name, open.Pos)
			}
			return root, nil
		case tRBrace:
			if len(stack) == 1 {
				return nil, errorf(t.pos, "unexpected '}': no section is open here")
			}
			sec := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			stack[len(stack)-1].addSection(sec)
		case tName:
			sec, kv, err := p.statement(t)
			if err != nil {
				return nil, err
			}
			if kv != nil {
				stack[len(stack)-1].addKey(kv)
				continue
			}
			if len(stack) > maxNesting {
				return nil, errorf(t.pos, "sections nested more than %d deep", maxNesting)
			}
			stack = append(stack, sec)
		case tStringError:
			return nil, errorf(t.pos, "%s", t.text)
		case tDot, tComma, tColon:
			return nil, errorf(t.pos, "unexpected %s, expected a key or section name (names cannot contain '.', ',' or ':')", t.describe())
		default:
			return nil, errorf(t.pos, "unexpected %s, expected a key or section name", t.describe())
		}
	}
}

// statement parses what follows a name at the start of a statement: a
// section start (returned to be pushed) or a setting.
func (p *parser) statement(name token) (*Section, *KeyValue, *Error) {
	t := p.lex.next()
	switch t.kind {
	case tError:
		return nil, nil, t.err
	case tLBrace:
		return &Section{Name: name.text, Pos: name.pos}, nil, nil
	case tColon:
		sec := &Section{Name: name.text, Pos: name.pos}
		for {
			r := p.lex.next()
			switch r.kind {
			case tError:
				return nil, nil, r.err
			case tName:
				sec.addRef(Ref{Name: r.text, Pos: r.pos})
			default:
				return nil, nil, errorf(r.pos, "unexpected %s after ':' in the header of section %q, expected the name of a section to reference", r.describe(), name.text)
			}
			r = p.lex.next()
			switch r.kind {
			case tError:
				return nil, nil, r.err
			case tComma:
				continue
			case tLBrace:
				return sec, nil, nil
			default:
				return nil, nil, errorf(r.pos, "unexpected %s in the header of section %q, expected ',' and another reference, or '{'", r.describe(), name.text)
			}
		}
	case tEq:
		kv := &KeyValue{Key: name.text, Pos: name.pos}
		var parts []string
		for {
			v := p.lex.next()
			switch v.kind {
			case tError:
				return nil, nil, v.err
			case tName, tString:
				if len(parts) == 0 {
					kv.ValuePos = v.pos
				}
				parts = append(parts, v.text)
				continue
			case tNewline:
				if len(parts) == 0 {
					kv.Null = true
					kv.ValuePos = v.pos
				}
				kv.Value = strings.Join(parts, " ")
				return nil, kv, nil
			case tStringError:
				return nil, nil, errorf(v.pos, "%s in the value of %q", v.text, name.text)
			default:
				return nil, nil, errorf(v.pos, "unexpected %s in the value of %q", v.describe(), name.text)
			}
		}
	case tStringError:
		return nil, nil, errorf(t.pos, "%s", t.text)
	case tDot, tComma:
		return nil, nil, errorf(t.pos, "unexpected %s after %q: names cannot contain '.', ',' or ':'; expected '{', ':' or '='", t.describe(), name.text)
	case tEOF:
		return nil, nil, errorf(t.pos, "unexpected end of file after %q, expected '{', ':' or '='", name.text)
	}
	return nil, nil, errorf(t.pos, "unexpected %s after %q, expected '{' (a section), ':' (references) or '=' (a setting)", t.describe(), name.text)
}
