// Package api holds the types of btnsd's HTTP/JSON API, served on a Unix
// socket (default /run/btnsd/btnsd.sock), and a client for it. Both the
// daemon and btnsctl use this package; btnsctl imports nothing else of the
// daemon.
//
// Paths are versioned (/v1/...). Errors are JSON objects {"error": "..."}
// with a 4xx or 5xx status.
package api

import (
	"time"
)

// DefaultSocket is where btnsd listens by default.
const DefaultSocket = "/run/btnsd/btnsd.sock"

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// Status is GET /v1/status: the daemon at a glance.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	HostKey KeyRef    `json:"host_key"`
	Charon  Charon    `json:"charon"`
	// Policies holds every policy file and its state.
	Policies []PolicyFile `json:"policies"`
	// Conns holds the charon connections btnsd wants loaded.
	Conns []Conn `json:"conns"`
	// Audit holds the foreign connections that BTNS would weaken.
	Audit []Finding `json:"audit"`
	Keys  KeyCounts `json:"keys"`
	// LastSync is when btnsd last brought charon in step.
	LastSync time.Time `json:"last_sync,omitzero"`
	// VICICalls counts the VICI commands btnsd sent, by command.
	VICICalls map[string]uint64 `json:"vici_calls"`
	// Errors are the errors of the last sync, if any.
	Errors []string `json:"errors,omitempty"`
}

// KeyRef names a public key.
type KeyRef struct {
	// Fingerprint is "SHA256:<base64>".
	Fingerprint string `json:"fingerprint"`
	// KeyID is charon's keyid, colon hex as swanctl --list-sas prints it.
	KeyID string `json:"keyid"`
}

// Charon is btnsd's view of charon.
type Charon struct {
	Socket    string `json:"socket"`
	Connected bool   `json:"connected"`
	// Restarts counts the charon restarts btnsd noticed.
	Restarts int `json:"restarts"`
}

// PolicyFile is one policy file.
type PolicyFile struct {
	File string `json:"file"`
	// Error says why the file as it is now is not in force (file:line:col).
	Error string `json:"error,omitempty"`
	// Running is "current", "last-good" (the file is bad; its previous
	// version runs) or "none".
	Running string   `json:"running"`
	Conns   []string `json:"conns,omitempty"`
}

// Conn is one charon connection btnsd owns.
type Conn struct {
	Name string `json:"name"`
	// Policy is the policy connection it comes from.
	Policy string `json:"policy"`
	// Peer is the fingerprint of the pinned key, if any.
	Peer      string `json:"peer,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	// Loaded says whether charon has the current version.
	Loaded bool   `json:"loaded"`
	Error  string `json:"error,omitempty"`
}

// Finding is an isolation audit finding.
type Finding struct {
	Conn     string `json:"conn"`
	Round    string `json:"round"`
	Severity string `json:"severity"`
	Reason   string `json:"reason"`
}

// KeyCounts summarises the key store.
type KeyCounts struct {
	Total    int      `json:"total"`
	Trusted  int      `json:"trusted"`
	Problems []string `json:"problems,omitempty"`
}

// Key is a key of the key store (GET /v1/keys, /v1/keys/{fp}).
type Key struct {
	Fingerprint string   `json:"fingerprint"`
	Hex         string   `json:"hex"`
	KeyID       string   `json:"keyid"`
	Type        string   `json:"type"`
	Name        string   `json:"name,omitempty"`
	Identity    string   `json:"identity,omitempty"`
	Trust       string   `json:"trust"`
	Scope       []string `json:"scope,omitempty"`
	PEM         string   `json:"pem"`
}

// Latch is a connection latch (RFC 5660) as the API shows it: GET
// /v1/latches, /v1/latches/{id} (INQUIRE_LATCH), /v1/latches/find
// (FIND_LATCH).
type Latch struct {
	ID    uint64 `json:"id"`
	State string `json:"state"` // LISTENER, ESTABLISHED, BROKEN, CLOSED
	// Proto is "tcp" or "udp"; Remote is empty for a LISTENER latch.
	Proto  string `json:"proto"`
	Local  string `json:"local"`
	Remote string `json:"remote,omitempty"`
	Cookie uint64 `json:"cookie"`
	// Origin is "policy", "listener" or "api".
	Origin      string `json:"origin"`
	Listener    uint64 `json:"listener,omitempty"`
	Disposition string `json:"disposition"` // reset or notify
	Peer        Peer   `json:"peer"`
	// Protection is the latched protection and quality of protection.
	Protection       Protection `json:"protection"`
	QoPIndeterminate bool       `json:"qop_indeterminate,omitempty"`
	// SAs are charon's uniqueids of the child SAs bound to the latch;
	// Conflicts those of covering child SAs that differ.
	SAs       []uint64 `json:"sas,omitempty"`
	Conflicts []uint64 `json:"conflicts,omitempty"`
	// KernelSAs are the kernel SAs that protect the flow (charon's
	// kernel-netlink): the SPIs of the bound child SAs found in the
	// kernel's SAD. Empty under kernel-libipsec.
	KernelSAs    []KernelSA `json:"kernel_sas,omitempty"`
	Lost         bool       `json:"lost,omitempty"`
	PolicyBroken bool       `json:"policy_broken,omitempty"`
	Reset        bool       `json:"reset,omitempty"`
	Created      time.Time  `json:"created"`
	Changed      time.Time  `json:"changed"`
	Reason       string     `json:"reason"`
}

// KernelSA is one of charon's child SAs in the kernel's SAD.
type KernelSA struct {
	Child    uint64 `json:"child"` // charon's uniqueid
	ReqID    uint32 `json:"reqid"`
	SPIIn    string `json:"spi_in"`  // hex, as charon prints it
	SPIOut   string `json:"spi_out"` // hex
	Protocol string `json:"protocol"`
	Mode     string `json:"mode"`
}

// Peer is the latched peer of a latch.
type Peer struct {
	// Kind is "key" (a trusted raw public key), "anonymous" (an IKE SA
	// lineage) or "" (a listener latch that asked for none).
	Kind        string `json:"kind"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// PublicKey is the peer's key in PEM, when it is in the key store.
	PublicKey string `json:"public_key,omitempty"`
	Lineage   uint64 `json:"lineage,omitempty"`
	// ID is the IKE identity the peer asserted.
	ID string `json:"id,omitempty"`
}

// Protection is the latched protection of a latch.
type Protection struct {
	Conn         string `json:"conn"`
	Child        string `json:"child"`
	Protocol     string `json:"protocol"`
	Mode         string `json:"mode"`
	Encap        bool   `json:"encap"`
	Encr         string `json:"encr,omitempty"`
	EncrKeySize  int    `json:"encr_keysize,omitempty"`
	Integ        string `json:"integ,omitempty"`
	IntegKeySize int    `json:"integ_keysize,omitempty"`
	DHGroup      string `json:"dh_group,omitempty"`
	LocalID      string `json:"local_id"`
}

// Alert is one latch transition (RFC 5660 2.3 ALERT), a line of GET
// /v1/alerts.
type Alert struct {
	Latch    uint64    `json:"latch"`
	Listener uint64    `json:"listener,omitempty"`
	Proto    string    `json:"proto"`
	Local    string    `json:"local"`
	Remote   string    `json:"remote,omitempty"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// CreateLatch is the body of POST /v1/latches: CREATE_CONNECTION_LATCH
// (Remote set) or CREATE_LISTENER_LATCH (Remote empty) for a flow the
// caller owns.
type CreateLatch struct {
	Proto  string `json:"proto"`
	Local  string `json:"local"`
	Remote string `json:"remote,omitempty"`
	// OnBreak is "reset" or "notify"; empty for the policy's.
	OnBreak string `json:"on_break,omitempty"`
	// Peer, if set, is the fingerprint the caller wants as peer.
	Peer string `json:"peer,omitempty"`
}

// CloseLatch is the body of POST /v1/latches/{id}/close.
type CloseLatch struct {
	Reason string `json:"reason,omitempty"`
}

// ChannelBinding is GET /v1/latches/{id}/channel-binding.
type ChannelBinding struct {
	Latch uint64 `json:"latch"`
	// Value is the channel-binding value in lowercase hex.
	Value string `json:"value"`
	// Label names the construction (fingerprints.ChannelBinding).
	Label    string `json:"label"`
	LocalKey string `json:"local_key"` // SHA256:... of this host's key
	PeerKey  string `json:"peer_key"`  // SHA256:... of the peer's key
}
