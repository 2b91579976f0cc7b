package vici

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseTS(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	any := func(ts TrafficSelector) TrafficSelector { ts.ToPort = 0xffff; return ts }
	tests := []struct {
		in     string
		want   TrafficSelector
		str    string // String(), when different from in
		hasErr bool
	}{
		{in: "10.99.0.1/32", want: any(TrafficSelector{Prefix: pfx("10.99.0.1/32")})},
		{in: "10.99.0.1", want: any(TrafficSelector{Prefix: pfx("10.99.0.1/32")}), str: "10.99.0.1/32"},
		{in: "fd00::/64", want: any(TrafficSelector{Prefix: pfx("fd00::/64")})},
		{in: "fd00:99::1/128", want: any(TrafficSelector{Prefix: pfx("fd00:99::1/128")})},
		{in: "0.0.0.0/0", want: any(TrafficSelector{Prefix: pfx("0.0.0.0/0")})},
		{in: "10.0.0.7/24", want: any(TrafficSelector{Prefix: pfx("10.0.0.0/24")}), str: "10.0.0.0/24"},
		{in: "10.0.0.0/24[tcp]", want: any(TrafficSelector{Prefix: pfx("10.0.0.0/24"), Proto: 6})},
		{in: "10.0.0.0/24[tcp/80]", want: TrafficSelector{Prefix: pfx("10.0.0.0/24"), Proto: 6, FromPort: 80, ToPort: 80}},
		{in: "10.0.0.0/24[tcp/http]", want: TrafficSelector{Prefix: pfx("10.0.0.0/24"), Proto: 6, FromPort: 80, ToPort: 80}, str: "10.0.0.0/24[tcp/80]"},
		{in: "[tcp/http]", want: TrafficSelector{Proto: 6, FromPort: 80, ToPort: 80}, str: "[tcp/80]"},
		{in: "[tcp/https]", want: TrafficSelector{Proto: 6, FromPort: 443, ToPort: 443}, str: "[tcp/443]"},
		{in: "[tcp/ssh]", want: TrafficSelector{Proto: 6, FromPort: 22, ToPort: 22}, str: "[tcp/22]"},
		{in: "[udp/domain]", want: TrafficSelector{Proto: 17, FromPort: 53, ToPort: 53}, str: "[udp/53]"},
		{in: "[udp/isakmp]", want: TrafficSelector{Proto: 17, FromPort: 500, ToPort: 500}, str: "[udp/500]"},
		{in: "[udp/ipsec-nat-t]", want: TrafficSelector{Proto: 17, FromPort: 4500, ToPort: 4500}, str: "[udp/4500]"},
		{in: "[udp/1024-65535]", want: TrafficSelector{Proto: 17, FromPort: 1024, ToPort: 65535}},
		{in: "10.0.0.0/8[6/80]", want: TrafficSelector{Prefix: pfx("10.0.0.0/8"), Proto: 6, FromPort: 80, ToPort: 80}, str: "10.0.0.0/8[tcp/80]"},
		{in: "10.0.0.0/8[253/80]", want: TrafficSelector{Prefix: pfx("10.0.0.0/8"), Proto: 253, FromPort: 80, ToPort: 80}},
		{in: "10.0.0.0/8[0/80]", want: TrafficSelector{Prefix: pfx("10.0.0.0/8"), FromPort: 80, ToPort: 80}},
		{in: "10.0.0.0/8[any/80]", want: TrafficSelector{Prefix: pfx("10.0.0.0/8"), FromPort: 80, ToPort: 80}, str: "10.0.0.0/8[0/80]"},
		{in: "[icmp/8]", want: TrafficSelector{Proto: 1, FromPort: 8 << 8, ToPort: 8 << 8}},
		{in: "[icmp/3(1)]", want: TrafficSelector{Proto: 1, FromPort: 3<<8 | 1, ToPort: 3<<8 | 1}},
		{in: "[icmp/8-8(255)]", want: TrafficSelector{Proto: 1, FromPort: 8 << 8, ToPort: 8<<8 | 255}},
		{in: "::/0[ipv6-icmp/128]", want: TrafficSelector{Prefix: pfx("::/0"), Proto: 58, FromPort: 128 << 8, ToPort: 128 << 8}},
		{in: "[udp/OPAQUE]", want: TrafficSelector{Proto: 17, FromPort: 0xffff, ToPort: 0}},
		{in: "[udp/opaque]", want: TrafficSelector{Proto: 17, FromPort: 0xffff, ToPort: 0}, str: "[udp/OPAQUE]"},
		{in: "[udp/any]", want: any(TrafficSelector{Proto: 17}), str: "[udp]"},
		{in: "dynamic", want: any(TrafficSelector{Dynamic: true})},
		{in: "dynamic[udp/isakmp]", want: TrafficSelector{Dynamic: true, Proto: 17, FromPort: 500, ToPort: 500}, str: "dynamic[udp/500]"},
		{in: "10.0.0.1..10.0.0.5", want: any(TrafficSelector{First: addr("10.0.0.1"), Last: addr("10.0.0.5")})},
		{in: "10.0.0.1-10.0.0.5", want: any(TrafficSelector{First: addr("10.0.0.1"), Last: addr("10.0.0.5")}), str: "10.0.0.1..10.0.0.5"},
		{in: "10.0.0.0..10.0.0.255", want: any(TrafficSelector{Prefix: pfx("10.0.0.0/24")}), str: "10.0.0.0/24"},
		{in: "fd00::1..fd00::9[tcp]", want: any(TrafficSelector{First: addr("fd00::1"), Last: addr("fd00::9"), Proto: 6})},

		{in: "", hasErr: true},
		{in: "10.0.0.0/33", hasErr: true},
		{in: "10.0.0.0/24[tcp", hasErr: true},
		{in: "10.0.0.0/24[nosuchproto]", hasErr: true},
		{in: "10.0.0.0/24[tcp/nosuchservice]", hasErr: true},
		{in: "10.0.0.0/24[tcp/70000]", hasErr: true},
		{in: "10.0.0.0/24[tcp/90-80]", hasErr: true},
		{in: "10.0.0.0/24[tcp/]", hasErr: true},
		{in: "10.0.0.0/24[256]", hasErr: true},
		{in: "10.0.0.5..10.0.0.1", hasErr: true},
		{in: "10.0.0.1..fd00::1", hasErr: true},
		{in: "[icmp/3(1]", hasErr: true},
		{in: "[icmp/300]", hasErr: true},
		{in: "fe80::1%eth0", hasErr: true},
		{in: "not-an-address", hasErr: true},
		{in: "[]", hasErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTS(tt.in)
			if tt.hasErr {
				if err == nil {
					t.Fatalf("ParseTS(%q) = %+v, want error", tt.in, got)
				}
				if !strings.Contains(err.Error(), tt.in) {
					t.Errorf("error %q does not quote the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTS(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseTS(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String() = %q, want %q", s, wantStr)
			}
			back, err := ParseTS(got.String())
			if err != nil || back != got {
				t.Errorf("ParseTS(String()) = %+v, %v; want %+v", back, err, got)
			}
		})
	}
}

func TestTSContains(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		ts    string
		proto uint8
		addr  string
		port  uint16
		want  bool
	}{
		{"10.99.0.1/32", 6, "10.99.0.1", 443, true},
		{"10.99.0.1/32", 17, "10.99.0.2", 443, false},
		{"10.0.0.0/24", 0, "10.0.0.255", 0, true},
		{"10.0.0.0/24", 6, "::ffff:10.0.0.9", 22, true},
		{"10.0.0.0/24", 6, "fd00::1", 22, false},
		{"fd00::/64", 6, "fd00::1", 22, true},
		{"fd00::/64", 6, "fd00:0:0:1::1", 22, false},
		{"10.0.0.0/24[tcp]", 6, "10.0.0.1", 1, true},
		{"10.0.0.0/24[tcp]", 17, "10.0.0.1", 1, false},
		{"10.0.0.0/24[tcp/80]", 6, "10.0.0.1", 80, true},
		{"10.0.0.0/24[tcp/80]", 6, "10.0.0.1", 81, false},
		{"[udp/1024-65535]", 17, "192.0.2.1", 1024, true},
		{"[udp/1024-65535]", 17, "2001:db8::1", 65535, true},
		{"[udp/1024-65535]", 17, "192.0.2.1", 1023, false},
		{"[0/80]", 17, "192.0.2.1", 80, true},
		{"[icmp/8]", 1, "192.0.2.1", 8 << 8, true},
		{"[icmp/8]", 1, "192.0.2.1", 0, false},
		{"10.0.0.1..10.0.0.5", 6, "10.0.0.5", 1, true},
		{"10.0.0.1..10.0.0.5", 6, "10.0.0.6", 1, false},
		{"10.0.0.1..10.0.0.5", 6, "::ffff:10.0.0.3", 1, true},
		{"dynamic", 6, "10.0.0.1", 1, false},
		{"[udp/OPAQUE]", 17, "10.0.0.1", 0, false},
	}
	for _, tt := range tests {
		ts, err := ParseTS(tt.ts)
		if err != nil {
			t.Fatal(err)
		}
		if got := ts.Contains(tt.proto, a(tt.addr), tt.port); got != tt.want {
			t.Errorf("%s.Contains(%d, %s, %d) = %v, want %v", tt.ts, tt.proto, tt.addr, tt.port, got, tt.want)
		}
	}
	if (TrafficSelector{Prefix: netip.MustParsePrefix("0.0.0.0/0"), ToPort: 0xffff}).Contains(6, netip.Addr{}, 1) {
		t.Error("an invalid address must not be contained")
	}
}

func FuzzParseTS(f *testing.F) {
	for _, s := range []string{
		"10.99.0.1/32", "fd00::/64", "10.0.0.0/24[tcp]", "10.0.0.0/24[tcp/80]",
		"[tcp/http]", "[udp/1024-65535]", "[6/80]", "[icmp/8]", "[icmp/3(1)-4(2)]",
		"dynamic", "10.0.0.1..10.0.0.5", "10.0.0.1-10.0.0.5", "[udp/OPAQUE]",
		"::ffff:1.2.3.4/128[ipv6-icmp/1]", "[0]", "[any]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTS(s)
		if err != nil {
			return
		}
		str := ts.String()
		back, err := ParseTS(str)
		if err != nil {
			t.Fatalf("ParseTS(%q) ok, but its String %q does not parse: %v", s, str, err)
		}
		if back != ts {
			t.Fatalf("round trip of %q via %q: %+v != %+v", s, str, back, ts)
		}
		_ = ts.Contains(6, netip.MustParseAddr("10.0.0.1"), 80)
		_ = ts.Contains(17, netip.MustParseAddr("fd00::1"), 80)
	})
}
