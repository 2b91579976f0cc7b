// Package fingerprints is btnsd's key store: the raw public keys of BTNS
// peers, named by fingerprint, with what an administrator decided about
// each (trusted or not, for which policies). It is the PAD of the BTNS
// design (DESIGN.md, "Fingerprints"; the OpenBSD iked BTNS patch looks
// keys up the same way, as files named after their fingerprint in
// pubkeys/fp).
//
// # Names of a key
//
// A Fingerprint is SHA-256 over the key's DER SubjectPublicKeyInfo (SPKI),
// shown as "SHA256:<base64>" like OpenSSH, and as lowercase hex in file
// names. A KeyID is SHA-1 over the same SPKI: charon's default identity for a
// raw key, which `swanctl --list-sas` prints as "a5:01:10:..." and swanctl.conf
// writes "keyid:#a50110...". Both are computed over the canonical encoding
// of the key, so the same key read from PEM, DER or an OpenSSH line has the
// same names, and they match what strongSwan's `pki --keyid` prints.
//
// # On disk
//
//	<root>/pubkeys/fp/<64 hex>        the key, PEM "PUBLIC KEY", mode 0644
//	<root>/pubkeys/fp/<64 hex>.json   its metadata (Meta), mode 0644
//	<root>/pubkeys/fp/.lock           writers' lock
//	<root>/private/host.pem           this host's private key, mode 0600
//
// The key file's content is checked against its name on every load.
// Writes are atomic (temporary file, fsync, rename, fsync of the
// directory) and run under an exclusive flock of .lock; readers take it
// shared. A file that cannot be used (corrupt, foreign, metadata missing or
// writable by others) is skipped and reported by Store.Problems; it never
// stops the store from loading.
//
// # Concurrency
//
// A Store is safe for concurrent use, and several processes may open the
// same root: the files are the truth, and Store.Reload (or Store.Watch,
// which calls it when the directory changes) brings a Store's memory index
// up to date cheaply. Lookups by fingerprint and keyid are map lookups.
package fingerprints
