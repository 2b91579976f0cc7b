// Package configs reads btnsd policy files: swanctl.conf syntax, parsed as
// strongSwan parses it, mapped to VICI load-conn messages as swanctl maps
// them, plus btnsd's own settings.
package configs
