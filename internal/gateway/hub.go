package gateway

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// shards is the number of independently locked parts of each index, so
// that fan-out and connection churn never take a process-wide lock.
const shards = 64

// Lock order, where two are held at once: a room shard, then a watch shard
// or a conn's mu; a user shard, then a conn's mu. A userEntry's presenceMu
// is taken before (never while holding) its user shard's mu.

// userShard indexes the connections of the users whose id hashes to it.
type userShard struct {
	mu    sync.RWMutex // guards users and the conns of every entry in it
	users map[string]*userEntry
}

// userEntry is one user's connections in this process.
type userEntry struct {
	conns []*conn // guarded by the shard's mu
	// presenceMu serializes the user's changes to the directory, so that
	// they reach it in the order they happened.
	presenceMu sync.Mutex
	// The counts and foreground devices last given to the directory;
	// guarded by presenceMu.
	setConns, setForeground int
	setDevices              []string
}

// roomShard indexes the rooms (conversations) that connections here joined.
type roomShard struct {
	mu    sync.RWMutex // guards rooms and the fields of every room in it
	rooms map[string]*room
}

// room is a conversation that at least one connection here joined.
type room struct {
	members map[string]struct{} // the conversation's members, kept current by conversation.updated
	conns   []*conn             // connections that joined it
}

// watchShard indexes, by user, the rooms here that have the user as a
// member: where that user's presence goes.
type watchShard struct {
	mu    sync.RWMutex // guards rooms
	rooms map[string]map[string]struct{}
}

// typingShard holds who is typing where, from the typing events seen.
type typingShard struct {
	mu    sync.Mutex                      // guards users
	users map[string]map[string]time.Time // typist → conversation → until
}

// sessionShard holds every connection being served, authenticated or not,
// for Shutdown.
type sessionShard struct {
	mu    sync.Mutex // guards conns
	conns map[*conn]struct{}
}

func (g *Gateway) shard(key string) int {
	return int(maphash.String(g.seed, key) % shards)
}

func (g *Gateway) track(c *conn) {
	sh := &g.sessions[g.shard(c.id)]
	sh.mu.Lock()
	sh.conns[c] = struct{}{}
	sh.mu.Unlock()
}

func (g *Gateway) untrack(c *conn) {
	sh := &g.sessions[g.shard(c.id)]
	sh.mu.Lock()
	delete(sh.conns, c)
	sh.mu.Unlock()
}

// eachConn calls fn, which must not block, for every connection served.
func (g *Gateway) eachConn(fn func(*conn)) {
	for i := range g.sessions {
		sh := &g.sessions[i]
		sh.mu.Lock()
		for c := range sh.conns {
			fn(c)
		}
		sh.mu.Unlock()
	}
}

// addUserConn indexes c under its user and returns the user's entry.
func (g *Gateway) addUserConn(c *conn) *userEntry {
	sh := &g.users[g.shard(c.userID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.users[c.userID]
	if e == nil {
		e = &userEntry{}
		sh.users[c.userID] = e
	}
	e.conns = append(e.conns, c)
	return e
}

// removeUserConn removes c from its user's entry and returns the entry,
// which stays indexed until syncPresence has published the user offline.
func (g *Gateway) removeUserConn(c *conn) *userEntry {
	sh := &g.users[g.shard(c.userID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.users[c.userID]
	if e != nil {
		e.conns = removeConn(e.conns, c)
	}
	return e
}

// localOnline reports whether userID has a connection in this process.
func (g *Gateway) localOnline(userID string) bool {
	sh := &g.users[g.shard(userID)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.users[userID]
	return e != nil && len(e.conns) > 0
}

// entryOf returns userID's entry, or nil.
func (g *Gateway) entryOf(userID string) *userEntry {
	sh := &g.users[g.shard(userID)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.users[userID]
}

// HasForegroundConnection reports whether the device deviceID (a login) of
// userID has, on any node, a connection whose app is not in the background
// (see app.state): one that will show a new message at once, so that a
// push to that device would be noise. An empty deviceID asks about any
// device. It asks the directory, and is safe for concurrent use.
func (g *Gateway) HasForegroundConnection(userID, deviceID string) bool {
	return g.dir.HasForegroundConnection(userID, deviceID)
}

// syncPresence gives the directory the user's current counts of
// connections here, if they changed, and reports whether the user's first
// connection here just opened or their last one just closed (the caller
// then records them as last seen, with markSeen, outside any lock). It
// passes the current state rather than the change that called it, so that
// racing connects and disconnects end in the truth. An entry left without
// connections is dropped from the index.
func (g *Gateway) syncPresence(userID string, e *userEntry) (flipped bool) {
	if e == nil {
		return false
	}
	e.presenceMu.Lock()
	defer e.presenceMu.Unlock()
	sh := &g.users[g.shard(userID)]
	// A user has a few devices: the list is built on the stack, and
	// copied only when it changed.
	var buf [8]string
	devices := buf[:0]
	sh.mu.RLock()
	conns, fg := len(e.conns), 0
	for _, c := range e.conns {
		if !c.background.Load() && !c.closing() {
			fg++
			if d := c.device(); !slices.Contains(devices, d) {
				devices = append(devices, d)
			}
		}
	}
	sh.mu.RUnlock()
	slices.Sort(devices)
	if conns != e.setConns || fg != e.setForeground || !slices.Equal(devices, e.setDevices) {
		flipped = (conns > 0) != (e.setConns > 0)
		e.setConns, e.setForeground = conns, fg
		e.setDevices = nil
		if len(devices) > 0 {
			e.setDevices = slices.Clone(devices)
		}
		g.dir.Set(userID, conns, fg, e.setDevices)
	}
	if conns == 0 {
		sh.mu.Lock()
		if len(e.conns) == 0 && sh.users[userID] == e {
			delete(sh.users, userID)
		}
		sh.mu.Unlock()
	}
	return flipped
}

// markSeen records userID as last seen now: when their first connection
// here opens and when their last one closes. Last-seen times only move
// forward, so racing calls need no order.
func (g *Gateway) markSeen(userID string) {
	ctx, cancel := context.WithTimeout(g.base, presenceTimeout)
	defer cancel()
	if err := g.chat.MarkSeen(ctx, parley.Now(), userID); err != nil {
		g.log.Warn("record last seen", "user", userID, "err", err)
	}
}

// AnnouncePresence tells the connections here that watch p.UserID (they
// joined a room with them) that the user's status changed in the cluster.
// The directory calls it, in order; it never blocks.
func (g *Gateway) AnnouncePresence(p parley.Presence) {
	if p.Status == parley.Offline {
		g.forgetTyping(p.UserID)
	}
	f := g.encodeEvent(wire.TypePresence, p, 0)
	g.countSent(wire.TypePresence, g.toWatchers(p.UserID, f))
}

// join adds c to the room of a conversation whose members are given.
func (g *Gateway) join(c *conn, conversationID string, members []string) {
	sh := &g.rooms[g.shard(conversationID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[conversationID]
	if r == nil {
		r = &room{members: make(map[string]struct{}, len(members))}
		sh.rooms[conversationID] = r
		for _, m := range members {
			r.members[m] = struct{}{}
			g.watchAdd(m, conversationID)
		}
	}
	if _, ok := r.members[c.userID]; !ok {
		// Just added, and the room's conversation.updated is still on its
		// way: the store, which said so, is right.
		r.members[c.userID] = struct{}{}
		g.watchAdd(c.userID, conversationID)
	}
	if !slices.Contains(r.conns, c) {
		r.conns = append(r.conns, c)
	}
	c.mu.Lock()
	if c.rooms == nil {
		c.rooms = make(map[string]struct{})
	}
	c.rooms[conversationID] = struct{}{}
	c.mu.Unlock()
}

// leave removes c from a room; the last connection out drops the room.
func (g *Gateway) leave(c *conn, conversationID string) {
	sh := &g.rooms[g.shard(conversationID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r := sh.rooms[conversationID]; r != nil {
		r.conns = removeConn(r.conns, c)
		if len(r.conns) == 0 {
			g.dropRoomLocked(sh, conversationID, r)
		}
	}
	c.mu.Lock()
	delete(c.rooms, conversationID)
	c.mu.Unlock()
}

// dropRoomLocked removes a room without connections; sh.mu must be held.
func (g *Gateway) dropRoomLocked(sh *roomShard, conversationID string, r *room) {
	delete(sh.rooms, conversationID)
	for m := range r.members {
		g.watchRemove(m, conversationID)
	}
}

// updateRoom brings a joined room's members up to date after a
// conversation.updated: removed users' connections leave the room.
func (g *Gateway) updateRoom(conv *parley.Conversation) {
	sh := &g.rooms[g.shard(conv.ID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.rooms[conv.ID]
	if r == nil {
		return
	}
	now := make(map[string]struct{}, len(conv.Members))
	for _, m := range conv.Members {
		now[m.UserID] = struct{}{}
		if _, ok := r.members[m.UserID]; !ok {
			r.members[m.UserID] = struct{}{}
			g.watchAdd(m.UserID, conv.ID)
		}
	}
	for m := range r.members {
		if _, ok := now[m]; ok {
			continue
		}
		delete(r.members, m)
		g.watchRemove(m, conv.ID)
		r.conns = slices.DeleteFunc(r.conns, func(c *conn) bool {
			if c.userID != m {
				return false
			}
			c.mu.Lock()
			delete(c.rooms, conv.ID)
			c.mu.Unlock()
			return true
		})
	}
	if len(r.conns) == 0 {
		g.dropRoomLocked(sh, conv.ID, r)
	}
}

func (g *Gateway) watchAdd(userID, conversationID string) {
	sh := &g.watch[g.shard(userID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	set := sh.rooms[userID]
	if set == nil {
		set = make(map[string]struct{})
		sh.rooms[userID] = set
	}
	set[conversationID] = struct{}{}
}

func (g *Gateway) watchRemove(userID, conversationID string) {
	sh := &g.watch[g.shard(userID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if set := sh.rooms[userID]; set != nil {
		delete(set, conversationID)
		if len(set) == 0 {
			delete(sh.rooms, userID)
		}
	}
}

// noteTyping records a typing event for the room.join reply.
func (g *Gateway) noteTyping(t *parley.Typing, now time.Time) {
	sh := &g.typing[g.shard(t.UserID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	convs := sh.users[t.UserID]
	switch t.State {
	case parley.TypingStarted:
		if convs == nil {
			convs = make(map[string]time.Time)
			sh.users[t.UserID] = convs
		}
		// Forget what expired, so that a user typing in many
		// conversations without ever stopping holds little.
		for id, until := range convs {
			if !until.After(now) {
				delete(convs, id)
			}
		}
		convs[t.ConversationID] = now.Add(typingTTL)
	case parley.TypingStopped:
		delete(convs, t.ConversationID)
		if len(convs) == 0 {
			delete(sh.users, t.UserID)
		}
	}
}

// forgetTyping drops a user's typing state when they go offline.
func (g *Gateway) forgetTyping(userID string) {
	sh := &g.typing[g.shard(userID)]
	sh.mu.Lock()
	delete(sh.users, userID)
	sh.mu.Unlock()
}

// typists returns those of members typing in a conversation now.
func (g *Gateway) typists(conversationID string, members []string, now time.Time) []string {
	out := []string{}
	for _, m := range members {
		sh := &g.typing[g.shard(m)]
		sh.mu.Lock()
		until, ok := sh.users[m][conversationID]
		sh.mu.Unlock()
		if ok && until.After(now) {
			out = append(out, m)
		}
	}
	return out
}

// roomState is the room.join reply: every member's presence, and who is
// typing now.
func (g *Gateway) roomState(ctx context.Context, conversationID string, members []string) (wire.RoomState, error) {
	now := time.Now()
	nowT := parley.NewTime(now)
	st := wire.RoomState{Presence: make([]parley.Presence, len(members))}
	var offline []string
	for i, m := range members {
		st.Presence[i] = parley.Presence{UserID: m, Status: parley.Offline}
		if g.dir.Online(m) {
			st.Presence[i].Status, st.Presence[i].LastSeenAt = parley.Online, nowT
		} else {
			offline = append(offline, m)
		}
	}
	if len(offline) > 0 {
		seen, err := g.chat.LastSeen(ctx, offline)
		if err != nil {
			return wire.RoomState{}, fmt.Errorf("room state: %w", err)
		}
		for i := range st.Presence {
			if st.Presence[i].Status == parley.Offline {
				st.Presence[i].LastSeenAt = seen[st.Presence[i].UserID]
			}
		}
	}
	st.Typing = g.typists(conversationID, members, now)
	return st, nil
}

// removeConn removes c from conns in place, keeping the order.
func removeConn(conns []*conn, c *conn) []*conn {
	if i := slices.Index(conns, c); i >= 0 {
		conns = slices.Delete(conns, i, i+1)
	}
	return conns
}
