package vicitest

import (
	_ "embed"
	"encoding/json"
	"testing"
	"time"

	"github.com/btnsd/btnsd/vici"
)

// examplesJSON is a copy of shared/strongswan/events-examples.json: events
// captured from charon 5.9.8 (a test checks that the copy in vici/testdata
// is the same).
//
//go:embed testdata/events-examples.json
var examplesJSON []byte

// Example is one captured charon event as recorded: its name and body.
type Example struct {
	Event   string
	Message *vici.Msg
}

// RawExamples returns the captured events by their description (e.g.
// "child-updown (up)", "ike-update (MOBIKE)"), undecoded, as fresh copies
// that a test may modify.
func RawExamples(tb testing.TB) map[string]Example {
	tb.Helper()
	var raw map[string]struct {
		Time    string    `json:"time"`
		Event   string    `json:"event"`
		Message *vici.Msg `json:"message"`
	}
	if err := json.Unmarshal(examplesJSON, &raw); err != nil {
		tb.Fatalf("vicitest: events-examples.json: %v", err)
	}
	out := make(map[string]Example, len(raw))
	for k, v := range raw {
		out[k] = Example{Event: v.Event, Message: v.Message}
	}
	return out
}

// Examples returns the captured events by their description, decoded with
// vici.DecodeEvent. Their Time is the capture's time of day on 1 January
// of year 0, UTC. It fails tb if an example does not decode.
func Examples(tb testing.TB) map[string]vici.Event {
	tb.Helper()
	var raw map[string]struct {
		Time    string    `json:"time"`
		Event   string    `json:"event"`
		Message *vici.Msg `json:"message"`
	}
	if err := json.Unmarshal(examplesJSON, &raw); err != nil {
		tb.Fatalf("vicitest: events-examples.json: %v", err)
	}
	out := make(map[string]vici.Event, len(raw))
	for k, v := range raw {
		at, err := time.Parse("15:04:05.000", v.Time)
		if err != nil {
			tb.Fatalf("vicitest: example %q: time: %v", k, err)
		}
		ev, err := vici.DecodeEvent(v.Event, v.Message, at)
		if err != nil {
			tb.Fatalf("vicitest: example %q: %v", k, err)
		}
		out[k] = ev
	}
	return out
}
