// Package configs reads btnsd's policy files and turns them into what
// charon needs: VICI load-conn messages built exactly as swanctl builds
// them, plus btnsd's own settings for the connections btnsd expands into
// BTNS connections.
//
// Parsing and mapping do no VICI and no logging: they read files through
// an fs.FS and return values. The daemon watches the policy directory
// (Watch says when it may have changed), calls LoadDir, keeps the last good
// version of a file that turned bad, and sends only what Diff says changed.
//
// # Policy files
//
// A policy file is a swanctl.conf(5): a "connections" section with one
// section per connection, in strongSwan's settings syntax
// (strongswan.conf(5)): sections, "key = value" settings, '#' comments,
// quoted strings with escapes and line continuation, includes relative to
// the including file, repeated sections merged, and references
// ("name : other.section {") that inherit settings and subsections.
// ParseFile follows strongSwan 5.9.8's lexer and grammar rule by rule
// (settings_lexer.l, settings_parser.y, settings.c), including its less
// obvious behaviour, so that a file means to btnsd what it means to
// swanctl:
//
//   - a value runs to the end of the line, a '#' or a '}': "s { a = 1 b = 2 }"
//     is the section s with a = "1 b = 2";
//   - unquoted words of a value are joined by one space; quote a value to
//     keep its blanks, or to put a '#' into it ("keyid:#...");
//   - "key =" with nothing after it hides the key, also one inherited
//     through a reference;
//   - a section given twice is one section; a key given twice keeps its
//     first place and its last value;
//   - an include is expanded where it stands, even inside a section.
//
// Every key and section keeps its position (file:line:col), and every error
// is an *Error that prints as "file:line:col: message" and says what was
// expected.
//
// # From a file to load-conn
//
// Swanctl maps a parsed tree as src/swanctl/commands/load_conns.c does
// (5.9.8); the package's tests compare it with the real swanctl, talking to
// a fake VICI server, on many corner cases:
//
//   - one load-conn per section of "connections", with references
//     followed; the message is {name: body};
//   - in each section, its settings first, in order, then its subsections,
//     in order, recursively: auth rounds (local, local-1, remote-2, ...),
//     children and everything else keep the file's order and names;
//   - settings hidden by "key =" are left out;
//   - local_addrs, remote_addrs, proposals, esp_proposals, ah_proposals,
//     local_ts, remote_ts, vips, pools, groups and cert_policy (in any
//     section, any letter case) are lists split at commas, spaces trimmed,
//     empty elements dropped, a quoted element kept whole;
//   - certs, cacerts and pubkeys are lists of file contents: relative
//     names from x509/, x509ca/ and pubkey/ beside the policy file (as
//     "swanctl --load-conns --file <file>" does; Dirs can point elsewhere),
//     absolute names as they are; 0x<hex> and 0s<base64> are inline data;
//   - everything else is sent as the string written in the file: btnsd does
//     not interpret swanctl's keys, charon does.
//
// The root of the fs.FS stands for "/": absolute paths (includes, files,
// Dirs) are looked up with the leading '/' removed. The daemon reads the
// real file system with os.DirFS("/") and a directory such as
// "etc/btnsd/policy.d".
//
// # Where btnsd is stricter than swanctl
//
// btnsd rejects, with an error at the place of the problem, files that
// swanctl accepts but that are almost certainly mistakes or that swanctl
// would turn into a broken request:
//
//   - an include of a plain file name that does not exist (swanctl skips
//     it silently; a pattern such as conf.d/*.conf may still match nothing),
//     an include loop (swanctl loops until it runs out of files);
//   - a reference that names no section, or that loops or expands without
//     end (a section referencing its own ancestor: swanctl recurses forever
//     on some, cuts others at its path buffer, or runs for minutes);
//   - a key and a subsection of the same name in one section;
//   - section names with '%' or longer than swanctl's buffers (swanctl
//     looks up the wrong section), values or messages over VICI's limits;
//   - a relative certs/cacerts/pubkeys file under a key not written in
//     lowercase (swanctl would open it from its working directory);
//   - secrets, pools and authorities sections (not loaded by btnsd; a
//     silently ignored PSK would be worse);
//   - NUL bytes.
//
// And where swanctl, on a file it cannot parse, loads nothing and unloads
// every connection it finds in charon, btnsd reports the file and keeps
// running its last good version.
//
// # btnsd's settings: the btns section
//
// btnsd's own settings live in a section named btns, in a connection and in
// each of its children. A section, not btns_* keys, because a section
// cannot be mistaken for one of swanctl's keys, keeps btnsd's settings
// together, is inherited through references like anything else, and makes
// charon refuse the file loudly if someone loads it with plain swanctl
// (a BTNS policy loaded without btnsd's PAD would be wrong). LoadFile
// checks the btns sections and removes them from the body; everything else
// stays as swanctl would send it. A connection without a btns section, or
// with enabled = no, is passed through unchanged: its Body is what swanctl
// would send.
//
// In the connection, connections.<conn>.btns:
//
//	enabled = yes|no
//	    The BTNS flag. yes: btnsd expands the connection into the charon
//	    connections it owns (one per accepted trusted key, one for
//	    anonymous peers), using the connection as a template; its remote
//	    authentication is generated from peers and anonymous. no (the
//	    default): the connection is loaded as it is.
//	peers = all | none | <fingerprint>[, <fingerprint>...] | scope:<name>
//	    Which trusted keys the connection accepts: every key in btnsd's
//	    store that is trusted (all, the default), none (anonymous peers
//	    only), the keys listed, or the trusted keys of a named scope
//	    (letters, digits, '-', '_', '.'). A fingerprint is the SHA-256 of
//	    the key's DER SubjectPublicKeyInfo, written SHA256:<base64> (as
//	    btnsctl shows it) or as 64 hex digits (colons between bytes
//	    allowed). Only the syntax is checked here; the key store decides
//	    which keys exist and are trusted.
//	anonymous = yes|no
//	    Also accept unknown peers that authenticate with btnsd's publicly
//	    known PSK (RFC 5387 stand-alone BTNS: protects against passive
//	    attackers only). Default no. peers = none needs anonymous = yes.
//	max_sas = N
//	max_sas_per_addr = N
//	    Limits on the IKE SAs of the connection (all of its charon
//	    connections together), in all and per remote address; btnsd
//	    terminates the excess. N from 1 to 2147483647; leave the key out
//	    for no limit.
//	local = hostkey|config
//	    The local authentication: btnsd's host key (hostkey, the default;
//	    the connection must then have no local sections) or the
//	    connection's own local sections (config: a certificate, a PSK...,
//	    for RFC 5387's asymmetric modes; at least one local section
//	    needed).
//
// In a child, connections.<conn>.children.<child>.btns:
//
//	latch = yes|no
//	    Latch the flows this child protects (RFC 5660 connection
//	    latching). Default: yes in a BTNS connection, no otherwise.
//	on_break = reset|notify
//	    What happens to a latched flow whose latch breaks: reset (destroy
//	    its socket and alert; the default) or notify (alert only).
//
// Booleans accept what strongSwan accepts: yes, no, true, false, 1, 0,
// enabled, disabled, in any case. An unknown key, a child setting at the
// connection (or the reverse), a subsection of btns, a btns section
// anywhere else, or "btns = ..." written as a key is an error.
//
// # Example
//
// A complete example is in testdata/example.conf:
//
//	btns-defaults {
//	    version = 2
//	    proposals = aes256gcm16-prfsha384-ecp384, default
//	    btns {
//	        enabled = yes
//	    }
//	}
//
//	connections {
//	    # Hosts whose keys were trusted with btnsctl; at most 50 IKE SAs.
//	    lan : btns-defaults {
//	        remote_addrs = 192.0.2.0/24
//	        btns {
//	            peers = all
//	            max_sas = 50
//	            max_sas_per_addr = 2
//	        }
//	        children {
//	            host {
//	                mode = transport
//	                start_action = trap
//	                btns {
//	                    on_break = reset
//	                }
//	            }
//	        }
//	    }
//
//	    # Two pinned peers, and anyone else with the public PSK; flows are
//	    # only reported when their latch breaks.
//	    backup : btns-defaults {
//	        btns {
//	            peers = SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU, 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	            anonymous = yes
//	        }
//	        children {
//	            rsync {
//	                local_ts = dynamic[tcp/873]
//	                btns { on_break = notify }
//	            }
//	        }
//	    }
//
//	    # Not BTNS: loaded into charon exactly as swanctl would.
//	    office {
//	        remote_addrs = vpn.example.org
//	        local {
//	            auth = pubkey
//	            certs = me.pem
//	        }
//	        remote {
//	            auth = pubkey
//	            id = vpn.example.org
//	        }
//	        children {
//	            net { remote_ts = 10.0.0.0/8 }
//	        }
//	    }
//	}
//
// # Policy directories
//
// LoadDir reads every *.conf file of a directory, each on its own: a bad
// file is reported (File.Err) and loses its connections while the others
// load. Connection names must be unique across files; a name defined in two
// files is an error in both. Each File has a Hash over everything read for
// it (the file, its includes, its certificate and key files) and each Conn
// a Hash over its name, body and policy; Diff compares two Sets by these
// hashes. When the daemon keeps an old version of a bad file, it rebuilds
// the set it runs with NewSet, which checks the names again.
//
// References and includes work within a file (and what it includes): each
// policy file is a swanctl.conf of its own. A file that other policy files
// include should not end in .conf in the policy directory, or it is also
// loaded on its own.
package configs
