package vici

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// TrafficSelector is one IPsec traffic selector as charon prints it in
// list-sas, list-conns and SA events, e.g. "10.0.0.0/24[tcp/80]".
//
// The address part is exactly one of: Prefix (a CIDR subnet or a single
// host, the usual case), First..Last (an address range that is not a CIDR
// subnet, printed "a..b"), Dynamic (the "dynamic" placeholder of a
// connection's configuration, replaced by the IKE address once an SA
// exists), or nothing at all (any address of either family, written as just
// the bracket part, e.g. "[tcp/http]").
//
// Proto 0 means any protocol. FromPort..ToPort is the port range, 0..65535
// for any port; FromPort 65535 with ToPort 0 is charon's OPAQUE range. For
// ICMP and ICMPv6 the 16-bit "port" holds type<<8 | code, as in charon. Note
// that the zero TrafficSelector has the port range 0..0; ParseTS always fills
// the range in.
//
// TrafficSelector is a comparable value.
type TrafficSelector struct {
	// Prefix is the address part when it is a subnet or a host.
	Prefix netip.Prefix
	// First and Last bound the address part when it is a range that is not
	// a CIDR subnet; both are invalid otherwise.
	First, Last netip.Addr
	// Dynamic is true for "dynamic" (an unresolved configuration value).
	Dynamic bool
	// Proto is the IP protocol number, 0 for any.
	Proto uint8
	// FromPort and ToPort bound the ports (0..65535 for any).
	FromPort, ToPort uint16
}

const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// protoNames maps the protocol names charon prints (getprotobynumber, from
// Debian's /etc/protocols) to their numbers. Unknown protocols are printed
// as numbers, which ParseTS accepts too.
var protoNames = map[string]uint8{
	"icmp": 1, "igmp": 2, "ipencap": 4, "tcp": 6, "udp": 17, "ipv6": 41,
	"ipv6-route": 43, "ipv6-frag": 44, "gre": 47, "esp": 50, "ah": 51,
	"ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132,
	"udplite": 136,
}

// protoByNumber is the printed name of each protocol in protoNames.
var protoByNumber = func() map[uint8]string {
	m := make(map[uint8]string, len(protoNames))
	for name, n := range protoNames {
		if name == "icmpv6" {
			continue // an alias; charon prints ipv6-icmp
		}
		m[n] = name
	}
	return m
}()

// serviceNames maps the service names charon may print for a single port
// (getservbyport, from Debian's /etc/services) to their port numbers, plus a
// few common aliases.
var serviceNames = map[string]uint16{
	"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25,
	"domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80,
	"www": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111, "auth": 113,
	"nntp": 119, "ntp": 123, "epmap": 135, "netbios-ns": 137,
	"netbios-dgm": 138, "netbios-ssn": 139, "imap2": 143, "imap": 143,
	"snmp": 161, "snmp-trap": 162, "bgp": 179, "ldap": 389, "https": 443,
	"microsoft-ds": 445, "isakmp": 500, "exec": 512, "biff": 512,
	"login": 513, "who": 513, "shell": 514, "syslog": 514, "printer": 515,
	"submission": 587, "ldaps": 636, "rsync": 873, "imaps": 993,
	"pop3s": 995, "openvpn": 1194, "l2f": 1701, "radius": 1812,
	"radius-acct": 1813, "nfs": 2049, "mysql": 3306, "ipsec-nat-t": 4500,
	"sip": 5060, "postgresql": 5432,
}

// ParseTS parses a traffic selector in the form charon prints it:
//
//	10.99.0.1/32          fd00::/64          10.0.0.1..10.0.0.5
//	10.0.0.0/24[tcp]      10.0.0.0/24[tcp/80]  10.0.0.0/24[tcp/http]
//	0.0.0.0/0[udp/1024-65535]  10.0.0.0/8[6/80]  ::/0[ipv6-icmp/128]
//	10.0.0.0/8[icmp/3(1)]  10.0.0.0/8[0/80]  dynamic  dynamic[udp/isakmp]
//	[tcp/http]            (the bracket part alone: any address)
//
// It also accepts the swanctl.conf spellings "any", "opaque" and "a-b"
// address ranges. A bare address is a host prefix. Protocols and services
// may be names (the common ones charon prints) or numbers. For ICMP and
// ICMPv6 a port is written type or type(code), as charon prints it.
func ParseTS(s string) (TrafficSelector, error) {
	ts, err := parseTS(s)
	if err != nil {
		return TrafficSelector{}, fmt.Errorf("vici: traffic selector %q: %w", s, err)
	}
	return ts, nil
}

func parseTS(s string) (TrafficSelector, error) {
	ts := TrafficSelector{FromPort: 0, ToPort: 0xffff}
	addr, pp, hasPP := strings.Cut(s, "[")
	if hasPP {
		inner, ok := strings.CutSuffix(pp, "]")
		if !ok {
			return ts, errors.New("missing ']'")
		}
		if err := ts.parseProtoPort(inner); err != nil {
			return ts, err
		}
	}
	switch {
	case addr == "":
		if !hasPP {
			return ts, errors.New("empty")
		}
	case addr == "dynamic":
		ts.Dynamic = true
	case strings.Contains(addr, "..") || (strings.Contains(addr, "-") && !strings.Contains(addr, "/")):
		sep := ".."
		if !strings.Contains(addr, sep) {
			sep = "-"
		}
		a, b, _ := strings.Cut(addr, sep)
		first, err := parseHost(a)
		if err != nil {
			return ts, err
		}
		last, err := parseHost(b)
		if err != nil {
			return ts, err
		}
		if first.Is4() != last.Is4() {
			return ts, errors.New("range mixes address families")
		}
		if last.Less(first) {
			return ts, errors.New("range ends before it starts")
		}
		if p, ok := rangePrefix(first, last); ok {
			ts.Prefix = p
		} else {
			ts.First, ts.Last = first, last
		}
	case strings.Contains(addr, "/"):
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return ts, err
		}
		ts.Prefix = p.Masked()
	default:
		a, err := parseHost(addr)
		if err != nil {
			return ts, err
		}
		ts.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	return ts, nil
}

func parseHost(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return a, nil
}

// rangePrefix returns the prefix that covers exactly first..last, if any.
func rangePrefix(first, last netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits).Masked()
		if p.Addr() == first && lastAddr(p) == last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (ts *TrafficSelector) parseProtoPort(s string) error {
	proto, port, hasPort := strings.Cut(s, "/")
	switch proto {
	case "any", "":
		if proto == "" && !hasPort {
			return errors.New("empty protocol")
		}
		ts.Proto = 0
	default:
		if n, ok := protoNames[proto]; ok {
			ts.Proto = n
			break
		}
		n, err := strconv.ParseUint(proto, 10, 8)
		if err != nil {
			return fmt.Errorf("unknown protocol %q", proto)
		}
		ts.Proto = uint8(n)
	}
	if !hasPort {
		return nil
	}
	switch {
	case port == "any":
		return nil
	case port == "opaque" || port == "OPAQUE":
		ts.FromPort, ts.ToPort = 0xffff, 0
		return nil
	case port == "":
		return errors.New("empty port")
	}
	icmp := ts.Proto == protoICMP || ts.Proto == protoICMPv6
	parse := parsePort
	if icmp {
		parse = parseICMP
	}
	if n, ok := serviceNames[port]; ok && !icmp {
		ts.FromPort, ts.ToPort = n, n // names may contain '-'
		return nil
	}
	a, b, isRange := strings.Cut(port, "-")
	from, err := parse(a)
	if err != nil {
		return err
	}
	to := from
	if isRange {
		if to, err = parse(b); err != nil {
			return err
		}
		if to < from {
			return fmt.Errorf("port range %q ends before it starts", port)
		}
	}
	ts.FromPort, ts.ToPort = from, to
	return nil
}

func parsePort(s string) (uint16, error) {
	if n, ok := serviceNames[s]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("unknown port or service %q", s)
	}
	return uint16(n), nil
}

// parseICMP parses "type" or "type(code)" into type<<8 | code.
func parseICMP(s string) (uint16, error) {
	typ, code := s, "0"
	if t, c, ok := strings.Cut(s, "("); ok {
		c, ok = strings.CutSuffix(c, ")")
		if !ok {
			return 0, fmt.Errorf("bad ICMP type(code) %q", s)
		}
		typ, code = t, c
	}
	t, err := strconv.ParseUint(typ, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("bad ICMP type %q", s)
	}
	c, err := strconv.ParseUint(code, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("bad ICMP code %q", s)
	}
	return uint16(t)<<8 | uint16(c), nil
}

// anyPorts reports whether ts covers every port.
func (ts TrafficSelector) anyPorts() bool { return ts.FromPort == 0 && ts.ToPort == 0xffff }

// opaque reports whether ts has charon's OPAQUE port range.
func (ts TrafficSelector) opaque() bool { return ts.FromPort == 0xffff && ts.ToPort == 0 }

// String returns ts in charon's printed form, with protocol names where
// charon would print one and ports as numbers, so that ParseTS(ts.String())
// gives ts back.
func (ts TrafficSelector) String() string {
	var b strings.Builder
	switch {
	case ts.Dynamic:
		b.WriteString("dynamic")
	case ts.First.IsValid():
		b.WriteString(ts.First.String())
		b.WriteString("..")
		b.WriteString(ts.Last.String())
	case ts.Prefix.IsValid():
		b.WriteString(ts.Prefix.String())
	}
	if ts.Proto == 0 && ts.anyPorts() {
		if b.Len() == 0 {
			return "[0]" // any address, any protocol: keep it parseable
		}
		return b.String()
	}
	b.WriteByte('[')
	if name, ok := protoByNumber[ts.Proto]; ok {
		b.WriteString(name)
	} else {
		b.WriteString(strconv.Itoa(int(ts.Proto)))
	}
	if !ts.anyPorts() {
		b.WriteByte('/')
		icmp := ts.Proto == protoICMP || ts.Proto == protoICMPv6
		switch {
		case ts.opaque():
			b.WriteString("OPAQUE")
		case icmp:
			writeICMP(&b, ts.FromPort)
			if ts.ToPort != ts.FromPort {
				b.WriteByte('-')
				writeICMP(&b, ts.ToPort)
			}
		default:
			b.WriteString(strconv.Itoa(int(ts.FromPort)))
			if ts.ToPort != ts.FromPort {
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(int(ts.ToPort)))
			}
		}
	}
	b.WriteByte(']')
	return b.String()
}

func writeICMP(b *strings.Builder, port uint16) {
	b.WriteString(strconv.Itoa(int(port >> 8)))
	if code := port & 0xff; code != 0 {
		fmt.Fprintf(b, "(%d)", code)
	}
}

// Contains reports whether a packet of protocol proto to or from addr and
// port falls under ts. For ICMP and ICMPv6, port is type<<8 | code. An
// IPv4-mapped IPv6 addr is matched as the IPv4 address it carries (that is
// what goes on the wire). A Dynamic selector contains nothing, and an OPAQUE
// port range contains no port.
func (ts TrafficSelector) Contains(proto uint8, addr netip.Addr, port uint16) bool {
	if ts.Dynamic || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	switch {
	case ts.First.IsValid():
		if addr.Is4() != ts.First.Is4() || addr.Less(ts.First) || ts.Last.Less(addr) {
			return false
		}
	case ts.Prefix.IsValid():
		if !ts.Prefix.Contains(addr) {
			return false
		}
	}
	if ts.Proto != 0 && ts.Proto != proto {
		return false
	}
	if ts.opaque() {
		return false
	}
	return ts.FromPort <= port && port <= ts.ToPort
}
