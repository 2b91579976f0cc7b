package daemon

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/configs"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/vici"
)

// charon is what the daemon needs of charon; *vici.Client and
// *vicitest.Charon provide it.
type charon interface {
	LoadConn(ctx context.Context, name string, conn *vici.Msg) error
	UnloadConn(ctx context.Context, name string) error
	GetConns(ctx context.Context) ([]string, error)
	ListConns(ctx context.Context) ([]vici.Conn, error)
	LoadKey(ctx context.Context, typ string, data []byte) (string, error)
	LoadShared(ctx context.Context, s vici.SharedSecret) error
	UnloadShared(ctx context.Context, id string) error
	ListSAs(ctx context.Context, f vici.ListSAsFilter) ([]vici.IKESA, error)
	Terminate(ctx context.Context, o vici.TerminateOpts) error
	Watch(ctx context.Context) <-chan vici.Event
	Stats() map[string]uint64
}

// desiredConn is a connection charon should have.
type desiredConn struct {
	btnsauth.Conn
	digest string
	limits limits
}

type limits struct {
	maxSAs, maxPerAddr int
}

// pad keeps charon's connections in step with what the policies and the key
// store ask for. applied records what charon has, as far as btnsd knows:
// connection name -> digest of the body loaded.
type pad struct {
	logf func(string, ...any)

	hostKey    crypto.Signer
	hostPub    *fingerprints.PublicKey
	keyLoaded  bool
	secretOn   bool
	want       map[string]desiredConn
	applied    map[string]string
	connErrors map[string]string // connection -> last load error
}

func newPad(signer crypto.Signer, pub *fingerprints.PublicKey, logf func(string, ...any)) *pad {
	return &pad{
		logf:       logf,
		hostKey:    signer,
		hostPub:    pub,
		want:       map[string]desiredConn{},
		applied:    map[string]string{},
		connErrors: map[string]string{},
	}
}

// desire computes the connections the policies and keys ask for.
func (p *pad) desire(set *configs.Set, keys []fingerprints.Entry) []error {
	conns, errs := btnsauth.ExpandAll(set.Conns, keys, p.hostPub)
	want := make(map[string]desiredConn, len(conns))
	for _, c := range conns {
		pol := set.Conn(c.Policy).Policy
		want[c.Name] = desiredConn{Conn: c, digest: btnsauth.Digest(c.Body), limits: limits{pol.MaxSAs, pol.MaxSAsPerAddr}}
	}
	p.want = want
	return errs
}

// forget makes the next sync send everything again: charon restarted.
func (p *pad) forget() {
	p.applied = map[string]string{}
	p.forgetCreds()
}

// forgetCreds makes the next sync load the host key and the anonymous PSK
// again (charon replaces them: loading them twice is harmless).
func (p *pad) forgetCreds() {
	p.keyLoaded = false
	p.secretOn = false
}

// adopt reconciles applied with the connections charon has: owned
// connections btnsd did not load in this run (a previous run's) are
// treated as stale so that sync replaces or removes them, and connections
// charon lost are forgotten. It reports whether charon lost any
// connection btnsd had loaded, which means charon restarted.
func (p *pad) adopt(ctx context.Context, ch charon) (lost bool, err error) {
	names, err := ch.GetConns(ctx)
	if err != nil {
		return false, err
	}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
		if btnsauth.Owned(n) {
			if _, ok := p.applied[n]; !ok {
				p.applied[n] = "" // unknown body: load again or unload
			}
		}
	}
	for n := range p.applied {
		if !has[n] {
			delete(p.applied, n)
			lost = true
		}
	}
	return lost, nil
}

// syncResult says what a sync did.
type syncResult struct {
	Loaded, Unloaded []string
	Terminated       int
}

// sync sends charon the difference between want and applied: new and
// changed connections loaded, removed ones unloaded and their SAs
// terminated, untouched ones not sent. It goes on after a failed
// connection and returns every error.
func (p *pad) sync(ctx context.Context, ch charon) (syncResult, []error) {
	var res syncResult
	var errs []error
	if !p.keyLoaded && p.hostKey != nil {
		der, err := x509.MarshalPKCS8PrivateKey(p.hostKey)
		if err == nil {
			_, err = ch.LoadKey(ctx, "any", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("loading the host key into charon: %w", err))
		} else {
			p.keyLoaded = true
		}
	}
	anon := false
	for _, c := range p.want {
		anon = anon || c.Anonymous
	}
	if anon && !p.secretOn {
		err := ch.LoadShared(ctx, btnsauth.AnonymousSecret())
		if err != nil {
			errs = append(errs, fmt.Errorf("loading the anonymous PSK: %w", err))
		} else {
			p.secretOn = true
		}
	}

	names := make([]string, 0, len(p.want))
	for n := range p.want {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := p.want[n]
		if d, ok := p.applied[n]; ok && d == c.digest {
			continue
		}
		if err := ch.LoadConn(ctx, n, c.Body); err != nil {
			p.connErrors[n] = err.Error()
			errs = append(errs, fmt.Errorf("loading connection %s (policy %s): %w", n, c.Policy, err))
			continue
		}
		delete(p.connErrors, n)
		p.applied[n] = c.digest
		res.Loaded = append(res.Loaded, n)
	}

	var gone []string
	for n := range p.applied {
		if _, ok := p.want[n]; !ok {
			gone = append(gone, n)
		}
	}
	slices.Sort(gone)
	for _, n := range gone {
		if err := ch.UnloadConn(ctx, n); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("unloading connection %s: %w", n, err))
			continue
		}
		delete(p.applied, n)
		delete(p.connErrors, n)
		res.Unloaded = append(res.Unloaded, n)
		// charon keeps SAs of an unloaded connection up: end them, so
		// that a revoked key loses its SAs at once.
		k, err := terminateConn(ctx, ch, n, p.logf, "its connection was removed")
		res.Terminated += k
		if err != nil {
			errs = append(errs, err)
		}
	}

	if !anon && p.secretOn {
		if err := ch.UnloadShared(ctx, btnsauth.AnonymousSecretID); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("unloading the anonymous PSK: %w", err))
		} else {
			p.secretOn = false
		}
	}
	return res, errs
}

// terminateConn terminates every IKE SA of connection name, without waiting
// for the peer (the SA is no longer wanted).
func terminateConn(ctx context.Context, ch charon, name string, logf func(string, ...any), why string) (int, error) {
	sas, err := ch.ListSAs(ctx, vici.ListSAsFilter{IKE: name})
	if err != nil {
		return 0, fmt.Errorf("listing the SAs of %s: %w", name, err)
	}
	n := 0
	var errs []error
	for _, sa := range sas {
		if sa.Name != name {
			continue
		}
		if err := terminate(ctx, ch, sa.UniqueID); err != nil {
			errs = append(errs, fmt.Errorf("terminating IKE SA #%d of %s: %w", sa.UniqueID, name, err))
			continue
		}
		logf("terminated IKE SA #%d of %s (peer %s at %s): %s", sa.UniqueID, name, sa.RemoteID, sa.RemoteHost, why)
		n++
	}
	return n, errors.Join(errs...)
}

func terminate(ctx context.Context, ch charon, ikeID uint64) error {
	err := ch.Terminate(ctx, vici.TerminateOpts{IKEID: ikeID, Force: true, Timeout: time.Second})
	if isNotFound(err) {
		return nil // gone already
	}
	return err
}

// isNotFound reports whether charon refused a command because its object
// does not exist (anymore).
func isNotFound(err error) bool {
	var ce *vici.CommandError
	if !errors.As(err, &ce) {
		return false
	}
	m := strings.ToLower(ce.Errmsg)
	return strings.Contains(m, "not found") || strings.Contains(m, "no matching")
}
