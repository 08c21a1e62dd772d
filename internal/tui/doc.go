// Package tui is the terminal front end of the Parley client: the
// full-screen chat of `parley chat` (Run), and what the one-shot commands
// of cmd/parley share with it: a directory of user names kept in the
// profile (Directory), finding a conversation by id or by username
// (Directory.Conversation), how a photo, video or file reads on one line
// (MediaLabel, MessageText), and letting the outbox drain before a
// command exits (Settle). All the chat logic lives in the SDK (package
// client); this package only shows it.
package tui
