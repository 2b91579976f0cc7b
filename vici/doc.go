// Package vici is btnsd's typed layer over charon's VICI protocol, built on
// govici. It is the only package of btnsd that imports govici.
//
// It offers three things:
//
//   - Msg, an ordered message tree that the rest of btnsd uses to build and
//     inspect VICI messages without knowing the wire format;
//   - a command Client with a deadline on every call and typed errors that
//     carry charon's errmsg;
//   - an event stream of typed SA events that survives charon restarts and
//     tells its consumer when it must resynchronise from list-sas.
package vici
