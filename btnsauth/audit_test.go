package btnsauth

import (
	"testing"

	"github.com/btnsd/btnsd/vici"
	"github.com/google/go-cmp/cmp"
)

// The bodies are list-conns output as charon 5.9.8 prints it (checked
// against swanctl --list-conns --raw).
func TestAudit(t *testing.T) {
	conns := []vici.Conn{
		{Name: "pinned", Body: msg(t, `{"remote-1":{"id":"74:16:c0","class":"public key","certs":["74:16:c0"],"cacerts":[]}}`)},
		{Name: "wild", Body: msg(t, `{"local-1":{"certs":[]},"remote-1":{"id":"%any","class":"public key","certs":[],"cacerts":[]}}`)},
		{Name: "noid", Body: msg(t, `{"remote-1":{"class":"public key","certs":[]}}`)},
		{Name: "ca", Body: msg(t, `{"remote-1":{"id":"%any","class":"public key","cacerts":["CN=ca"]}}`)},
		{Name: "psk", Body: msg(t, `{"remote-1":{"id":"%any","class":"pre-shared key"}}`)},
		{Name: "byid", Body: msg(t, `{"remote-1":{"id":"gw.example.org","class":"public key"}}`)},
		{Name: "otherid", Body: msg(t, `{"remote-1":{"id":"unrelated.example.org","class":"public key"}}`)},
		{Name: "anyclass", Body: msg(t, `{"remote-2":{"id":"%any","class":"any"}}`)},
		{Name: Prefix + "p.anon", Body: msg(t, `{"remote-1":{"id":"%any","class":"public key"}}`)},
	}
	got := Audit(conns, []string{"gw.example.org", "b1:b1"})
	var gotShort []string
	for _, f := range got {
		gotShort = append(gotShort, string(f.Severity)+" "+f.Conn+" "+f.Round)
	}
	want := []string{
		"unsafe wild remote-1",
		"unsafe noid remote-1",
		"warning byid remote-1",
		"unsafe anyclass remote-2",
	}
	if diff := cmp.Diff(want, gotShort); diff != "" {
		t.Errorf("Audit (-want +got):\n%s", diff)
	}
}
