// Package conformance checks a whole Parley node against the v1 wire
// contract (shared PROTOCOL.md) from the outside, as a third-party client
// would: it starts a real node behind a real HTTP server, speaks to it only
// with net/http and a real WebSocket client, and reads every answer as raw
// JSON, so that field names, nulls, types and formats are checked as the
// contract writes them rather than as the project's Go types decode them.
//
// The package has no code of its own besides this file: everything is in
// its tests.
package conformance
