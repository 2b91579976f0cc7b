package vici

import (
	"fmt"
	"net/netip"
	"strconv"
)

// IKESA is an IKE_SA as charon lists it (list-sas) and sends it in events.
// It is decoded from a Msg, so it works the same for live messages and for
// recorded JSON fixtures. Keys that IKESA does not model are ignored; a key
// that is absent leaves its field at the zero value.
type IKESA struct {
	// Name is the connection name, the key of the IKE_SA's section.
	// "(unnamed)" during IKE_SA_INIT, before a connection was chosen.
	Name string
	// UniqueID is charon's unique id of the IKE_SA ("uniqueid").
	UniqueID uint64
	// Version is the IKE version, 1 or 2.
	Version int
	// State is charon's state name: CONNECTING, ESTABLISHED, DELETING, ...
	State string

	LocalHost, RemoteHost netip.Addr // invalid for charon's "%any"
	LocalPort, RemotePort uint16
	// LocalID and RemoteID are the IKE identities as charon prints them,
	// e.g. a raw key's keyid in colon hex. In a connection that accepts
	// "%any", RemoteID is chosen by the peer and proves nothing.
	LocalID, RemoteID string

	// Initiator is true when this end initiated the IKE_SA.
	Initiator bool
	// InitiatorSPI and ResponderSPI are hex as charon prints them.
	InitiatorSPI, ResponderSPI string

	NATLocal, NATRemote, NATFake, NATAny bool

	EncrAlg      string
	EncrKeySize  int
	IntegAlg     string
	IntegKeySize int
	PRFAlg       string
	DHGroup      string

	// Established is the number of seconds since the IKE_SA was
	// established; RekeyTime and ReauthTime are seconds until charon
	// rekeys or reauthenticates it (0 when not scheduled).
	Established, RekeyTime, ReauthTime int64

	// Children are the CHILD_SAs in the order charon sent them. An
	// ike-updown or ike-rekey event carries none; a child-updown event
	// carries only the child it is about.
	Children []ChildSA
}

// ChildSA is a CHILD_SA as charon lists it under its IKE_SA.
type ChildSA struct {
	// Key is the key of the CHILD_SA's section, "<name>-<uniqueid>" as
	// charon builds it (e.g. "rk-1").
	Key string
	// Name is the child configuration name.
	Name string
	// UniqueID is charon's unique id of the CHILD_SA; a rekey makes a new
	// one. ReqID stays the same across rekeys.
	UniqueID uint64
	ReqID    uint32
	// State is charon's state name: INSTALLED, REKEYED, DELETING, ...
	State string
	// Mode is TUNNEL, TRANSPORT or BEET; Protocol is ESP or AH.
	Mode, Protocol string
	// Encap is true for UDP-encapsulated ESP.
	Encap bool
	// SPIIn and SPIOut are hex as charon prints them.
	SPIIn, SPIOut string

	EncrAlg      string
	EncrKeySize  int
	IntegAlg     string
	IntegKeySize int
	PRFAlg       string
	DHGroup      string
	ESN          bool

	BytesIn, BytesOut, PacketsIn, PacketsOut uint64

	// RekeyTime and LifeTime are seconds until rekey and expiry;
	// InstallTime is seconds since installation.
	RekeyTime, LifeTime, InstallTime int64

	LocalTS, RemoteTS []TrafficSelector
}

// fields decodes typed values from one section of a message and keeps the
// first error, which names the section path, the key and the bad value.
type fields struct {
	m    *Msg
	path string
	err  error
}

func (f *fields) fail(key, val string, err error) {
	if f.err == nil {
		f.err = fmt.Errorf("vici: %s%s: invalid value %q: %v", f.path, key, val, err)
	}
}

func (f *fields) str(key string) string { return f.m.String(key) }

func (f *fields) uint(key string, bits int) uint64 {
	s := f.m.String(key)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		f.fail(key, s, err)
	}
	return n
}

func (f *fields) int(key string, bits int) int64 {
	s := f.m.String(key)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		f.fail(key, s, err)
	}
	return n
}

func (f *fields) bool(key string) bool {
	s := f.m.String(key)
	switch s {
	case "yes", "1", "true":
		return true
	case "", "no", "0", "false":
		return false
	}
	f.fail(key, s, fmt.Errorf("not a boolean"))
	return false
}

func (f *fields) addr(key string) netip.Addr {
	s := f.m.String(key)
	switch s {
	case "", "%any", "%any6":
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		f.fail(key, s, err)
	}
	return a
}

func (f *fields) ts(key string) []TrafficSelector {
	list := f.m.List(key)
	if len(list) == 0 {
		return nil
	}
	out := make([]TrafficSelector, 0, len(list))
	for _, s := range list {
		ts, err := parseTS(s)
		if err != nil {
			f.fail(key, s, err)
			continue
		}
		out = append(out, ts)
	}
	return out
}

// DecodeIKESA decodes the section m of the IKE_SA named name (the section's
// key), including its child-sas section if there is one. Keys it does not
// know are ignored; a malformed value gives an error naming the key and the
// value.
func DecodeIKESA(name string, m *Msg) (IKESA, error) {
	return decodeIKESA(name, m, true)
}

func decodeIKESA(name string, m *Msg, children bool) (IKESA, error) {
	f := &fields{m: m, path: name + ": "}
	sa := IKESA{
		Name:         name,
		UniqueID:     f.uint("uniqueid", 64),
		Version:      int(f.int("version", 8)),
		State:        f.str("state"),
		LocalHost:    f.addr("local-host"),
		RemoteHost:   f.addr("remote-host"),
		LocalPort:    uint16(f.uint("local-port", 16)),
		RemotePort:   uint16(f.uint("remote-port", 16)),
		LocalID:      f.str("local-id"),
		RemoteID:     f.str("remote-id"),
		Initiator:    f.bool("initiator"),
		InitiatorSPI: f.str("initiator-spi"),
		ResponderSPI: f.str("responder-spi"),
		NATLocal:     f.bool("nat-local"),
		NATRemote:    f.bool("nat-remote"),
		NATFake:      f.bool("nat-fake"),
		NATAny:       f.bool("nat-any"),
		EncrAlg:      f.str("encr-alg"),
		EncrKeySize:  int(f.int("encr-keysize", 32)),
		IntegAlg:     f.str("integ-alg"),
		IntegKeySize: int(f.int("integ-keysize", 32)),
		PRFAlg:       f.str("prf-alg"),
		DHGroup:      f.str("dh-group"),
		Established:  f.int("established", 64),
		RekeyTime:    f.int("rekey-time", 64),
		ReauthTime:   f.int("reauth-time", 64),
	}
	if f.err != nil {
		return IKESA{}, f.err
	}
	if !children {
		return sa, nil
	}
	cs := m.Section("child-sas")
	for _, key := range cs.Keys() {
		sec := cs.Section(key)
		if sec == nil {
			continue
		}
		c, err := decodeChildSA(name+": child-sas: ", key, sec)
		if err != nil {
			return IKESA{}, err
		}
		sa.Children = append(sa.Children, c)
	}
	return sa, nil
}

// DecodeChildSA decodes the section m of the CHILD_SA whose section key is
// key. Unknown keys are ignored; a malformed value gives an error naming
// the key and the value.
func DecodeChildSA(key string, m *Msg) (ChildSA, error) {
	return decodeChildSA("", key, m)
}

func decodeChildSA(path, key string, m *Msg) (ChildSA, error) {
	f := &fields{m: m, path: path + key + ": "}
	c := ChildSA{
		Key:          key,
		Name:         f.str("name"),
		UniqueID:     f.uint("uniqueid", 64),
		ReqID:        uint32(f.uint("reqid", 32)),
		State:        f.str("state"),
		Mode:         f.str("mode"),
		Protocol:     f.str("protocol"),
		Encap:        f.bool("encap"),
		SPIIn:        f.str("spi-in"),
		SPIOut:       f.str("spi-out"),
		EncrAlg:      f.str("encr-alg"),
		EncrKeySize:  int(f.int("encr-keysize", 32)),
		IntegAlg:     f.str("integ-alg"),
		IntegKeySize: int(f.int("integ-keysize", 32)),
		PRFAlg:       f.str("prf-alg"),
		DHGroup:      f.str("dh-group"),
		ESN:          f.bool("esn"),
		BytesIn:      f.uint("bytes-in", 64),
		BytesOut:     f.uint("bytes-out", 64),
		PacketsIn:    f.uint("packets-in", 64),
		PacketsOut:   f.uint("packets-out", 64),
		RekeyTime:    f.int("rekey-time", 64),
		LifeTime:     f.int("life-time", 64),
		InstallTime:  f.int("install-time", 64),
		LocalTS:      f.ts("local-ts"),
		RemoteTS:     f.ts("remote-ts"),
	}
	if f.err != nil {
		return ChildSA{}, f.err
	}
	return c, nil
}

// DecodeSAs decodes every IKE_SA section of a list-sa message (one message
// per IKE_SA in practice; the key of each section is the connection name).
func DecodeSAs(m *Msg) ([]IKESA, error) {
	var out []IKESA
	for _, name := range m.Keys() {
		sec := m.Section(name)
		if sec == nil {
			continue
		}
		sa, err := DecodeIKESA(name, sec)
		if err != nil {
			return nil, err
		}
		out = append(out, sa)
	}
	return out, nil
}
