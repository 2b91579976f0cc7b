package vici

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

type fixtureEvent struct {
	Time    string `json:"time"`
	Event   string `json:"event"`
	Message *Msg   `json:"message"`
}

func loadFixture(t *testing.T) map[string]fixtureEvent {
	t.Helper()
	b, err := os.ReadFile("testdata/events-examples.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx map[string]fixtureEvent
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	return fx
}

func decodeFixture(t *testing.T, fx map[string]fixtureEvent, name string) Event {
	t.Helper()
	e, ok := fx[name]
	if !ok {
		t.Fatalf("fixture has no %q", name)
	}
	ev, err := DecodeEvent(e.Event, e.Message, time.Unix(1, 0))
	if err != nil {
		t.Fatalf("DecodeEvent(%s): %v", name, err)
	}
	if !ev.EventTime().Equal(time.Unix(1, 0)) {
		t.Errorf("%s: Time = %v", name, ev.EventTime())
	}
	return ev
}

const (
	fxLocalID  = "86:64:cd:37:19:c8:5c:55:a2:ca:db:b4:83:19:16:e3:33:c3:d0:64"
	fxRemoteID = "a5:01:10:39:82:1c:86:98:f6:40:ab:25:fb:85:3a:a4:7a:e3:d9:bd"
)

func TestDecodeEventFixture(t *testing.T) {
	fx := loadFixture(t)
	seen := map[string]bool{}
	check := func(name string) Event { seen[name] = true; return decodeFixture(t, fx, name) }
	a := netip.MustParseAddr
	ts := func(s string) []TrafficSelector {
		v, err := ParseTS(s)
		if err != nil {
			t.Fatal(err)
		}
		return []TrafficSelector{v}
	}

	t.Run("ike-update NAT-T", func(t *testing.T) {
		ev := check("ike-update (IKE_SA_INIT NAT-T float)").(IKEUpdate)
		if ev.IKE.Name != "(unnamed)" || ev.IKE.UniqueID != 1 || ev.IKE.State != "CONNECTING" {
			t.Errorf("IKE = %+v", ev.IKE)
		}
		if ev.IKE.LocalPort != 500 || ev.IKE.RemoteHost != a("10.99.0.2") || ev.IKE.RemoteID != "%any" {
			t.Errorf("old endpoints/id = %+v", ev.IKE)
		}
		if ev.LocalHost != netip.MustParseAddrPort("10.99.0.1:4500") || ev.RemoteHost != netip.MustParseAddrPort("10.99.0.2:4500") {
			t.Errorf("new endpoints = %v %v", ev.LocalHost, ev.RemoteHost)
		}
		if !ev.IKE.NATAny || !ev.IKE.NATRemote || ev.IKE.NATLocal || ev.IKE.InitiatorSPI != "84812bd5ae54fc6e" {
			t.Errorf("NAT/SPI = %+v", ev.IKE)
		}
	})
	t.Run("ike-update MOBIKE", func(t *testing.T) {
		ev := check("ike-update (MOBIKE)").(IKEUpdate)
		if ev.IKE.Name != "rk" || ev.IKE.UniqueID != 2 || ev.IKE.Established != 4 || ev.IKE.LocalHost != a("10.99.0.1") {
			t.Errorf("IKE = %+v", ev.IKE)
		}
		if ev.LocalHost != netip.MustParseAddrPort("[fd00:99::1]:4500") || ev.RemoteHost != netip.MustParseAddrPort("[fd00:99::2]:4500") {
			t.Errorf("new endpoints = %v %v", ev.LocalHost, ev.RemoteHost)
		}
	})
	t.Run("ike-updown up", func(t *testing.T) {
		ev := check("ike-updown (up)").(IKEUpDown)
		want := IKESA{
			Name: "rk", UniqueID: 1, Version: 2, State: "ESTABLISHED",
			LocalHost: a("10.99.0.1"), RemoteHost: a("10.99.0.2"), LocalPort: 4500, RemotePort: 4500,
			LocalID: fxLocalID, RemoteID: fxRemoteID,
			InitiatorSPI: "84812bd5ae54fc6e", ResponderSPI: "be1b1dfbaa6a1674",
			NATRemote: true, NATAny: true,
			EncrAlg: "AES_CBC", EncrKeySize: 128, IntegAlg: "HMAC_SHA2_256_128",
			PRFAlg: "PRF_HMAC_SHA2_256", DHGroup: "CURVE_25519", RekeyTime: 13633,
		}
		if !ev.Up || !ikeEqual(ev.IKE, want) {
			t.Errorf("got %+v\nwant %+v", ev, want)
		}
	})
	t.Run("ike-updown down", func(t *testing.T) {
		ev := check("ike-updown (down)").(IKEUpDown)
		if ev.Up || ev.IKE.State != "DELETING" || ev.IKE.UniqueID != 1 || ev.IKE.RemoteID != fxRemoteID {
			t.Errorf("got %+v", ev)
		}
	})
	t.Run("child-updown up", func(t *testing.T) {
		ev := check("child-updown (up)").(ChildUpDown)
		want := ChildSA{
			Key: "rk-1", Name: "rk", UniqueID: 1, ReqID: 1, State: "INSTALLED", Mode: "TUNNEL",
			Protocol: "ESP", Encap: true, SPIIn: "24aff8d9", SPIOut: "54572682",
			EncrAlg: "AES_GCM_16", EncrKeySize: 128, RekeyTime: 3292, LifeTime: 3960,
			LocalTS: ts("10.99.0.1/32"), RemoteTS: ts("10.99.0.2/32"),
		}
		if !ev.Up || !childEqual(ev.Child, want) {
			t.Errorf("got %+v\nwant %+v", ev.Child, want)
		}
		if ev.IKE.UniqueID != 1 || len(ev.IKE.Children) != 1 || !childEqual(ev.IKE.Children[0], want) {
			t.Errorf("IKE = %+v", ev.IKE)
		}
	})
	t.Run("child-updown down", func(t *testing.T) {
		ev := check("child-updown (down)").(ChildUpDown)
		if ev.Up || ev.Child.Key != "rk-1" || ev.Child.InstallTime != 1 || ev.IKE.State != "DELETING" {
			t.Errorf("got %+v", ev)
		}
	})
	t.Run("child-rekey", func(t *testing.T) {
		ev := check("child-rekey").(ChildRekey)
		if ev.IKE.Name != "rk" || ev.IKE.UniqueID != 2 || len(ev.IKE.Children) != 0 || ev.IKE.LocalHost != a("fd00:99::1") {
			t.Errorf("IKE = %+v", ev.IKE)
		}
		o, n := ev.Old, ev.New
		if o.UniqueID != 2 || o.Key != "rk-2" || o.State != "REKEYED" || o.SPIIn != "a389586c" || o.SPIOut != "9e84d299" {
			t.Errorf("Old = %+v", o)
		}
		if n.UniqueID != 3 || n.Key != "rk-3" || n.State != "INSTALLED" || n.SPIIn != "7b24fd7c" || n.SPIOut != "a7d86740" {
			t.Errorf("New = %+v", n)
		}
		if o.ReqID != 1 || n.ReqID != 1 {
			t.Errorf("reqids %d %d, want 1 1", o.ReqID, n.ReqID)
		}
		if !tsEqual(o.LocalTS, ts("10.99.0.1/32")) || !tsEqual(n.RemoteTS, ts("fd00:99::2/128")) {
			t.Errorf("TS old %v new %v", o.LocalTS, n.RemoteTS)
		}
	})
	t.Run("ike-rekey", func(t *testing.T) {
		ev := check("ike-rekey").(IKERekey)
		if ev.Old.UniqueID != 1 || ev.New.UniqueID != 2 || ev.Old.Name != "rk" || ev.New.Name != "rk" {
			t.Errorf("got %+v", ev)
		}
		if ev.Old.InitiatorSPI != "b5b0d0468bcfe6fa" || ev.New.ResponderSPI != "a8bd95a5808c9f0f" || ev.New.RemoteID != fxRemoteID {
			t.Errorf("SPIs/ids: %+v", ev)
		}
	})
	t.Run("log", func(t *testing.T) {
		ev := check("log").(Log)
		if ev.Group != "NET" || ev.Level != 1 || ev.Thread != 8 || ev.IKEName != "(unnamed)" || ev.IKEID != 1 ||
			!strings.HasPrefix(ev.Msg, "received packet") {
			t.Errorf("got %+v", ev)
		}
	})
	for name := range fx {
		if !seen[name] {
			t.Errorf("fixture example %q is not tested", name)
		}
	}
}

func ikeEqual(a, b IKESA) bool {
	if len(a.Children) != len(b.Children) {
		return false
	}
	for i := range a.Children {
		if !childEqual(a.Children[i], b.Children[i]) {
			return false
		}
	}
	a.Children, b.Children = nil, nil
	return reflect.DeepEqual(a, b)
}

func childEqual(a, b ChildSA) bool {
	if !tsEqual(a.LocalTS, b.LocalTS) || !tsEqual(a.RemoteTS, b.RemoteTS) {
		return false
	}
	a.LocalTS, a.RemoteTS, b.LocalTS, b.RemoteTS = nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}

func tsEqual(a, b []TrafficSelector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustJSONMsg(t *testing.T, s string) *Msg {
	t.Helper()
	m := NewMsg()
	if err := json.Unmarshal([]byte(s), m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDecodeEventMalformed(t *testing.T) {
	tests := []struct {
		name, event, body string
		wantErr           []string // substrings
	}{
		{"bad uniqueid", "ike-updown", `{"up":"yes","rk":{"uniqueid":"x1"}}`, []string{"uniqueid", `"x1"`, "ike-updown"}},
		{"negative uniqueid", "ike-updown", `{"rk":{"uniqueid":"-1"}}`, []string{"uniqueid", `"-1"`}},
		{"bad port", "ike-updown", `{"rk":{"local-port":"70000"}}`, []string{"local-port", `"70000"`}},
		{"bad host", "ike-updown", `{"rk":{"remote-host":"10.0.0"}}`, []string{"remote-host", `"10.0.0"`}},
		{"bad bool", "ike-updown", `{"rk":{"nat-any":"maybe"}}`, []string{"nat-any", `"maybe"`}},
		{"no section", "ike-updown", `{"up":"yes"}`, []string{"no SA section"}},
		{"two sections", "ike-updown", `{"a":{},"b":{}}`, []string{"more than one"}},
		{"no child", "child-updown", `{"rk":{"uniqueid":"1"}}`, []string{"want one CHILD_SA"}},
		{"bad child bytes", "child-updown", `{"rk":{"child-sas":{"rk-1":{"bytes-in":"lots"}}}}`, []string{"rk-1", "bytes-in", `"lots"`}},
		{"bad ts", "child-updown", `{"rk":{"child-sas":{"rk-1":{"local-ts":["10.0.0.0/40"]}}}}`, []string{"local-ts", `"10.0.0.0/40"`}},
		{"rekey without new", "ike-rekey", `{"rk":{"old":{}}}`, []string{"missing old or new"}},
		{"child rekey without pair", "child-rekey", `{"rk":{"child-sas":{}}}`, []string{"no CHILD_SA"}},
		{"child rekey bad reqid", "child-rekey", `{"rk":{"child-sas":{"rk":{"old":{"reqid":"q"},"new":{}}}}}`, []string{"reqid", `"q"`}},
		{"update bad new port", "ike-update", `{"local-port":"x","rk":{}}`, []string{"local-port", `"x"`}},
		{"log bad level", "log", `{"level":"high"}`, []string{"level", `"high"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeEvent(tt.event, mustJSONMsg(t, tt.body), time.Now())
			if err == nil {
				t.Fatalf("DecodeEvent = %+v, want error", ev)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
	if _, err := DecodeEvent("list-sa", NewMsg(), time.Now()); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("unknown event: err = %v, want ErrUnknownEvent", err)
	}
}

func TestDecodeTolerant(t *testing.T) {
	// Unknown keys, unknown value shapes and missing keys are not errors.
	body := mustJSONMsg(t, `{"up":"yes","rk":{"uniqueid":"7","future-key":"x","tasks-queued":["A"],
		"local-vips":{"odd":"section"},"child-sas":{"rk-9":{"future":["x"]}}}}`)
	ev, err := DecodeEvent("child-updown", body, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cu := ev.(ChildUpDown)
	if cu.IKE.UniqueID != 7 || cu.Child.Key != "rk-9" || cu.IKE.LocalHost.IsValid() {
		t.Errorf("got %+v", cu)
	}
	sas, err := DecodeSAs(mustJSONMsg(t, `{"a":{"uniqueid":"1","local-host":"%any"},"b":{"uniqueid":"2"},"stray":"value"}`))
	if err != nil || len(sas) != 2 || sas[0].Name != "a" || sas[1].UniqueID != 2 || sas[0].LocalHost.IsValid() {
		t.Errorf("DecodeSAs = %+v, %v", sas, err)
	}
}
