package fingerprints

import (
	"errors"
	"fmt"
	"strings"
)

// Errors callers can match with errors.Is. The messages of the errors this
// package returns wrap them with the details (what was found, which file).
var (
	// ErrEmpty: the input holds no bytes but white space.
	ErrEmpty = errors.New("empty input")
	// ErrNotKey: the input is not a public key in any format this package
	// reads (garbage, a certificate, a PEM block of another kind).
	ErrNotKey = errors.New("not a public key")
	// ErrPrivateKey: a private key was given where a public key is expected.
	ErrPrivateKey = errors.New("private key given where a public key is expected")
	// ErrUnsupportedKey: a public key of an algorithm, curve or size that
	// btnsd refuses (DSA, RSA under 2048 bits, Ed448, P-224, ...).
	ErrUnsupportedKey = errors.New("unsupported public key")
	// ErrBadFingerprint: text that is no fingerprint or keyid form.
	ErrBadFingerprint = errors.New("bad fingerprint")
	// ErrBadIdentity: text that is no IKE identity btnsd can store.
	ErrBadIdentity = errors.New("bad IKE identity")
	// ErrNotFound: no key in the store matches.
	ErrNotFound = errors.New("key not found")
	// ErrAmbiguous: a prefix or name matches more than one key; the error is
	// an *AmbiguousError that lists them.
	ErrAmbiguous = errors.New("ambiguous key prefix")
	// ErrExists: the key is already in the store.
	ErrExists = errors.New("key already in the store")
)

// AmbiguousError is returned by Store.Resolve when its input matches more
// than one key. errors.Is(err, ErrAmbiguous) holds.
type AmbiguousError struct {
	Input   string
	Matches []Fingerprint
}

func (e *AmbiguousError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %q matches %d keys:", ErrAmbiguous, e.Input, len(e.Matches))
	for _, m := range e.Matches {
		fmt.Fprintf(&b, "\n  %s  %s", m.Hex(), m)
	}
	return b.String()
}

// Unwrap returns ErrAmbiguous.
func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// Problem is a file in the store that could not be used: corrupt, foreign,
// or a key whose metadata is missing. Loading skips it and goes on.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) String() string { return p.Path + ": " + p.Err.Error() }
