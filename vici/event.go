package vici

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Event is one event of the stream that Watch delivers: IKEUpDown,
// ChildUpDown, IKERekey, ChildRekey, IKEUpdate, Resync, or Log. Use a type
// switch; every event carries the time it was received.
type Event interface {
	// EventTime returns the time the event was received.
	EventTime() time.Time
	isEvent()
}

// IKEUpDown is charon's ike-updown event: an IKE_SA was established (Up) or
// is going away. The IKE_SA carries no children.
type IKEUpDown struct {
	Time time.Time
	Up   bool
	IKE  IKESA
}

// ChildUpDown is charon's child-updown event: a CHILD_SA was installed (Up)
// or is going away. IKE is its IKE_SA, whose Children hold only Child.
type ChildUpDown struct {
	Time  time.Time
	Up    bool
	IKE   IKESA
	Child ChildSA
}

// IKERekey is charon's ike-rekey event: the IKE_SA Old was rekeyed into New
// (a new UniqueID and SPIs, the same peer). Reauthentication is not a rekey:
// charon reports it as down and up events.
type IKERekey struct {
	Time     time.Time
	Old, New IKESA
}

// ChildRekey is charon's child-rekey event: the CHILD_SA Old was rekeyed
// into New (same ReqID, new UniqueID and SPIs). IKE is their IKE_SA, without
// children. charon keys the pair by child name only; Old.Key and New.Key are
// built as "<name>-<uniqueid>" like the keys of list-sas.
type ChildRekey struct {
	Time     time.Time
	IKE      IKESA
	Old, New ChildSA
}

// IKEUpdate is charon's ike-update event: the IKE_SA's addresses changed
// (NAT-T port float, MOBIKE). IKE holds the SA as it was before the change;
// LocalHost and RemoteHost are the new endpoints. During IKE_SA_INIT the SA
// may still be "(unnamed)".
type IKEUpdate struct {
	Time                  time.Time
	IKE                   IKESA
	LocalHost, RemoteHost netip.AddrPort
}

// Resync is not a charon event: Watch delivers it first after every
// (re)connection to charon and whenever events may have been lost. The
// consumer must then re-read the state with ListSAs: events before Resync
// may be missing.
type Resync struct {
	Time   time.Time
	Reason string
}

// Log is charon's log or control-log event: one line of charon's log.
// Watch does not subscribe to log events; Initiate and Terminate collect
// control-log lines into their errors.
type Log struct {
	Time    time.Time
	Group   string // subsystem, e.g. "IKE", "CFG", "NET"
	Level   int    // 0 (basic) to 4 (private)
	Thread  int
	IKEName string // "ikesa-name", if the line is about an IKE_SA
	IKEID   uint64 // "ikesa-uniqueid"
	Msg     string
}

// EventTime returns the time the event was received.
func (e IKEUpDown) EventTime() time.Time { return e.Time }

// EventTime returns the time the event was received.
func (e ChildUpDown) EventTime() time.Time { return e.Time }

// EventTime returns the time the event was received.
func (e IKERekey) EventTime() time.Time { return e.Time }

// EventTime returns the time the event was received.
func (e ChildRekey) EventTime() time.Time { return e.Time }

// EventTime returns the time the event was received.
func (e IKEUpdate) EventTime() time.Time { return e.Time }

// EventTime returns the time the event was received.
func (e Resync) EventTime() time.Time { return e.Time }

// EventTime returns the time the event was received.
func (e Log) EventTime() time.Time { return e.Time }

func (IKEUpDown) isEvent()   {}
func (ChildUpDown) isEvent() {}
func (IKERekey) isEvent()    {}
func (ChildRekey) isEvent()  {}
func (IKEUpdate) isEvent()   {}
func (Resync) isEvent()      {}
func (Log) isEvent()         {}

// ErrUnknownEvent is returned by DecodeEvent for an event name it does not
// model.
var ErrUnknownEvent = errors.New("vici: unknown event")

// Event names Watch subscribes to.
var watchedEvents = []string{"ike-updown", "child-updown", "ike-rekey", "child-rekey", "ike-update"}

// DecodeEvent decodes the body of the charon event called name, received at
// at. It understands ike-updown, child-updown, ike-rekey, child-rekey,
// ike-update, log and control-log; other names give ErrUnknownEvent. Keys
// it does not model are ignored; a malformed value or a missing SA section
// gives an error naming the event and, for values, the key and the value.
func DecodeEvent(name string, body *Msg, at time.Time) (Event, error) {
	ev, err := decodeEvent(name, body, at)
	if err != nil {
		if errors.Is(err, ErrUnknownEvent) {
			return nil, err
		}
		return nil, fmt.Errorf("vici: event %s: %w", name, err)
	}
	return ev, nil
}

func decodeEvent(name string, body *Msg, at time.Time) (Event, error) {
	switch name {
	case "ike-updown":
		key, sec, err := onlySection(body)
		if err != nil {
			return nil, err
		}
		ike, err := decodeIKESA(key, sec, false)
		if err != nil {
			return nil, err
		}
		return IKEUpDown{Time: at, Up: body.String("up") == "yes", IKE: ike}, nil

	case "child-updown":
		key, sec, err := onlySection(body)
		if err != nil {
			return nil, err
		}
		ike, err := decodeIKESA(key, sec, true)
		if err != nil {
			return nil, err
		}
		if len(ike.Children) != 1 {
			return nil, fmt.Errorf("%s: want one CHILD_SA in child-sas, got %d", key, len(ike.Children))
		}
		return ChildUpDown{Time: at, Up: body.String("up") == "yes", IKE: ike, Child: ike.Children[0]}, nil

	case "ike-rekey":
		key, sec, err := onlySection(body)
		if err != nil {
			return nil, err
		}
		oldSec, newSec := sec.Section("old"), sec.Section("new")
		if oldSec == nil || newSec == nil {
			return nil, fmt.Errorf("%s: missing old or new section", key)
		}
		o, err := decodeIKESA(key, oldSec, false)
		if err != nil {
			return nil, err
		}
		n, err := decodeIKESA(key, newSec, false)
		if err != nil {
			return nil, err
		}
		return IKERekey{Time: at, Old: o, New: n}, nil

	case "child-rekey":
		key, sec, err := onlySection(body)
		if err != nil {
			return nil, err
		}
		ike, err := decodeIKESA(key, sec, false)
		if err != nil {
			return nil, err
		}
		cs := sec.Section("child-sas")
		var pair *Msg
		var child string
		for _, k := range cs.Keys() {
			if s := cs.Section(k); s != nil {
				if pair != nil {
					return nil, fmt.Errorf("%s: more than one CHILD_SA in child-sas", key)
				}
				pair, child = s, k
			}
		}
		if pair == nil {
			return nil, fmt.Errorf("%s: no CHILD_SA in child-sas", key)
		}
		oldSec, newSec := pair.Section("old"), pair.Section("new")
		if oldSec == nil || newSec == nil {
			return nil, fmt.Errorf("%s: child-sas: %s: missing old or new section", key, child)
		}
		path := key + ": child-sas: " + child + ": "
		o, err := decodeChildSA(path, "old", oldSec)
		if err != nil {
			return nil, err
		}
		n, err := decodeChildSA(path, "new", newSec)
		if err != nil {
			return nil, err
		}
		o.Key = childKey(o, child)
		n.Key = childKey(n, child)
		return ChildRekey{Time: at, IKE: ike, Old: o, New: n}, nil

	case "ike-update":
		key, sec, err := onlySection(body)
		if err != nil {
			return nil, err
		}
		ike, err := decodeIKESA(key, sec, false)
		if err != nil {
			return nil, err
		}
		f := &fields{m: body}
		local := netip.AddrPortFrom(f.addr("local-host"), uint16(f.uint("local-port", 16)))
		remote := netip.AddrPortFrom(f.addr("remote-host"), uint16(f.uint("remote-port", 16)))
		if f.err != nil {
			return nil, f.err
		}
		return IKEUpdate{Time: at, IKE: ike, LocalHost: local, RemoteHost: remote}, nil

	case "log", "control-log":
		f := &fields{m: body}
		l := Log{
			Time:    at,
			Group:   f.str("group"),
			Level:   int(f.int("level", 32)),
			Thread:  int(f.int("thread", 32)),
			IKEName: f.str("ikesa-name"),
			IKEID:   f.uint("ikesa-uniqueid", 64),
			Msg:     f.str("msg"),
		}
		if f.err != nil {
			return nil, f.err
		}
		return l, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownEvent, name)
}

// onlySection returns the one section of an event body (the SA, keyed by
// its connection name); other keys of the body are values such as "up".
func onlySection(body *Msg) (string, *Msg, error) {
	var key string
	var sec *Msg
	for _, k := range body.Keys() {
		if s := body.Section(k); s != nil {
			if sec != nil {
				return "", nil, fmt.Errorf("more than one SA section (%q, %q)", key, k)
			}
			key, sec = k, s
		}
	}
	if sec == nil {
		return "", nil, errors.New("no SA section")
	}
	return key, sec, nil
}

// childKey builds the list-sas key of a CHILD_SA, "<name>-<uniqueid>".
func childKey(c ChildSA, fallback string) string {
	name := c.Name
	if name == "" {
		name = fallback
	}
	if c.UniqueID == 0 {
		return name
	}
	return name + "-" + strconv.FormatUint(c.UniqueID, 10)
}
