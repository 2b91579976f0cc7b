package btnsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/btnsd/btnsd/vici"
)

// Severity grades an audit finding.
type Severity string

const (
	// Unsafe: the connection accepts every key btnsd pins. btnsd refuses to
	// run beside it unless told otherwise.
	Unsafe Severity = "unsafe"
	// Warning: the connection accepts some pinned keys (those asserting the
	// identity it names).
	Warning Severity = "warning"
)

// Finding is one connection that BTNS would weaken.
type Finding struct {
	Conn     string   `json:"conn"`
	Round    string   `json:"round"`
	Severity Severity `json:"severity"`
	Reason   string   `json:"reason"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: connection %q, %s: %s", f.Severity, f.Conn, f.Round, f.Reason)
}

// Audit checks the connections btnsd does not own (as list-conns reports
// them) for ones that BTNS would weaken. charon trusts every key named in
// any connection's pubkeys globally, so a foreign connection that
// authenticates peers by public key without pinning keys or a CA starts
// accepting the keys btnsd pins: with remote id %any it accepts them all
// (Unsafe); with another id it accepts pinned keys whose connection asserts
// that identity (Warning, reported when one of identities matches).
//
// identities are the IKE identities of the keys btnsd pins (keyids in
// colon-hex as charon prints them, and stored identities).
func Audit(conns []vici.Conn, identities []string) []Finding {
	var out []Finding
	for _, c := range conns {
		if Owned(c.Name) || c.Body == nil {
			continue
		}
		for _, round := range c.Body.Keys() {
			if round != "remote" && !strings.HasPrefix(round, "remote-") {
				continue
			}
			r := c.Body.Section(round)
			if r == nil {
				continue
			}
			class := r.String("class")
			if class != "public key" && class != "any" && class != "" {
				continue
			}
			if len(r.List("certs")) > 0 || len(r.List("cacerts")) > 0 || r.String("ca_id") != "" {
				continue
			}
			id := r.String("id")
			classText := "authenticates peers by public key"
			if class != "public key" {
				classText = "accepts any authentication class"
			}
			switch {
			case id == "" || id == "%any":
				out = append(out, Finding{Conn: c.Name, Round: round, Severity: Unsafe,
					Reason: classText + " with remote id %any and no pinned keys or CA: it would accept every key btnsd trusts; pin its keys (pubkeys) or a CA (cacerts)"})
			case slices.Contains(identities, id):
				out = append(out, Finding{Conn: c.Name, Round: round, Severity: Warning,
					Reason: fmt.Sprintf("%s with remote id %q and no pinned keys or CA: it would accept the key btnsd trusts for that identity", classText, id)})
			}
		}
	}
	return out
}
