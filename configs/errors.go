package configs

import (
	"errors"
	"fmt"
	"strings"
)

// Pos is a position in a policy file: the file's name in the fs.FS it was
// read from, a 1-based line and a 1-based column counted in bytes (a tab
// counts as one column, as in gcc and go/scanner).
type Pos struct {
	File string
	Line int
	Col  int
}

// String returns "file:line:col", or "file" when the position has no line.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// IsValid reports whether p names a line in a file.
func (p Pos) IsValid() bool { return p.File != "" && p.Line > 0 }

// Error is an error at a position in a policy file: a syntax error, a bad
// include, a file that cannot be read, a value btnsd rejects. It prints as
// "file:line:col: msg" (or "file: msg" when there is no line), and Msg says
// what was found and what was expected.
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
	// Err is an underlying error, such as an fs.PathError, when there is
	// one; Msg already includes its text.
	Err error
}

func (e *Error) Error() string {
	return e.Pos().String() + ": " + e.Msg
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Pos returns the position of e.
func (e *Error) Pos() Pos { return Pos{File: e.File, Line: e.Line, Col: e.Col} }

func errorf(p Pos, format string, args ...any) *Error {
	return &Error{File: p.File, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)}
}

func wrapf(p Pos, err error, format string, args ...any) *Error {
	e := errorf(p, format, args...)
	e.Err = err
	return e
}

// ErrorList is a list of *Error, all found in one file (with its includes).
// It is what File.Err holds when there is more than one problem.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the errors of l, for errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Err returns nil for an empty list, the only error of a list of one, and
// the list itself otherwise.
func (l ErrorList) Err() error {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	return l
}

// Errors flattens err (an *Error, an ErrorList or anything joined with
// errors.Join) into its *Error values; other errors are kept as they are.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				walk(e)
			}
			return
		}
		out = append(out, err)
	}
	walk(err)
	return out
}

// ErrDuplicate is wrapped by the errors NewSet and LoadDir report for a
// connection name defined in more than one file.
var ErrDuplicate = errors.New("duplicate connection name")
