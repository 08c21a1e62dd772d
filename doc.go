// Package parley holds the chat domain of Parley: users, conversations,
// messages, the events that a committed write produces, the error codes of
// the v1 wire contract, and the few contracts (Store, Bus) that the core
// packages share. It imports only the standard library; every outside system
// (SQLite, PostgreSQL, NATS, APNs) is wrapped by a package of its own that
// implements these contracts.
package parley
