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
