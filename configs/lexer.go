package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// The lexer reproduces strongSwan's settings_lexer.l (5.9.8) rule by rule:
// the same start conditions (INITIAL, ref, val, inc, str), the same
// longest-match decisions and the same buffer stack for includes, so that
// a file means to btnsd exactly what it means to swanctl. Comments name
// the flex rule each branch stands for.

type tokKind int

const (
	tEOF tokKind = iota
	tName
	tString
	tDot
	tComma
	tColon
	tNewline
	tLBrace
	tRBrace
	tEq
	tStringError // the lexer's STRING_ERROR; text holds the message
	tError       // an include or read error; err holds it
)

func (k tokKind) String() string {
	switch k {
	case tEOF:
		return "end of file"
	case tName:
		return "name"
	case tString:
		return "string"
	case tDot:
		return "'.'"
	case tComma:
		return "','"
	case tColon:
		return "':'"
	case tNewline:
		return "end of value"
	case tLBrace:
		return "'{'"
	case tRBrace:
		return "'}'"
	case tEq:
		return "'='"
	}
	return "error"
}

type token struct {
	kind tokKind
	text string
	pos  Pos
	err  *Error
}

func (t token) describe() string {
	switch t.kind {
	case tName:
		return fmt.Sprintf("name %q", t.text)
	case tString:
		return fmt.Sprintf("quoted string %q", t.text)
	}
	return t.kind.String()
}

type lexState int

const (
	sInitial lexState = iota
	sRef              // after ':' in a section header: references
	sVal              // after '=': the value
	sInc              // after "include": the file pattern
	sStr              // inside a quoted string (of a value or an include)
)

// frame is one file on the buffer stack (flex's buffer plus strongSwan's
// parser_helper file record).
type frame struct {
	name    string
	src     []byte
	off     int
	line    int
	col     int
	pending []string // further matches of the include being processed
}

func (f *frame) pos() Pos { return Pos{File: f.name, Line: f.line, Col: f.col} }

func (f *frame) peek(i int) (byte, bool) {
	if f.off+i < len(f.src) {
		return f.src[f.off+i], true
	}
	return 0, false
}

func (f *frame) advance(n int) {
	for ; n > 0 && f.off < len(f.src); n-- {
		if f.src[f.off] == '\n' {
			f.line++
			f.col = 1
		} else {
			f.col++
		}
		f.off++
	}
}

// Limits that keep hostile or broken input (include bombs) bounded.
const (
	maxIncludeDepth = 32
	maxFiles        = 512
)

type lexer struct {
	fsys   fs.FS
	frames []*frame
	states []lexState
	buf    bytes.Buffer // parser_helper's string buffer, shared by inc and str
	strPos Pos          // where the current string or include started
	endPos Pos          // end of the last file popped, for the final EOF
	nfiles int
	err    *Error
	// onRead is called with every file read, in order, for hashing.
	onRead func(name string, data []byte)
}

func newLexer(fsys fs.FS, onRead func(string, []byte)) *lexer {
	return &lexer{fsys: fsys, states: []lexState{sInitial}, onRead: onRead}
}

func (l *lexer) state() lexState     { return l.states[len(l.states)-1] }
func (l *lexer) push(s lexState)     { l.states = append(l.states, s) }
func (l *lexer) pop()                { l.states = l.states[:len(l.states)-1] }
func (l *lexer) below() lexState     { return l.states[len(l.states)-2] }
func (l *lexer) top() *frame         { return l.frames[len(l.frames)-1] }
func (l *lexer) fail(e *Error) token { l.err = e; return token{kind: tError, err: e, pos: e.Pos()} }

// open reads name and pushes it on the buffer stack.
func (l *lexer) open(name string, at Pos) *Error {
	if len(l.frames) >= maxIncludeDepth {
		return errorf(at, "includes nested more than %d deep at %q", maxIncludeDepth, name)
	}
	for _, f := range l.frames {
		if f.name == name {
			chain := make([]string, 0, len(l.frames)+1)
			for _, f := range l.frames {
				chain = append(chain, f.name)
			}
			chain = append(chain, name)
			return errorf(at, "include loop: %s", strings.Join(chain, " -> "))
		}
	}
	if l.nfiles++; l.nfiles > maxFiles {
		return errorf(at, "more than %d files included", maxFiles)
	}
	data, err := fs.ReadFile(l.fsys, name)
	if err != nil {
		if at.Line == 0 {
			return wrapf(Pos{File: name}, err, "cannot read policy file: %v", unwrapPathError(err))
		}
		return wrapf(at, err, "cannot read included file %q: %v", name, unwrapPathError(err))
	}
	if l.onRead != nil {
		l.onRead(name, data)
	}
	f := &frame{name: name, src: data, line: 1, col: 1}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		f.advance(i)
		return errorf(f.pos(), "NUL byte in file (not a text file?)")
	}
	l.frames = append(l.frames, f)
	return nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// openNext opens the next pending include match of the top frame, as
// parser_helper's file_next does; it reports whether a file was pushed.
func (l *lexer) openNext(at Pos) (bool, *Error) {
	if len(l.frames) == 0 {
		return false, nil
	}
	f := l.top()
	if len(f.pending) == 0 {
		return false, nil
	}
	name := f.pending[0]
	f.pending = f.pending[1:]
	if err := l.open(name, at); err != nil {
		return false, err
	}
	return true, nil
}

// include resolves the pattern collected in buf relative to the current
// file and pushes the first match (include_files in the lexer).
func (l *lexer) include() *Error {
	pattern := l.buf.String()
	l.buf.Reset()
	at := l.strPos
	matches, err := resolveInclude(l.fsys, l.top().name, pattern, at)
	if err != nil {
		return err
	}
	l.top().pending = matches
	_, err = l.openNext(at)
	return err
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// resolveInclude turns an include pattern into the sorted list of files
// it names. Relative patterns are relative to the directory of the
// including file (parser_helper.c file_include); absolute ones are looked
// up from the root of fsys. A pattern with glob characters may match
// nothing (as in strongSwan); a plain file name must exist (stricter than
// strongSwan, which skips a missing file silently).
func resolveInclude(fsys fs.FS, cur, pattern string, at Pos) ([]string, *Error) {
	if pattern == "" {
		return nil, errorf(at, "missing file name after include")
	}
	var p string
	if strings.HasPrefix(pattern, "/") {
		p = path.Clean(strings.TrimLeft(pattern, "/"))
		if p == "" {
			p = "."
		}
	} else {
		p = path.Join(path.Dir(cur), pattern)
	}
	if !fs.ValidPath(p) {
		return nil, errorf(at, "include %q: path %q is outside the policy file system", pattern, p)
	}
	if !hasMeta(p) {
		st, err := fs.Stat(fsys, p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, wrapf(at, err, "include %q: file %s not found", pattern, p)
			}
			return nil, wrapf(at, err, "include %q: %v", pattern, unwrapPathError(err))
		}
		if st.IsDir() {
			return nil, errorf(at, "include %q: %s is a directory (use a pattern such as %s/*.conf)", pattern, p, p)
		}
		return []string{p}, nil
	}
	matches, err := fs.Glob(fsys, p)
	if err != nil {
		return nil, wrapf(at, err, "include %q: bad pattern: %v", pattern, err)
	}
	pcomps := strings.Split(p, "/")
	out := matches[:0]
	for _, m := range matches {
		if hiddenMatch(pcomps, strings.Split(m, "/")) {
			continue
		}
		st, err := fs.Stat(fsys, m)
		if err != nil {
			return nil, wrapf(at, err, "include %q: %v", pattern, err)
		}
		if st.IsDir() {
			continue
		}
		out = append(out, m)
	}
	// glob(3) sorts whole paths (strcmp in the C locale); fs.Glob sorts
	// per directory level, which differs for names such as "a-b" and "a".
	sort.Strings(out)
	return out, nil
}

// hiddenMatch reports whether a match has a name starting with '.' that
// the pattern did not spell out, which glob(3) never returns.
func hiddenMatch(pat, m []string) bool {
	if len(pat) != len(m) {
		return false
	}
	for i := range pat {
		if hasMeta(pat[i]) && strings.HasPrefix(m[i], ".") && !strings.HasPrefix(pat[i], ".") {
			return true
		}
	}
	return false
}

func isNameChar(c byte) bool {
	// NAME [^#{}:.,="\r\n\t ]
	switch c {
	case '#', '{', '}', ':', '.', ',', '=', '"', '\r', '\n', '\t', ' ':
		return false
	}
	return true
}

func isValChar(c byte) bool {
	// <val>[^#}"\r\n\t ]+
	switch c {
	case '#', '}', '"', '\r', '\n', '\t', ' ':
		return false
	}
	return true
}

func isIncChar(c byte) bool {
	// <inc>[^"\\#}\r\n\t ]+
	switch c {
	case '"', '\\', '#', '}', '\r', '\n', '\t', ' ':
		return false
	}
	return true
}

// next returns the next token for the parser.
func (l *lexer) next() token {
	for {
		if l.err != nil {
			return token{kind: tError, err: l.err, pos: l.err.Pos()}
		}
		if len(l.frames) == 0 {
			return token{kind: tEOF, pos: l.endPos}
		}
		f := l.top()
		if f.off >= len(f.src) {
			switch l.state() {
			case sVal: // <val><<EOF>>: end the value
				l.pop()
				return token{kind: tNewline, pos: f.pos()}
			case sStr: // <str><<EOF>>
				return token{kind: tStringError, text: "unterminated quoted string", pos: l.strPos}
			case sInc: // <inc><<EOF>>: include_files, pop
				if err := l.include(); err != nil {
					return l.fail(err)
				}
				l.pop()
				continue
			}
			// <<EOF>> of INITIAL and ref: pop the buffer, go on with the
			// next match of an include or with the including file.
			l.endPos = f.pos()
			l.frames = l.frames[:len(l.frames)-1]
			if _, err := l.openNext(l.endPos); err != nil {
				return l.fail(err)
			}
			continue
		}
		c := f.src[f.off]
		start := f.pos()
		switch l.state() {
		case sInitial:
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '#':
				skipBlanks(f)
			case c == '{':
				f.advance(1)
				return token{kind: tLBrace, pos: start}
			case c == '}':
				f.advance(1)
				return token{kind: tRBrace, pos: start}
			case c == '.':
				f.advance(1)
				return token{kind: tDot, pos: start}
			case c == ',':
				f.advance(1)
				return token{kind: tComma, pos: start}
			case c == ':':
				f.advance(1)
				l.push(sRef)
				return token{kind: tColon, pos: start}
			case c == '=':
				f.advance(1)
				l.push(sVal)
				return token{kind: tEq, pos: start}
			case c == '"':
				f.advance(1)
				return token{kind: tStringError, text: "unexpected quoted string (quotes are only allowed in values and include patterns)", pos: start}
			default:
				n := 0
				for {
					b, ok := f.peek(n)
					if !ok || !isNameChar(b) {
						break
					}
					n++
				}
				word := string(f.src[f.off : f.off+n])
				if word == "include" {
					if k := includeBlanks(f); k > 0 {
						// "include"[\t ]+/[^=] beats {NAME}+
						f.advance(n + k)
						l.buf.Reset()
						l.strPos = start
						l.push(sInc)
						continue
					}
				}
				f.advance(n)
				return token{kind: tName, text: word, pos: start}
			}
		case sRef:
			switch {
			case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '#':
				skipBlanks(f)
			case c == ',':
				f.advance(1)
				return token{kind: tComma, pos: start}
			case isNameChar(c):
				// {NAME}+(\.{NAME}+)*
				n := 0
				for {
					b, ok := f.peek(n)
					if ok && isNameChar(b) {
						n++
						continue
					}
					if b2, ok2 := f.peek(n + 1); ok && b == '.' && ok2 && isNameChar(b2) {
						n += 2
						continue
					}
					break
				}
				word := string(f.src[f.off : f.off+n])
				f.advance(n)
				return token{kind: tName, text: word, pos: start}
			default:
				l.pop() // . { unput(yytext[0]); yy_pop_state(); }
			}
		case sVal:
			switch {
			case c == '\r' || c == ' ' || c == '\t':
				f.advance(1)
			case c == '#' || c == '}' || c == '\n':
				l.pop() // unput, pop, NEWLINE
				return token{kind: tNewline, pos: start}
			case c == '"':
				f.advance(1)
				l.buf.Reset()
				l.strPos = start
				l.push(sStr)
			default:
				n := 0
				for {
					b, ok := f.peek(n)
					if !ok || !isValChar(b) {
						break
					}
					n++
				}
				word := string(f.src[f.off : f.off+n])
				f.advance(n)
				return token{kind: tName, text: word, pos: start}
			}
		case sInc:
			switch {
			case c == '\r':
				f.advance(1)
			case c == '#' || c == '}' || c == '\n' || c == '\t' || c == ' ':
				if c == '\t' || c == ' ' {
					f.advance(1) // blanks are consumed, the others unput
				}
				l.pop()
				if err := l.include(); err != nil {
					return l.fail(err)
				}
			case c == '"':
				f.advance(1)
				l.push(sStr)
			case c == '\\':
				if b, ok := f.peek(1); ok && (b == '"' || b == '#' || b == '}' || b == ' ') {
					l.buf.WriteByte(b) // \\["#} ]
					f.advance(2)
				} else {
					l.buf.WriteByte('\\')
					f.advance(1)
				}
			default:
				n := 0
				for {
					b, ok := f.peek(n)
					if !ok || !isIncChar(b) {
						break
					}
					n++
				}
				l.buf.Write(f.src[f.off : f.off+n])
				f.advance(n)
			}
		case sStr:
			switch c {
			case '\r':
				f.advance(1)
			case '"':
				f.advance(1)
				if l.below() == sInc {
					// a quoted include pattern: include_files, pop str and inc
					l.pop()
					l.pop()
					if err := l.include(); err != nil {
						return l.fail(err)
					}
					continue
				}
				l.pop()
				s := l.buf.String()
				l.buf.Reset()
				return token{kind: tString, text: s, pos: l.strPos}
			case '\\':
				b, ok := f.peek(1)
				switch {
				case !ok:
					f.advance(1)
					return token{kind: tStringError, text: "unterminated quoted string (backslash at end of file)", pos: l.strPos}
				case b == 'n':
					l.buf.WriteByte('\n')
					f.advance(2)
				case b == 'r':
					l.buf.WriteByte('\r')
					f.advance(2)
				case b == 't':
					l.buf.WriteByte('\t')
					f.advance(2)
				case b == '\n':
					f.advance(2) // line continuation
				case b == '\r':
					if b2, ok2 := f.peek(2); ok2 && b2 == '\n' {
						f.advance(3) // line continuation
					} else {
						l.buf.WriteByte('\r')
						f.advance(2)
					}
				default:
					l.buf.WriteByte(b) // \\. : the character itself
					f.advance(2)
				}
			default:
				n := 0
				for {
					b, ok := f.peek(n)
					if !ok || b == '\\' || b == '\r' || b == '"' {
						break
					}
					n++
				}
				l.buf.Write(f.src[f.off : f.off+n])
				f.advance(n)
			}
		}
	}
}

// skipBlanks eats blanks, newlines and comments as the first three rules
// of INITIAL and ref do, longest match first:
//
//	[\t ]*#[^\r\n]*   a comment after blanks: up to a CR or LF
//	[\t\r ]+          blanks, CRs included
//	\n|#.*\n          a newline, or a comment from '#' through the LF
//
// The difference matters with a lone CR: after blanks, a comment ends at
// the CR and the rest of the line is read as settings; from '#' itself,
// it runs to the LF (or, with no LF left in the file, to a CR).
func skipBlanks(f *frame) {
	c := f.src[f.off]
	n := 0
	switch c {
	case ' ', '\t':
		for b, ok := f.peek(n); ok && (b == ' ' || b == '\t'); b, ok = f.peek(n) {
			n++
		}
		if b, ok := f.peek(n); ok && b == '#' {
			for b, ok := f.peek(n); ok && b != '\r' && b != '\n'; b, ok = f.peek(n) {
				n++
			}
			break
		}
		n = 0
		fallthrough
	case '\r':
		for b, ok := f.peek(n); ok && (b == ' ' || b == '\t' || b == '\r'); b, ok = f.peek(n) {
			n++
		}
	case '\n':
		n = 1
	case '#':
		if i := bytes.IndexByte(f.src[f.off:], '\n'); i >= 0 {
			n = i + 1
			break
		}
		for b, ok := f.peek(n); ok && b != '\r'; b, ok = f.peek(n) {
			n++
		}
	}
	f.advance(n)
}

// includeBlanks returns how many blanks after "include" the rule
// "include"[\t ]+/[^=] consumes, or 0 when it does not match. The
// trailing context counts for flex's longest match, so the rule wins over
// {NAME}+ whenever it matches: with blanks followed by a character other
// than '=', all of them; followed by '=' or the end of file, all but the
// last (the last blank being the context), which needs two blanks.
func includeBlanks(f *frame) int {
	b := 0
	for {
		c, ok := f.peek(7 + b)
		if !ok || (c != ' ' && c != '\t') {
			break
		}
		b++
	}
	if b == 0 {
		return 0
	}
	if c, ok := f.peek(7 + b); ok && c != '=' {
		return b
	}
	if b >= 2 {
		return b - 1
	}
	return 0
}
