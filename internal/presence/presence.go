// Package presence is Parley's directory of who is connected: for every
// user, on which nodes of the cluster they have WebSocket connections, and
// how many of those are in the foreground. It answers "is this user online"
// (presence, the room.join reply) and "would this user see a message
// without a push" for the whole cluster, and reports every change of a
// user's cluster-wide status, so that each node tells its own watchers.
//
// Each node is the authority on its own connections: the gateway sets the
// node's counts for a user (Set), and the directory sends the new counts to
// the other nodes. Counts are absolute, so a repeated or late message is
// harmless; each node numbers its messages, so a receiver that misses one
// asks the sender for its whole state (a snapshot). Nodes send a heartbeat;
// a node not heard from for DeadAfter is taken as dead and its users as
// gone, so that no user stays online for ever because their node was
// killed. A node that stops cleanly says so (bye) and its users go offline
// at once.
//
// The directory does not move bytes: Options.Send does (natsbus in a
// cluster). Without Send it is the directory of a single node.
package presence

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley"
)

// Kind is the kind of a directory message.
type Kind string

// Message kinds.
const (
	// KindHello: a node starts (or reconnected): the others send it their
	// snapshot, and learn of it.
	KindHello Kind = "hello"
	// KindWant asks one node (To) for its snapshot.
	KindWant Kind = "want"
	// KindSnapshot is one part of a node's whole state, sent to one node.
	KindSnapshot Kind = "snap"
	// KindState carries changed counts of users of the sender.
	KindState Kind = "state"
	// KindBeat is the sender's heartbeat.
	KindBeat Kind = "beat"
	// KindBye: the sender stops; its users are gone from it.
	KindBye Kind = "bye"
)

// Message is what nodes tell each other. Seq is the sender's sequence
// number: state messages number 1, 2, 3, ... and the others carry the
// number of the last state message sent, so that a receiver notices what
// it missed.
type Message struct {
	Kind Kind   `json:"k"`
	Node string `json:"n"`
	// To is the addressee of want and snapshot messages.
	To  string `json:"to,omitempty"`
	Seq uint64 `json:"s"`
	// At is when the sender sent it (Unix ms).
	At    int64       `json:"t"`
	Users []UserState `json:"u,omitempty"`
	// Part and Parts number the parts of a snapshot (0 ≤ Part < Parts).
	Part  int `json:"p,omitempty"`
	Parts int `json:"ps,omitempty"`
}

// UserState is one user's connections on the sending node.
type UserState struct {
	ID         string `json:"i"`
	Conns      int32  `json:"c"`
	Foreground int32  `json:"f"`
	// Devices are the devices (logins) of the foreground connections,
	// sorted, without repeats. A node of an older version sends none: its
	// foreground count then stands for every device of the user.
	Devices []string `json:"d,omitempty"`
	// At is when the counts last changed (Unix ms): when the user was last
	// seen connecting or disconnecting there.
	At int64 `json:"t"`
}

// Defaults of Options.
const (
	DefaultHeartbeat = 2 * time.Second
	DefaultDeadAfter = 10 * time.Second
	// snapshotPart is the most users in one snapshot message, which keeps
	// it well under NATS's default 1 MB payload limit.
	snapshotPart = 2000
)

// Options configures a Directory.
type Options struct {
	// Node is this node's id, unique in the cluster.
	Node string
	// Send delivers m to every other node (m.To empty) or to m.To. It is
	// called with the directory's lock held, in order, and must not block
	// (a bus buffers). Nil: a single node.
	Send func(m Message) error
	// Heartbeat is how often this node says it is alive (default 2 s);
	// DeadAfter how long a silent node counts as alive (default 10 s).
	Heartbeat, DeadAfter time.Duration
	// OnChange receives every change of a user's cluster-wide status, in
	// order: online when their first connection anywhere opens, offline
	// when their last one closes or its node dies. It must not block and
	// must not call the directory.
	OnChange func(parley.Presence)
	// OnNodeDead receives the users that went offline because a node died,
	// with the last time the node was heard from, on one node of the
	// cluster only (the live node with the least id), which records them as
	// last seen then. It runs on the directory's goroutine and may block.
	OnNodeDead func(userIDs []string, at parley.Time)
	Logger     *slog.Logger
}

// nodeCount is one node's connections of a user.
type nodeCount struct {
	node        string
	conns, fg   int32
	devices     []string // of the foreground connections; see UserState
	changedAtMS int64
}

// foregroundOn reports whether deviceID has a foreground connection on the
// node; an empty deviceID asks about any device.
func (n *nodeCount) foregroundOn(deviceID string) bool {
	if n.fg <= 0 {
		return false
	}
	if deviceID == "" || n.devices == nil {
		return true
	}
	_, found := slices.BinarySearch(n.devices, deviceID)
	return found
}

// user is one user's connections across the cluster. Most users are on
// one node, so a slice beats a map.
type user struct {
	nodes []nodeCount
}

func (u *user) online() bool { return len(u.nodes) > 0 }

func (u *user) foreground(deviceID string) bool {
	for i := range u.nodes {
		if u.nodes[i].foregroundOn(deviceID) {
			return true
		}
	}
	return false
}

// remote is what this node knows of another node.
type remote struct {
	seq       uint64
	heard     time.Time
	heardMS   int64
	users     map[string]struct{}
	wantSent  time.Time // when a snapshot was last asked for; zero if none pending
	snapshot  []UserState
	snapParts int
}

// Directory is the cluster's directory of connections as this node knows
// it. It is safe for concurrent use. Start its heartbeat with Run.
type Directory struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex // guards the fields below
	seq   uint64     // the last state message sent
	users map[string]*user
	nodes map[string]*remote
	local map[string]UserState // this node's users

	// emitMu orders OnChange calls: it is taken before mu is released, so
	// that changes are reported in the order they were made.
	emitMu sync.Mutex
}

// New returns a directory for the node opts.Node.
func New(opts Options) *Directory {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.DeadAfter <= 0 {
		opts.DeadAfter = DefaultDeadAfter
	}
	if opts.DeadAfter <= opts.Heartbeat {
		opts.DeadAfter = 3 * opts.Heartbeat
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Directory{
		opts:  opts,
		log:   opts.Logger.With("component", "presence"),
		users: make(map[string]*user),
		nodes: make(map[string]*remote),
		local: make(map[string]UserState),
	}
}

// Online reports whether userID has a connection on any node.
func (d *Directory) Online(userID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.users[userID]
	return u != nil && u.online()
}

// HasForegroundConnection reports whether the device deviceID of userID
// has, on any node, a connection whose app is not in the background: one
// that shows a new message at once, so that a push to that device would be
// noise. An empty deviceID asks about any device of the user.
func (d *Directory) HasForegroundConnection(userID, deviceID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.users[userID]
	return u != nil && u.foreground(deviceID)
}

// NodesOf appends to dst the nodes where userID has connections, in id
// order, and returns it.
func (d *Directory) NodesOf(dst []string, userID string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u := d.users[userID]; u != nil {
		for _, n := range u.nodes {
			dst = append(dst, n.node)
		}
	}
	slices.Sort(dst)
	return dst
}

// LiveNodes returns the nodes this node believes alive, itself included,
// in id order.
func (d *Directory) LiveNodes() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.nodes)+1)
	out = append(out, d.opts.Node)
	for id := range d.nodes {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Set records that userID now has conns connections on this node, of which
// foreground are in the foreground, on the devices listed (sorted, without
// repeats; the directory keeps the slice), tells the other nodes, and
// reports the user's change of status, if any. Calls for one user must be
// made in the order of the changes (the gateway serializes them per user).
func (d *Directory) Set(userID string, conns, foreground int, devices []string) {
	now := time.Now()
	st := UserState{ID: userID, Conns: int32(conns), Foreground: int32(foreground), Devices: devices, At: now.UnixMilli()}
	d.mu.Lock()
	if conns > 0 {
		d.local[userID] = st
	} else {
		delete(d.local, userID)
	}
	var changes []parley.Presence
	changes = d.applyLocked(d.opts.Node, st, changes)
	if d.opts.Send != nil {
		d.seq++
		d.sendLocked(Message{Kind: KindState, Seq: d.seq, Users: []UserState{st}})
	}
	d.emitUnlock(changes)
}

// applyLocked sets node's counts of st.ID and appends the user's status
// change, if any, to changes.
func (d *Directory) applyLocked(node string, st UserState, changes []parley.Presence) []parley.Presence {
	u := d.users[st.ID]
	was := u != nil && u.online()
	if u == nil {
		if st.Conns <= 0 {
			return changes
		}
		u = &user{}
		d.users[st.ID] = u
	}
	i := slices.IndexFunc(u.nodes, func(n nodeCount) bool { return n.node == node })
	switch {
	case st.Conns <= 0 && i >= 0:
		u.nodes = slices.Delete(u.nodes, i, i+1)
	case st.Conns > 0 && i >= 0:
		u.nodes[i] = nodeCount{node: node, conns: st.Conns, fg: st.Foreground, devices: st.Devices, changedAtMS: st.At}
	case st.Conns > 0:
		u.nodes = append(u.nodes, nodeCount{node: node, conns: st.Conns, fg: st.Foreground, devices: st.Devices, changedAtMS: st.At})
	}
	if r := d.nodes[node]; r != nil {
		if st.Conns > 0 {
			r.users[st.ID] = struct{}{}
		} else {
			delete(r.users, st.ID)
		}
	}
	now := u.online()
	if !now {
		delete(d.users, st.ID)
	}
	if was == now {
		return changes
	}
	p := parley.Presence{UserID: st.ID, Status: parley.Offline, LastSeenAt: parley.TimeFromMillis(st.At)}
	if now {
		p.Status = parley.Online
	}
	return append(changes, p)
}

// emitUnlock releases mu and reports changes, in order with every other
// call's.
func (d *Directory) emitUnlock(changes []parley.Presence) {
	if len(changes) == 0 || d.opts.OnChange == nil {
		d.mu.Unlock()
		return
	}
	d.emitMu.Lock()
	d.mu.Unlock()
	defer d.emitMu.Unlock()
	for _, p := range changes {
		d.opts.OnChange(p)
	}
}

// sendLocked stamps and sends m; a failure (the bus is down) is logged: the
// receivers notice the gap by the sequence numbers and ask for a snapshot.
func (d *Directory) sendLocked(m Message) {
	m.Node = d.opts.Node
	m.At = time.Now().UnixMilli()
	if err := d.opts.Send(m); err != nil {
		d.log.Debug("send directory message", "kind", m.Kind, "err", err)
	}
}

// Hello tells the cluster that this node is (again) here, so that every
// node sends it its snapshot and asks for this one's. Call it when the bus
// connects and after it reconnects.
func (d *Directory) Hello() {
	if d.opts.Send == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sendLocked(Message{Kind: KindHello, Seq: d.seq})
}

// Handle applies a message from another node. Messages of one sender must
// be handled in the order it sent them.
func (d *Directory) Handle(m Message) {
	if m.Node == d.opts.Node || m.Node == "" {
		return // our own, echoed
	}
	if m.To != "" && m.To != d.opts.Node {
		return
	}
	now := time.Now()
	d.mu.Lock()
	r := d.nodes[m.Node]
	if r == nil && m.Kind != KindBye {
		r = &remote{users: make(map[string]struct{})}
		d.nodes[m.Node] = r
		if m.Kind != KindSnapshot && m.Kind != KindHello {
			// A node we did not know (it started, or we did): whatever it
			// says now is a change of a state we never had.
			d.wantLocked(m.Node, r, now)
		}
	}
	if r != nil {
		r.heard, r.heardMS = now, now.UnixMilli()
	}
	var changes []parley.Presence
	switch m.Kind {
	case KindHello:
		d.sendSnapshotLocked(m.Node)
		if m.Seq != r.seq || m.Seq > 0 && len(r.users) == 0 {
			d.wantLocked(m.Node, r, now)
		}
	case KindWant:
		d.sendSnapshotLocked(m.Node)
	case KindBeat:
		if m.Seq != r.seq {
			d.wantLocked(m.Node, r, now)
		}
	case KindState:
		switch {
		case m.Seq <= r.seq:
			// Already covered by a snapshot or seen.
		default:
			if m.Seq != r.seq+1 {
				d.wantLocked(m.Node, r, now)
			}
			r.seq = m.Seq
			for _, st := range m.Users {
				changes = d.applyLocked(m.Node, st, changes)
			}
		}
	case KindSnapshot:
		changes = d.snapshotPartLocked(m.Node, r, m, changes)
	case KindBye:
		if r != nil {
			changes = d.dropNodeLocked(m.Node, r, m.At, changes)
		}
	}
	d.emitUnlock(changes)
}

// wantLocked asks node for its snapshot, unless a request is pending and
// recent.
func (d *Directory) wantLocked(node string, r *remote, now time.Time) {
	if d.opts.Send == nil || (!r.wantSent.IsZero() && now.Sub(r.wantSent) < d.opts.Heartbeat) {
		return
	}
	r.wantSent = now
	d.sendLocked(Message{Kind: KindWant, To: node, Seq: d.seq})
}

// sendSnapshotLocked sends this node's whole state to node, in parts. The
// lock keeps state messages from interleaving with it.
func (d *Directory) sendSnapshotLocked(to string) {
	if d.opts.Send == nil {
		return
	}
	all := make([]UserState, 0, len(d.local))
	for _, st := range d.local {
		all = append(all, st)
	}
	parts := max(1, (len(all)+snapshotPart-1)/snapshotPart)
	for p := range parts {
		chunk := all[min(p*snapshotPart, len(all)):min((p+1)*snapshotPart, len(all))]
		d.sendLocked(Message{Kind: KindSnapshot, To: to, Seq: d.seq, Users: chunk, Part: p, Parts: parts})
	}
}

// snapshotPartLocked collects a part of node's snapshot; with the last
// part, the snapshot replaces what was known of node.
func (d *Directory) snapshotPartLocked(node string, r *remote, m Message, changes []parley.Presence) []parley.Presence {
	if m.Part == 0 {
		r.snapshot, r.snapParts = r.snapshot[:0], m.Parts
	}
	if r.snapParts != m.Parts || m.Parts <= 0 {
		return changes // a part of a snapshot whose start we missed
	}
	r.snapshot = append(r.snapshot, m.Users...)
	if m.Part != m.Parts-1 {
		return changes
	}
	in := make(map[string]struct{}, len(r.snapshot))
	for _, st := range r.snapshot {
		in[st.ID] = struct{}{}
		changes = d.applyLocked(node, st, changes)
	}
	for id := range r.users {
		if _, ok := in[id]; !ok {
			changes = d.applyLocked(node, UserState{ID: id, At: m.At}, changes)
		}
	}
	r.seq = m.Seq
	r.snapshot, r.snapParts = nil, 0
	r.wantSent = time.Time{}
	return changes
}

// dropNodeLocked forgets node: its users are gone from it as of atMS.
func (d *Directory) dropNodeLocked(node string, r *remote, atMS int64, changes []parley.Presence) []parley.Presence {
	for id := range r.users {
		changes = d.applyLocked(node, UserState{ID: id, At: atMS}, changes)
	}
	delete(d.nodes, node)
	return changes
}

// Run sends the heartbeat and drops the nodes not heard from for
// DeadAfter, until stop is closed. A single node has nothing to run.
func (d *Directory) Run(stop <-chan struct{}) {
	if d.opts.Send == nil {
		return
	}
	t := time.NewTicker(d.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d.beat()
		}
	}
}

// beat sends the heartbeat and expires silent nodes.
func (d *Directory) beat() {
	now := time.Now()
	d.mu.Lock()
	d.sendLocked(Message{Kind: KindBeat, Seq: d.seq})
	var changes []parley.Presence
	type death struct {
		users []string
		at    parley.Time
	}
	var deaths []death
	for id, r := range d.nodes {
		if now.Sub(r.heard) <= d.opts.DeadAfter {
			continue
		}
		before := len(changes)
		changes = d.dropNodeLocked(id, r, r.heardMS, changes)
		d.log.Warn("node not heard from: its users are offline", "node", id, "silent_for", now.Sub(r.heard).Round(time.Millisecond))
		var gone []string
		for _, p := range changes[before:] {
			gone = append(gone, p.UserID)
		}
		if len(gone) > 0 {
			deaths = append(deaths, death{gone, parley.TimeFromMillis(r.heardMS)})
		}
	}
	janitor := true
	for id := range d.nodes {
		if id < d.opts.Node {
			janitor = false
		}
	}
	d.emitUnlock(changes)
	if janitor && d.opts.OnNodeDead != nil {
		for _, dd := range deaths {
			d.opts.OnNodeDead(dd.users, dd.at)
		}
	}
}

// Bye tells the other nodes that this one stops: they drop its users at
// once instead of after DeadAfter. Call it after the last local connection
// closed.
func (d *Directory) Bye() {
	if d.opts.Send == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sendLocked(Message{Kind: KindBye, Seq: d.seq})
}

// Forget drops every other node's users, as after this node lost the bus:
// what it knew of them may be stale, and Hello will bring it back.
func (d *Directory) Forget() {
	d.mu.Lock()
	var changes []parley.Presence
	now := time.Now().UnixMilli()
	for id, r := range d.nodes {
		changes = d.dropNodeLocked(id, r, now, changes)
	}
	d.emitUnlock(changes)
}
