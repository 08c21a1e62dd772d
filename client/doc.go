// Package client is the Go SDK of Parley: an offline-first chat client that
// never loses or repeats a message. Any Go program (the parley terminal
// client, tests, bots) imports it; its algorithm is also the reference that
// the iOS app follows, so it is described here in full, with its timings.
//
// # Usage
//
//	c, err := client.Open(ctx, client.Config{
//		Profile: "/home/me/.parley/alice",
//		Servers: []string{"http://127.0.0.1:8080"},
//	})
//	defer c.Close()
//	if _, ok := c.User(); !ok {
//		_, err = c.Login(ctx, "alice", password)
//	}
//	conv, err := c.CreateDirect(ctx, "bob")
//	id, err := c.Send(ctx, conv.ID, "hi")       // queued; returns at once
//	id, err = c.SendFile(ctx, conv.ID, "beach.jpg", client.WithCaption("the beach"))
//	msgs, err := c.Messages(ctx, conv.ID, client.MessageQuery{})
//	for ev := range c.Events() { ... }          // changes for the UI
//
// A Client is safe for concurrent use. Close stops every goroutine it
// started; anything not yet sent stays in the outbox for the next Open.
//
// # Local store
//
// Each profile is a folder (mode 0700) holding credentials.json (mode
// 0600: the user and the token pair) and parley.db, an embedded SQLite
// database (WAL, synchronous=FULL) with the conversations, the messages
// (unique by id, and by conversation and seq, with the Media of image,
// video and file messages) and the outbox; and uploads/, the copies of
// the files of media messages in the outbox. Reads
// (Conversations, Conversation, Messages) are answered from the store at
// once, online or not; the network only ever writes into it.
//
// For each conversation the store keeps a contiguous run floor..have: every
// message with floor ≤ seq ≤ have is stored. "have" is the conversation's
// last contiguous seq, what sync sends. A message beyond have+1 is stored
// too, but leaves a gap that the gap filler closes; older history (below
// floor) is fetched on demand with History.
//
// # Authentication and tokens
//
// Register and Login store the token pair; the access token's lifetime is
// measured on the device's clock from expires_in, so clock skew does not
// matter. A token is replaced at 80% of its lifetime, the lifetime counted
// one second short (at most halved), because the token's exp has whole
// seconds and may end it up to a second early: before any REST call or
// connection that finds it due, and, on an open connection, by a timer
// that refreshes and sends the new token in an auth frame (the server would
// otherwise close with 4001 when the old one expires). A 401 answer or a
// 4001 close refreshes at once and retries once.
//
// Refresh tokens rotate, and presenting a rotated one revokes the whole
// login, with one exception: the server accepts the token it rotated last
// once more within a grace period (30 s by default) of the rotation, so
// that an answer lost on the way back does not end the login. Refreshes
// still happen one at a time: a mutex in the process and an advisory lock
// on the profile across processes (the chat UI and a CLI command may share
// a profile, as an iOS app and its extensions share a keychain item).
// Under the lock the client re-reads the credentials file: if another
// process already refreshed, it adopts those tokens instead of refreshing.
// The new pair is written (atomically: temp file, fsync, rename) as soon
// as it arrives, and the refresh call is not cancelled by its caller,
// because its answer is the only copy of the new refresh token.
//
// A refresh that gets no answer (a network error, a reset, a timeout of
// 10 s, a 5xx, a body cut short) may or may not have rotated the token, so
// it is retried with the same refresh token, still under the lock, with
// backoff (full jitter from 250 ms, doubling up to 4 s; a 429 waits its
// retry_after_ms), as long as the retry starts within 25 s of the first
// attempt: the grace counts from the rotation, which came after the first
// attempt was sent, and the 5 s margin is for the retry's way to the
// server. After that the refresh fails as unavailable, and the tokens are
// kept for the next try (which the server refuses if it did rotate: the
// login is then gone). Only closing the client stops the retries early. A
// refresh answered 401 means the login is gone: the client deletes the
// credentials and goes to StateSignedOut.
//
// # Connection
//
// One WebSocket at a time, to GET /ws of the current server, with
// "Authorization: Bearer <access token>" on the upgrade and the subprotocol
// parley.v1; the first frame must be hello (waited for at most 10 s), whose
// heartbeat_s sets the dead-link timer. The server pings every heartbeat;
// the client answers pings while its reader runs and counts every frame,
// ping and pong as a sign of life. Nothing received for two heartbeats means
// the link is dead even if TCP has not noticed (no FIN, no RST, as on a
// mobile network): the client drops the connection and reconnects. A frame
// write that takes over 10 s also drops it. Reads accept frames up to the
// contract's 1 MiB.
//
// Reconnecting waits a random time between 0 and min(30 s, 500 ms·2ⁿ) for
// attempt n ("full jitter", so that clients cut off together do not come
// back together); n starts over after a connection stayed up for a minute
// (so a server that accepts and then closes at once is not hammered), and
// when the application calls Reconnect (the network came back). The client
// keeps a list of server URLs and moves to the next after a failed dial or
// a 1001 close (the node is restarting or draining). Close codes: 4001:
// refresh, reconnect at once (a second refusal in a row goes through the
// backoff); 4003: the account was deleted or disabled: the client deletes
// the credentials (keeping the local data, as after a revoked login) and
// stops until the next Login, in StateDisabled; 1001, 1013, 1011, 1006
// and the rest: reconnect with backoff.
//
// Hello returns the current connection's hello, with its device_id: the
// login (refresh-token family), which the server counts as one device for
// push notifications and for delivered receipts.
//
// # App state
//
// SetAppState(AppBackground) tells the server (the app.state extension)
// that the application went to the background: from then on, this
// connection does not count as one that shows new messages, and the user
// gets push notifications as if it were closed, while the connection still
// gets every frame. SetAppState(AppForeground) undoes it. The state is
// remembered: a new connection starts in the foreground on the server, so
// while the application is in the background the client sends background
// again right after hello, before any other frame (a connection that
// counted as live would hold pushes back). Offline, SetAppState only
// records the state. An iOS app calls it from its scene phase changes.
//
// # After hello
//
// On every connection, first, while the application is in the background,
// app.state background (see App state); then in parallel:
//
//  1. The rooms the application joined are joined again (room.join).
//  2. Sync: one sync frame lists, for each conversation the store has a
//     run for, its have seq (a conversation with no run is left out: sync
//     then returns its newest messages, which start a run), with limit
//     100, following next cursors with the same list until next is null.
//     Each entry is applied: the conversation is upserted (watermarks only
//     ever move forward), its messages inserted with known ids dropped,
//     removed ones marked removed. A listed conversation whose answer has
//     has_more, or any conversation whose run still ends below its last
//     seq, goes to the gap filler; so does a conversation the store knows
//     that sync did not mention (its object is fetched to learn whether the
//     user was removed). A rate-limited sync waits retry_after_ms and
//     continues; any other failure drops the connection, and the next one
//     syncs from the start. WaitSynced returns once this is done.
//  3. The outbox sender starts (below).
//  4. The receipt sender sends the watermarks the server lags behind.
//
// # Live messages and gap filling
//
// A message.new is inserted (a known id is dropped: delivery is at least
// once). If the conversation's run does not reach it (seq > have+1), or the
// conversation is unknown, the gap filler is told. The filler waits 250 ms
// first (a message.new of a lower seq may still be on its way behind an
// ack), then fetches GET /api/conversations/{id} for an unknown
// conversation, the newest 50 messages for one without a run, and pages of
// 200 with after_seq=have until the run reaches the last seq known,
// dropping duplicates by id. A failed fill is retried with backoff.
//
// # Outbox
//
// Send writes the message to the outbox as pending, with a fresh
// client_message_id (a UUID v7), and commits it before any network I/O;
// it returns the client_message_id at once, and the UI shows the message
// as pending. The outbox is in SQLite, so it survives a crash or restart.
//
// While connected, the sender sends the oldest pending message of each
// conversation (up to 16 conversations at once, one message per
// conversation in flight, so that a conversation's messages are stored in
// the order they were written). On message.ack it stores the message and
// deletes the outbox item in one transaction: from then on the message
// lives in the messages table only, once. The same happens when the
// user's own message arrives first by sync or message.new (the server
// stored it but the ack was lost): it is matched to the outbox item by
// client_message_id and sender. After a reconnect, pending messages are
// sent again with the same client_message_id, and the server acknowledges
// the original instead of storing a copy. A permanent error (not_found,
// forbidden, invalid_argument, payload_too_large) marks the message failed
// with the reason, and the next one goes on; the application may Retry or
// Discard it. rate_limited waits retry_after_ms; other errors back off
// (1 s, doubling to 30 s, full jitter). WaitSent waits for the ack.
//
// # Media
//
// SendFile queues a photo, a video or any file: it copies the file into
// the profile's uploads folder (a temporary file, synced, renamed: the
// original may change or go afterwards) and commits the message to the
// outbox as pending, like Send, before any network I/O. The message's
// kind is the one given (WithKind) or, by default, the one the server
// finds in the content: image for JPEG, PNG, GIF and WebP, video for MP4,
// QuickTime and WebM, file for anything else; until the upload tells,
// the view shows the kind and the MIME type guessed from the file here.
//
// The outbox sender uploads the file of a conversation's head message
// before sending it, at most 2 uploads at once, with tus 1.0 at
// /api/uploads (the bearer token on every request, refreshed as for REST
// calls): POST with Upload-Length and Upload-Metadata (filename,
// filetype) creates the upload, whose id (its Location's last segment,
// the media id) is stored before any byte goes; its URL is
// /api/uploads/{id} on the server in use, so that it continues through
// another node of a cluster that keeps uploads in shared storage. PATCH
// sends chunks of 1 MiB at Upload-Offset, each at most 2
// minutes, and the offset the server answers is stored after each. An
// attempt that did not create its upload starts with HEAD, which tells
// where the server got to (a chunk cut short may have left part of
// itself there): a broken connection, a restart or another process on
// the profile (an advisory lock on the copy lets one process upload it
// at a time) continues the same upload from there. A 409 on a PATCH
// goes back to HEAD. An upload the server no longer has (404) is
// complete, when GET /api/media/{id} answers its Media (the answer to
// the last PATCH was lost), or gone, and starts over. The server inspects
// the file before it answers the last PATCH; then GET /api/media/{id}
// gives the Media, which the item keeps, with the kind it goes out as.
// The message is then sent as any other, with media_id, through the
// same client_message_id: exactly once. The conversation's later
// messages wait for it, as they wait for any head message.
//
// A refusal of the file (invalid_argument: a corrupt image, a
// decompression bomb; payload_too_large; forbidden) marks the message
// failed with the server's reason and forgets the upload, so that Retry
// uploads it anew; so does an invalid_argument refusal of the send (a
// kind the content does not allow, or a media deleted after a day
// unsent). Anything else (a broken connection, a 5xx, a rate limit) backs
// off as a failed send does, and the next attempt resumes. Progress goes
// to the WithProgress function (increasing values, ending at the total)
// and to EventMessage events, whose Message.Upload says how many bytes
// the server has. The copy is deleted when the message is acknowledged
// or discarded; a copy no outbox item owns is deleted by the next Open
// after an hour.
//
// Message.Media is the server's Media of an image, video or file
// message. Its URLs expire: Download, DownloadFile and DownloadThumbnail
// ask GET /api/media/{id} for fresh ones first, then fetch the file
// without the bearer token (the URL's signature is the permission); a
// URL that is a path is on the server in use.
//
// # Status and receipts
//
// The user's own messages are pending or failed while in the outbox, then
// sent. They become delivered when every other member's delivered_seq
// reaches their seq, and read when every other member's read_seq does; the
// watermarks come from the conversation objects (sync,
// conversation.updated) and the live receipt frames, and never move back.
// An EventReceipt says that statuses up to its seq may have changed.
//
// The client sends delivered receipts by itself, per device: for each
// conversation, the highest seq in the contiguous run (never beyond a gap)
// of a message from someone else, when above what this device has
// confirmed. That watermark (dev_delivered in the store) moves when the
// server answers ok to a delivered or read receipt this client sent; it
// is not the user's delivered watermark on the server, which the user's
// other devices move too. The server holds a push back while a device
// looks connected, but sends it anyway unless that device itself confirms
// the message within 5 s: a phone whose web tab confirmed first must
// still confirm. It sends read receipts only for what the application
// declares shown with MarkRead(conv, seq), when above the user's read
// watermark on the server. The wanted watermarks are in the store, so
// receipts not sent before a disconnect go out after the reconnect.
// Receipts are sent in rounds at most every 250 ms, which coalesces a
// burst of messages into one receipt per conversation. A read receipt
// moves delivered too. Receipts of the user's own other devices move the
// unread count here.
//
// Unread counts are computed locally: the messages of others after the
// read watermark (the highest of the server's and MarkRead's). When the run
// does not reach back to the read watermark, the server's unread_count of
// the last conversation object plus the messages of others since is used.
//
// A conversation's MutedUntil comes with its object (nil: not muted;
// parley.MutedForever: for ever); Conversation.Muted(now) says whether it
// is muted. A muted conversation keeps its own unread count, but
// TotalUnread, the sum for an app badge, leaves it out, as the server's
// push badge does.
//
// # Typing and presence
//
// Typing(conv) is called on each keystroke and never blocks: "started" goes
// out at most every 3 s while keystrokes come; "stopped" after 5 s without
// one, or when the message is sent. Typing frames are dropped while
// offline. RoomJoin(conv) for the conversation on screen subscribes to its
// typing and presence (and is repeated on every connection until
// RoomLeave); its answer is also emitted as events. A UI should let a
// "started" lapse after about 6 s without a new one.
//
// # Events
//
// Events() is a bounded channel (Config.EventBuffer, default 256) of
// changes for a UI: messages added or changed, receipts, conversations,
// typing, presence and the connection state. The client never blocks on
// it: when it is full the event is dropped, every further one too, until
// one EventResync is queued, which means "re-read what you show from the
// store". Events are emitted after their change is committed, so the
// re-read sees every change whose event was dropped.
package client
