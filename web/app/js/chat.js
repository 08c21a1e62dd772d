// Chat holds the signed-in user's state and speaks the protocol: the
// conversation list, the loaded message history of each opened
// conversation, the outbox, receipts, typing and presence. The UI reads it
// and calls its methods; it says 'change' when something moved.
//
// The rules it follows are those of docs/protocol.md, section 16: an outbox
// keyed by client_message_id (resent with the same id after a reconnect or
// a reload), dedupe by message id, gap detection by seq, sync after every
// hello; and section 14 for receipts (delivered on receive, read when seen).
//
// Photos, videos and files (section 19) go through the same outbox: the
// entry holds the file (IndexedDB keeps Blobs) until its upload, with tus,
// is complete; then it carries the media_id and is sent like a text, with
// the same client_message_id on every try. One tab uploads an entry at a
// time (a Web Lock per entry); another tab takes over when that one goes,
// and a reload resumes the upload where the server has it.
//
// Delivered receipts are this tab's own: the server holds a device's push
// back while the device has a foreground connection, and sends it anyway
// if that device does not confirm the message with a `delivered` receipt
// within a few seconds (docs/protocol.md, section 18). So the tab confirms
// what it received itself, even when another device of the user moved the
// user's delivered watermark there first, and never past a message it
// does not hold (see #queueDelivered).

import { Api, logout } from './api.js';
import { Connection } from './socket.js';
import * as outbox from './outbox.js';
import { ApiError, Emitter, uuid, utf8Length } from './util.js';
import { Unauthenticated } from './session.js';
import { WebPush } from './push.js';
import { isMediaKind, kindOf, mediaIdOf as mediaIdOfUrl, tusUpload } from './media.js';

const PAGE = 50;
const TYPING_SHOW_MS = 6000; // a `started` keeps the indicator this long
const TYPING_REPEAT_MS = 3000; // send `started` at most this often
const TYPING_IDLE_MS = 5000; // send `stopped` after this long without input
const ROOMS_JOINED = 30; // conversations joined for presence and typing
export const MAX_TEXT_BYTES = 16384;
const PERMANENT = new Set(['invalid_argument', 'payload_too_large', 'not_found', 'forbidden']);
const DELIVERED_DELAY_MS = 250; // delivered receipts wait this long to batch
// A message this tab only knows from a conversation's snapshot (the list
// at start) is confirmed if it is this recent: its push may be waiting.
const DELIVERED_RECENT_MS = 60_000;
// A gap this large is not fetched: the tab starts over from the top, as
// at a start (it knows those messages only by the conversation's last).
const RECV_GAP_MAX = 1000;
// setTimeout's longest delay (about 24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1;
const PROGRESS_MS = 100; // redraw an upload's progress at most this often
const UPLOAD_RETRY_MAX_MS = 30_000; // a stalled upload tries again at least this often
// muted_until of a conversation muted for ever.
export const MUTED_FOREVER = '9999-12-31T23:59:59.999Z';

/**
 * isMuted: the user muted the conversation (docs/protocol.md, section 18):
 * muted_until is null when not, the end of the mute when muted, the year
 * 9999 when for ever.
 */
export function isMuted(c, now = Date.now()) {
  const t = c?.muted_until ? Date.parse(c.muted_until) : NaN;
  return Number.isFinite(t) && t > now;
}

export class Chat extends Emitter {
  constructor(session) {
    super();
    this.session = session;
    this.api = new Api(session);
    this.conn = new Connection(session);
    this.me = session.user;
    this.push = new WebPush(this.api, this.me.id);
    /** @type {Map<string, any>} id -> Conversation */
    this.conversations = new Map();
    this.users = new Map([[this.me.id, this.me]]);
    /** convId -> {bySeq: Map, ids: Set, low, high, hasOlder, loadingOlder, filling, error} */
    this.loaded = new Map();
    this.pending = []; // this user's outbox entries, oldest first
    this.presence = new Map(); // userId -> {status, last_seen_at}
    this.typing = new Map(); // convId -> Map(userId -> expiry ms)
    this.openId = null;
    this.listState = 'loading'; // loading | ready | error
    this.wantOpen = null; // a conversation to open once the list is there
    this.epoch = 0;
    this.inflight = new Set();
    this.settled = new Set();
    this.joined = new Set();
    this.readSent = new Map();
    // Per conversation: what this tab received without a gap,
    // {seq, other (the highest seq of someone else's message up to seq),
    // base (seq when the tab first saw the conversation), ahead (seq ->
    // from someone else, for messages past a gap)}.
    this.recv = new Map();
    this.recvFillTimers = new Map();
    this.deliveredSent = new Map(); // convId -> seq this tab confirmed
    this.deliveredQueue = new Set();
    this.deliveredTimer = 0;
    this.muteTimer = 0;
    this.usersWanted = new Set();
    this.usersTimer = 0;
    this.refetchTimers = new Map();
    this.myTyping = { convId: null, last: 0, idle: 0 };
    this.offs = [];
    this.changeQueued = false;
    // Uploads this tab runs or waits to take over: cmid -> {state
    // (waiting | uploading | processing | paused), sent, total, error,
    // task (the tus handle), ctl (aborts the wait for the lock), wake}.
    this.uploads = new Map();
    this.blobs = new Map(); // cmid -> File, for entries IndexedDB could not hold with it
    this.mediaFetches = new Map(); // media id -> pending GET /api/media/{id}
    this.progressTimer = 0;
    this.stopped = false;
  }

  // ---- lifecycle ----

  async start() {
    this.offs.push(
      this.conn.on('state', (s) => {
        if (s !== 'online') {
          this.inflight.clear();
          this.joined.clear();
          // Presence and typing are live facts: unknown while disconnected.
          this.presence.clear();
          this.typing.clear();
        }
        this.changed();
      }),
      this.conn.on('hello', () => this.#onHello()),
      this.conn.on('frame', (f) => this.#onFrame(f)),
      this.conn.on('signedout', (e) => this.emit('signedout', e)),
      outbox.onChange(() => this.#reloadOutbox()),
    );
    const online = () => this.#wakeUploads();
    window.addEventListener('online', online);
    this.offs.push(() => window.removeEventListener('online', online));
    this.listReady = this.#loadList();
    await this.#reloadOutbox();
    this.conn.start();
    this.push.start();
  }

  stop() {
    this.stopped = true;
    for (const u of this.uploads.values()) this.#abortUpload(u, false);
    this.uploads.clear();
    clearTimeout(this.progressTimer);
    for (const off of this.offs.splice(0)) off();
    this.conn.stop();
    this.push.stop();
    clearTimeout(this.deliveredTimer);
    clearTimeout(this.muteTimer);
    clearTimeout(this.usersTimer);
    for (const t of this.recvFillTimers.values()) clearTimeout(t);
    clearTimeout(this.myTyping.idle);
    for (const t of this.refetchTimers.values()) clearTimeout(t);
  }

  /**
   * signOut ends this login (only this one) and forgets its outbox. The
   * push token goes first, while the access token still works.
   */
  async signOut() {
    const s = this.session.load();
    // Uploads in progress end on the server too, while the token works.
    await Promise.all([...this.uploads.values()].map((u) => u.task?.abort(true)));
    this.stop();
    await this.push.disable();
    await outbox.clear(this.me.id).catch(() => {});
    this.session.clear();
    if (s) await logout(s.refresh_token).catch(() => {});
  }

  changed() {
    if (this.changeQueued) return;
    this.changeQueued = true;
    queueMicrotask(() => {
      this.changeQueued = false;
      this.emit('change');
    });
  }

  get connState() {
    return this.conn.state;
  }

  // ---- reading state ----

  /** sortedConversations: most recent activity first. */
  sortedConversations() {
    return [...this.conversations.values()].sort((a, b) =>
      (b.updated_at || '').localeCompare(a.updated_at || '') || a.id.localeCompare(b.id));
  }

  other(c) {
    return c.members?.find((m) => m.user_id !== this.me.id) || null;
  }

  nameOf(userId) {
    if (userId === this.me.id) return this.me.display_name || this.me.username;
    const u = this.users.get(userId);
    return u ? u.display_name || u.username : '…';
  }

  titleOf(c) {
    if (!c) return '';
    if (c.type === 'group') return c.title || 'Group';
    const o = this.other(c);
    return o ? this.nameOf(o.user_id) : 'Only you';
  }

  isAdmin(c) {
    return c?.members?.some((m) => m.user_id === this.me.id && m.role === 'admin');
  }

  /** statusOf an own stored message: sent, delivered or read. */
  statusOf(c, m) {
    const others = (c?.members || []).filter((x) => x.user_id !== this.me.id);
    if (!others.length) return 'sent';
    if (others.every((x) => x.read_seq >= m.seq)) return 'read';
    if (others.every((x) => Math.max(x.delivered_seq, x.read_seq) >= m.seq)) return 'delivered';
    return 'sent';
  }

  /** messagesOf: stored messages by seq, then this user's pending ones. */
  messagesOf(cid) {
    const L = this.loaded.get(cid);
    const stored = L ? [...L.bySeq.values()].sort((a, b) => a.seq - b.seq) : [];
    const pending = this.pending.filter((e) => e.conversation_id === cid);
    return { stored, pending, state: L };
  }

  pendingOf(cid) {
    return this.pending.filter((e) => e.conversation_id === cid);
  }

  /** typists: who is typing in a conversation now (not this user). */
  typists(cid) {
    const m = this.typing.get(cid);
    if (!m) return [];
    const now = Date.now();
    return [...m].filter(([uid, exp]) => exp > now && uid !== this.me.id).map(([uid]) => uid);
  }

  /** totalUnread: unread messages over the conversations not muted. */
  totalUnread() {
    let n = 0;
    const now = Date.now();
    for (const c of this.conversations.values()) if (!isMuted(c, now)) n += c.unread_count || 0;
    return n;
  }

  isMuted(c) {
    return isMuted(c);
  }

  // ---- conversations ----

  async #loadList() {
    try {
      const r = await this.api.conversations();
      for (const c of r.conversations || []) this.#upsert(c);
      this.listState = 'ready';
    } catch (e) {
      if (e instanceof Unauthenticated) this.emit('signedout', e);
      // Offline at start: the sync after the first hello fills the list.
      this.listState = this.conversations.size ? 'ready' : 'error';
    }
    this.#openWanted();
    this.changed();
  }

  #openWanted() {
    const id = this.wantOpen;
    if (!id) return;
    this.wantOpen = null;
    if (this.conversations.has(id)) this.open(id);
    else if (this.listState === 'ready') this.emit('closed', id);
    else this.wantOpen = id; // offline at start: the first sync decides
  }

  #upsert(c) {
    if (!c?.id) return null;
    const old = this.conversations.get(c.id);
    if (old) {
      // Watermarks only move forward: keep what a newer frame told us.
      const marks = new Map((old.members || []).map((m) => [m.user_id, m]));
      for (const m of c.members || []) {
        const o = marks.get(m.user_id);
        if (o) {
          m.delivered_seq = Math.max(m.delivered_seq || 0, o.delivered_seq || 0);
          m.read_seq = Math.max(m.read_seq || 0, o.read_seq || 0);
        }
      }
      if ((old.last_seq || 0) > (c.last_seq || 0)) {
        c.last_seq = old.last_seq;
        c.last_message = old.last_message;
        c.unread_count = old.unread_count;
        if ((old.updated_at || '') > (c.updated_at || '')) c.updated_at = old.updated_at;
      }
      c.read_seq = Math.max(c.read_seq || 0, old.read_seq || 0);
      if (c.read_seq >= (c.last_seq || 0)) c.unread_count = 0;
      // A server without mutes sends no muted_until: keep what we know.
      if (c.muted_until === undefined) c.muted_until = old.muted_until;
    }
    if (!(c.members || []).some((m) => m.user_id === this.me.id)) {
      this.#remove(c.id);
      return null;
    }
    this.conversations.set(c.id, c);
    this.#wantUsers(c.members.map((m) => m.user_id));
    if (!this.recv.has(c.id)) this.#baseline(c);
    else this.#checkGap(c.id);
    const L = this.loaded.get(c.id);
    if (L && c.last_seq > L.high) this.#fill(c.id);
    this.#scheduleMuteEnd();
    this.changed();
    return c;
  }

  /**
   * setMuted mutes the conversation until a time (a Date), for ever
   * (null), or unmutes it (false). The server tells every connection of
   * the user (conversation.updated); this tab shows it at once.
   */
  async setMuted(cid, until) {
    const c = this.conversations.get(cid);
    if (!c) return;
    if (until === false) {
      await this.api.unmute(cid);
      c.muted_until = null;
    } else {
      await this.api.mute(cid, until ? until.toISOString() : null);
      c.muted_until = until ? until.toISOString() : MUTED_FOREVER;
    }
    this.#scheduleMuteEnd();
    this.changed();
  }

  /** scheduleMuteEnd redraws when the next mute ends by itself. */
  #scheduleMuteEnd() {
    clearTimeout(this.muteTimer);
    const now = Date.now();
    let next = Infinity;
    for (const c of this.conversations.values()) {
      const t = c.muted_until ? Date.parse(c.muted_until) : NaN;
      if (t > now && t < next) next = t;
    }
    if (next === Infinity) return;
    this.muteTimer = setTimeout(() => {
      this.#scheduleMuteEnd();
      this.changed();
    }, Math.min(next - now + 50, MAX_TIMER_MS));
  }

  #remove(id) {
    const had = this.conversations.delete(id);
    this.loaded.delete(id);
    this.typing.delete(id);
    this.recv.delete(id);
    this.deliveredSent.delete(id);
    clearTimeout(this.recvFillTimers.get(id));
    this.recvFillTimers.delete(id);
    if (this.openId === id) {
      this.openId = null;
      if (had) this.emit('notice', 'You are no longer a member of that conversation.');
      this.emit('closed', id);
    }
    this.changed();
  }

  #refetch(id, delay = 300) {
    if (this.refetchTimers.has(id)) return;
    this.refetchTimers.set(id, setTimeout(async () => {
      this.refetchTimers.delete(id);
      try {
        this.#upsert(await this.api.conversation(id));
      } catch (e) {
        if (e.code === 'not_found') this.#remove(id);
      }
    }, delay));
  }

  #wantUsers(ids) {
    for (const id of ids) if (!this.users.has(id)) this.usersWanted.add(id);
    if (!this.usersWanted.size || this.usersTimer) return;
    this.usersTimer = setTimeout(async () => {
      this.usersTimer = 0;
      const ids = [...this.usersWanted].slice(0, 50);
      await Promise.all(ids.map(async (id) => {
        try {
          this.users.set(id, await this.api.user(id));
          this.usersWanted.delete(id);
        } catch (e) {
          if (e.code === 'not_found') {
            this.users.set(id, { id, username: 'deleted', display_name: 'Deleted account' });
            this.usersWanted.delete(id);
          }
        }
      }));
      this.changed();
      if (this.usersWanted.size) setTimeout(() => this.#wantUsers([]), 3000);
    }, 0);
  }

  // ---- opening and history ----

  open(cid) {
    if (cid && !this.conversations.has(cid)) {
      if (this.listState === 'ready') return false;
      // Reopened from the URL before the list arrived: open it then.
      this.wantOpen = cid;
      return true;
    }
    this.wantOpen = null;
    if (this.openId && this.openId !== cid) this.stopTyping(this.openId);
    this.openId = cid || null;
    if (cid) {
      if (!this.loaded.has(cid)) this.#loadInitial(cid);
      this.#join(cid);
    }
    this.changed();
    return true;
  }

  async #loadInitial(cid) {
    const L = { bySeq: new Map(), ids: new Set(), low: 1, high: 0, hasOlder: false, loading: true, loadingOlder: false, filling: false, error: null };
    this.loaded.set(cid, L);
    this.changed();
    try {
      const r = await this.api.history(cid, { limit: PAGE });
      const msgs = r.messages || [];
      for (const m of msgs) if (this.#store(L, m)) this.#received(m);
      const c = this.conversations.get(cid);
      L.low = msgs.length ? msgs[0].seq : (c?.last_seq || 0) + 1;
      L.high = msgs.length ? msgs[msgs.length - 1].seq : L.low - 1;
      this.#recountHigh(L);
      L.hasOlder = !!r.has_more;
      L.loading = false;
      if (c && c.last_seq > L.high) this.#fill(cid);
      if (c) this.#recountUnread(c);
    } catch (e) {
      L.loading = false;
      L.error = e.message;
      if (this.loaded.get(cid) === L) this.loaded.delete(cid);
      if (e.code === 'not_found') this.#remove(cid);
      else this.emit('notice', `Could not load the messages: ${e.message}`);
    }
    this.changed();
  }

  /** loadOlder fetches the page before the oldest loaded message. */
  async loadOlder(cid) {
    const L = this.loaded.get(cid);
    if (!L || L.loading || L.loadingOlder || !L.hasOlder) return;
    L.loadingOlder = true;
    this.changed();
    try {
      const r = await this.api.history(cid, { before: L.low, limit: PAGE });
      for (const m of r.messages || []) if (this.#store(L, m)) this.#received(m);
      if (r.messages?.length) L.low = Math.min(L.low, r.messages[0].seq);
      L.hasOlder = !!r.has_more;
    } catch (e) {
      this.emit('notice', `Could not load older messages: ${e.message}`);
    } finally {
      L.loadingOlder = false;
      this.changed();
    }
  }

  /** fill fetches what is missing between the loaded top and last_seq. */
  async #fill(cid) {
    const L = this.loaded.get(cid);
    if (!L || L.loading || L.filling) return;
    L.filling = true;
    try {
      for (let i = 0; i < 50; i++) {
        const c = this.conversations.get(cid);
        if (!c || c.last_seq <= L.high) break;
        const r = await this.api.history(cid, { after: L.high, limit: 200 });
        const msgs = r.messages || [];
        for (const m of msgs) this.#addMessage(m, false);
        this.#recountHigh(L);
        if (!msgs.length || !r.has_more) break;
      }
    } catch {
      // Retried on the next hello or message.
    } finally {
      L.filling = false;
      this.changed();
    }
  }

  #store(L, m) {
    if (L.ids.has(m.id) || L.bySeq.has(m.seq)) return false;
    L.bySeq.set(m.seq, m);
    L.ids.add(m.id);
    return true;
  }

  #recountHigh(L) {
    while (L.bySeq.has(L.high + 1)) L.high++;
  }

  // ---- frames ----

  async #onHello() {
    const epoch = ++this.epoch;
    await this.listReady?.catch(() => {});
    if (epoch !== this.epoch || this.conn.state !== 'online') return;
    try {
      await this.#sync(epoch);
    } catch (e) {
      if (e.code === 'rate_limited') {
        setTimeout(() => { if (epoch === this.epoch) this.#onHello(); }, e.retryAfterMs || 1000);
        return;
      }
      // Connection lost: the next hello syncs again.
    }
    if (epoch !== this.epoch || this.conn.state !== 'online') return;
    this.#joinRooms();
    this.#flushOutbox();
    this.#wakeUploads();
    this.#deliverAll();
    if (this.openId) this.#fill(this.openId);
    this.changed();
  }

  async #sync(epoch) {
    const have = {};
    // From what this tab holds without a gap: a gap is filled by the sync.
    for (const c of this.conversations.values()) {
      have[c.id] = Math.min(c.last_seq || 0, this.recv.get(c.id)?.seq ?? Infinity);
    }
    let cursor = null;
    for (let page = 0; page < 100; page++) {
      const payload = { conversations: have, limit: PAGE };
      if (cursor) payload.cursor = cursor;
      const f = await this.conn.request('sync', payload, 30_000);
      if (epoch !== this.epoch) return;
      for (const e of f.payload?.conversations || []) {
        if (e.removed) {
          this.#remove(e.conversation.id);
          continue;
        }
        const c = this.#upsert(e.conversation);
        if (!c) continue;
        for (const m of e.messages || []) this.#addMessage(m, false);
      }
      this.listState = 'ready';
      this.#openWanted();
      cursor = f.payload?.next;
      if (!cursor) break;
    }
  }

  #onFrame(f) {
    const p = f.payload || {};
    switch (f.type) {
      case 'message.new':
        if (p.message) this.#addMessage(p.message, true);
        break;
      case 'receipt':
        this.#onReceipt(p);
        break;
      case 'typing':
        this.#onTyping(p);
        break;
      case 'presence':
        this.presence.set(p.user_id, { status: p.status, last_seen_at: p.last_seen_at });
        this.changed();
        break;
      case 'conversation.updated':
        this.#upsert(p.conversation);
        break;
      default:
        break; // error frames without id, future types
    }
  }

  #addMessage(m, live) {
    const cid = m.conversation_id;
    const c = this.conversations.get(cid);
    if (!c) {
      // A conversation this tab does not know yet: fetch it, then the
      // message comes along with its history.
      this.#refetch(cid, 0);
      return;
    }
    const mine = m.sender_id === this.me.id;
    if (mine && m.client_message_id) this.#settle(m.client_message_id, null);
    const L = this.loaded.get(cid);
    const R = this.recv.get(cid);
    // A frame repeated (delivery is at least once) is not news.
    let isNew = !R || (m.seq > R.seq && !R.ahead.has(m.seq));
    // Below the loaded page it would show past a hole: loadOlder gets it.
    if (L && !L.loading && m.seq >= L.low) {
      isNew = this.#store(L, m);
      this.#recountHigh(L);
      if (m.seq > L.high + 1 || c.last_seq > L.high) queueMicrotask(() => this.#fill(cid));
    }
    if (m.seq > (c.last_seq || 0)) {
      c.last_seq = m.seq;
      c.last_message = m;
      if ((m.created_at || '') > (c.updated_at || '')) c.updated_at = m.created_at;
      if (live && !mine && m.seq > (c.read_seq || 0)) c.unread_count = (c.unread_count || 0) + 1;
    } else if (c.last_message && m.seq === c.last_seq) {
      c.last_message = m;
    }
    this.#received(m);
    if (!mine) {
      const t = this.typing.get(cid);
      if (t?.delete(m.sender_id) && !t.size) this.typing.delete(cid);
      if (live && isNew) this.emit('incoming', c, m);
    }
    this.changed();
  }

  #onReceipt({ conversation_id: cid, user_id: uid, kind, seq }) {
    const c = this.conversations.get(cid);
    if (!c) return;
    const m = c.members.find((x) => x.user_id === uid);
    if (m) {
      m.delivered_seq = Math.max(m.delivered_seq || 0, seq);
      if (kind === 'read') m.read_seq = Math.max(m.read_seq || 0, seq);
    }
    if (uid === this.me.id && kind === 'read') {
      c.read_seq = Math.max(c.read_seq || 0, seq);
      this.#recountUnread(c);
    }
    this.changed();
  }

  #recountUnread(c) {
    if ((c.read_seq || 0) >= (c.last_seq || 0)) {
      c.unread_count = 0;
      return;
    }
    const L = this.loaded.get(c.id);
    if (L && !L.loading && L.low <= c.read_seq + 1 && L.high >= c.last_seq) {
      let n = 0;
      for (const m of L.bySeq.values()) if (m.seq > c.read_seq && m.sender_id !== this.me.id) n++;
      c.unread_count = n;
    } else {
      this.#refetch(c.id);
    }
  }

  #onTyping({ conversation_id: cid, user_id: uid, state }) {
    if (!cid || !uid || uid === this.me.id) return;
    let t = this.typing.get(cid);
    if (state === 'started') {
      if (!t) this.typing.set(cid, (t = new Map()));
      t.set(uid, Date.now() + TYPING_SHOW_MS);
      setTimeout(() => this.#expireTyping(cid), TYPING_SHOW_MS + 50);
    } else if (t) {
      t.delete(uid);
      if (!t.size) this.typing.delete(cid);
    }
    this.changed();
  }

  #expireTyping(cid) {
    const t = this.typing.get(cid);
    if (!t) return;
    const now = Date.now();
    for (const [uid, exp] of t) if (exp <= now) t.delete(uid);
    if (!t.size) this.typing.delete(cid);
    this.changed();
  }

  // ---- rooms ----

  #joinRooms() {
    const ids = new Set();
    if (this.openId) ids.add(this.openId);
    for (const c of this.sortedConversations()) {
      if (ids.size >= ROOMS_JOINED) break;
      ids.add(c.id);
    }
    for (const id of ids) this.#join(id);
  }

  async #join(cid) {
    if (this.conn.state !== 'online' || this.joined.has(cid)) return;
    this.joined.add(cid);
    try {
      const f = await this.conn.request('room.join', { conversation_id: cid });
      for (const p of f.payload?.presence || []) {
        this.presence.set(p.user_id, { status: p.status, last_seen_at: p.last_seen_at });
      }
      const typists = (f.payload?.typing || []).filter((u) => u !== this.me.id);
      if (typists.length) {
        const t = new Map(typists.map((u) => [u, Date.now() + TYPING_SHOW_MS]));
        this.typing.set(cid, t);
        setTimeout(() => this.#expireTyping(cid), TYPING_SHOW_MS + 50);
      }
      this.changed();
    } catch (e) {
      this.joined.delete(cid);
      if (e.code === 'rate_limited') setTimeout(() => this.#join(cid), e.retryAfterMs || 1000);
    }
  }

  // ---- receipts ----

  /** baseline starts counting what this tab received from a snapshot. */
  #baseline(c) {
    const top = c.last_seq || 0;
    const lm = c.last_message;
    const other = lm && lm.seq === top && lm.sender_id !== this.me.id ? top : 0;
    this.recv.set(c.id, { seq: top, other, base: top, ahead: new Map() });
    if (other) this.#queueDelivered(c.id);
  }

  /**
   * received counts a stored message that reached this tab (live, from a
   * sync or from history): the contiguous top moves past it once every
   * message below it is here too (seqs have no gaps).
   */
  #received(m) {
    const cid = m.conversation_id;
    const R = this.recv.get(cid);
    if (!R || m.seq <= R.seq) return;
    R.ahead.set(m.seq, m.sender_id !== this.me.id);
    const other = R.other;
    while (R.ahead.has(R.seq + 1)) {
      R.seq++;
      if (R.ahead.get(R.seq)) R.other = R.seq;
      R.ahead.delete(R.seq);
    }
    if (R.other > other) this.#queueDelivered(cid);
    this.#checkGap(cid);
  }

  /** checkGap fetches, a little later, what is missing below the top. */
  #checkGap(cid) {
    const c = this.conversations.get(cid);
    const R = this.recv.get(cid);
    if (!c || !R || R.seq >= (c.last_seq || 0) || this.recvFillTimers.has(cid)) return;
    // The missing ones are often on their way (a sync, the next frame).
    this.recvFillTimers.set(cid, setTimeout(() => {
      this.recvFillTimers.delete(cid);
      this.#fillRecv(cid);
    }, 500));
  }

  async #fillRecv(cid) {
    let c = this.conversations.get(cid);
    const R = this.recv.get(cid);
    if (!c || !R || R.seq >= (c.last_seq || 0)) return;
    if (c.last_seq - R.seq > RECV_GAP_MAX) {
      // Too far behind (a long time offline): start over from the top.
      this.recv.delete(cid);
      this.#baseline(c);
      return;
    }
    try {
      for (let i = 0; i < RECV_GAP_MAX / 200 + 1; i++) {
        const from = R.seq;
        const r = await this.api.history(cid, { after: from, limit: 200 });
        if (this.recv.get(cid) !== R) return;
        for (const m of r.messages || []) this.#addMessage(m, false);
        c = this.conversations.get(cid);
        if (!c || !r.messages?.length || !r.has_more || R.seq <= from) break;
      }
    } catch (e) {
      if (e.code === 'not_found') this.#remove(cid);
      // Else tried again after the next message, hello or sync.
    }
  }

  /**
   * queueDelivered sends, within DELIVERED_DELAY_MS and one per
   * conversation, a `delivered` receipt for the highest seq of someone
   * else's message that this tab holds without a gap below it, unless
   * this tab confirmed it already. The user's watermark does not matter:
   * the server wants each device's own confirmation. A message the tab
   * knows only from the conversation's snapshot at start is confirmed
   * when nobody did (the sender's ticks) or when it is recent (its push
   * may be waiting).
   */
  #queueDelivered(cid) {
    this.deliveredQueue.add(cid);
    if (this.deliveredTimer) return;
    this.deliveredTimer = setTimeout(() => {
      this.deliveredTimer = 0;
      const q = [...this.deliveredQueue];
      this.deliveredQueue.clear();
      for (const id of q) this.#sendDelivered(id);
    }, DELIVERED_DELAY_MS);
  }

  #sendDelivered(cid) {
    const c = this.conversations.get(cid);
    const R = this.recv.get(cid);
    const seq = R?.other || 0;
    const sent = this.deliveredSent.get(cid) || 0;
    if (!c || !seq || seq <= sent) return;
    if (seq <= R.base) {
      const mine = c.members.find((m) => m.user_id === this.me.id);
      const lm = c.last_message;
      const recent = lm?.seq === seq && Date.now() - Date.parse(lm.created_at) < DELIVERED_RECENT_MS;
      if (!recent && mine && Math.max(mine.delivered_seq || 0, mine.read_seq || 0) >= seq) return;
    }
    if (this.conn.state !== 'online') return; // sent after the next hello
    this.deliveredSent.set(cid, seq);
    this.conn.request('receipt', { conversation_id: cid, kind: 'delivered', seq }).catch((e) => {
      if (this.deliveredSent.get(cid) === seq) this.deliveredSent.set(cid, sent);
      if (e.code === 'rate_limited') setTimeout(() => this.#queueDelivered(cid), e.retryAfterMs || 1000);
      // unavailable: sent again after the next hello (#deliverAll).
    });
  }

  /** deliverAll confirms, per conversation, what reached this tab. */
  #deliverAll() {
    for (const cid of this.recv.keys()) this.#queueDelivered(cid);
  }

  /** markRead: seq was shown to the user in a visible tab. */
  markRead(cid, seq) {
    const c = this.conversations.get(cid);
    if (!c || !seq) return;
    const mine = c.members.find((m) => m.user_id === this.me.id);
    const have = Math.max(c.read_seq || 0, mine?.read_seq || 0, this.readSent.get(cid) || 0);
    if (seq <= have || this.conn.state !== 'online') return;
    this.readSent.set(cid, seq);
    this.conn.request('receipt', { conversation_id: cid, kind: 'read', seq }).catch(() => {
      if (this.readSent.get(cid) === seq) this.readSent.delete(cid);
    });
  }

  // ---- sending ----

  async #reloadOutbox() {
    let list;
    try {
      list = await outbox.list(this.me.id);
    } catch {
      return;
    }
    if (this.stopped) return;
    const ids = new Set(list.map((e) => e.client_message_id));
    // Entries this tab is still storing (or could not store) are not in
    // the list.
    const storing = this.pending.filter((e) => !ids.has(e.client_message_id) && this.uploads.has(e.client_message_id)
      && this.uploads.get(e.client_message_id).stored !== true);
    this.pending = list.filter((e) => !this.settled.has(e.client_message_id)).concat(storing);
    // An upload whose entry is gone was cancelled (maybe in another tab).
    for (const [cmid, u] of this.uploads) {
      if (u.stored === true && !ids.has(cmid) && !(await outbox.get(cmid).catch(() => true))) {
        this.#abortUpload(u, true);
        this.uploads.delete(cmid);
      }
    }
    // A file not uploaded yet: this tab uploads it unless another does.
    for (const e of this.pending) if (this.#needsUpload(e)) this.#upload(e);
    this.changed();
  }

  /** blobOf: the file of a pending media entry, while this tab has it. */
  blobOf(e) {
    return this.blobs.get(e.client_message_id) || e.blob || null;
  }

  /** uploadOf: this tab's upload of a pending entry, or null. */
  uploadOf(cmid) {
    return this.uploads.get(cmid) || null;
  }

  /**
   * sendMedia queues a photo, video or file with an optional caption: it
   * shows as pending (with the upload's progress) at once, is uploaded,
   * and is sent when the upload is complete.
   */
  async sendMedia(cid, file, caption = '') {
    if (!this.conversations.has(cid)) return;
    if (utf8Length(caption) > MAX_TEXT_BYTES) throw new ApiError('payload_too_large', 'That caption is too long (16 KB at most).');
    const e = {
      client_message_id: uuid(),
      owner: this.me.id,
      conversation_id: cid,
      kind: kindOf(file.type), // a guess: the server's type decides once uploaded
      text: caption,
      file: { name: file.name || 'file', size: file.size, type: file.type || '' },
      created_at: Date.now(),
    };
    this.blobs.set(e.client_message_id, file);
    this.pending.push(e);
    this.stopTyping(cid);
    // The lock first: another tab sees the entry and must not take it.
    // first() stores it and says whether it could.
    this.#upload(e, async () => {
      try {
        await outbox.put({ ...e, blob: file });
        return true;
      } catch {
        // Too large for the storage left: without the file (a reload
        // cannot resume it then), else only in this tab.
        return outbox.put(e).then(() => true, () => false);
      }
    });
    this.changed();
  }

  /** cancelUpload stops an upload and drops its message. */
  async cancelUpload(cmid) {
    const u = this.uploads.get(cmid);
    if (u) {
      this.uploads.delete(cmid);
      this.#abortUpload(u, true);
    }
    this.blobs.delete(cmid);
    await this.discard(cmid);
  }

  /** retryUpload: try a paused upload again now. */
  retryUpload(cmid) {
    this.uploads.get(cmid)?.wake?.();
  }

  #needsUpload(e) {
    return isMediaKind(e.kind) && !e.media_id && !e.error && !this.settled.has(e.client_message_id);
  }

  #abortUpload(u, terminate) {
    u.cancelled = true;
    u.ctl.abort();
    u.task?.abort(terminate);
    u.wake?.();
  }

  /** wakeUploads: the network is back, paused uploads try again now. */
  #wakeUploads() {
    for (const u of this.uploads.values()) if (u.state === 'paused') u.wake?.();
  }

  #progress() {
    if (this.progressTimer) return;
    this.progressTimer = setTimeout(() => {
      this.progressTimer = 0;
      this.changed();
    }, PROGRESS_MS);
  }

  /**
   * upload runs the entry's upload in this tab once it holds the entry's
   * lock: at once for a new entry (first runs first, which stores it),
   * or when the tab that had it goes away.
   */
  #upload(e, first) {
    const cmid = e.client_message_id;
    if (this.uploads.has(cmid) || this.stopped) return;
    // stored: the entry is in the outbox (true), not yet (undefined), or
    // could not be (false: this tab alone has it).
    const u = {
      state: 'waiting', sent: 0, total: e.file?.size || 0, error: null, task: null,
      ctl: new AbortController(), wake: null, cancelled: false, stored: first ? undefined : true, saving: null,
    };
    this.uploads.set(cmid, u);
    const job = async () => {
      if (first) u.stored = await first();
      // Read it again: the tab that had it may have finished it.
      const cur = first ? e : await outbox.get(cmid).catch(() => null);
      if (u.cancelled || this.stopped || !cur || !this.#needsUpload(cur)) return;
      await this.#runUpload(cur, u);
    };
    const lock = navigator.locks?.request
      ? navigator.locks.request(`parley.upload.${cmid}`, { signal: u.ctl.signal }, job)
      : job();
    lock.catch(() => {}).finally(() => {
      if (this.uploads.get(cmid) === u) this.uploads.delete(cmid);
      this.changed();
    });
  }

  /**
   * runUpload uploads until the server has the file, the user cancels or
   * the server refuses it. After a break it asks the server first: an
   * upload it has is resumed from its offset, a complete one is done.
   */
  async #runUpload(e, u) {
    const cmid = e.client_message_id;
    const file = this.blobs.get(cmid) || e.blob;
    if (!file) {
      await this.#uploadFailed(e, 'The file is no longer here: attach it again.');
      return;
    }
    let url = e.upload_url || null;
    for (let attempt = 0; !u.cancelled && !this.stopped; attempt++) {
      try {
        let id = null;
        if (url) {
          try {
            const m = await this.api.media(mediaIdOfUrl(url));
            await this.#uploaded(e, u, m);
            return;
          } catch (err) {
            if (err.code === 'not_found') url = null; // gone: start again
            else if (err.status !== 409) throw err; // 409: in progress, resume it
          }
        }
        u.state = 'uploading';
        u.error = null;
        this.changed();
        u.task = tusUpload(this.session, file, {
          name: e.file?.name,
          type: e.file?.type,
          uploadUrl: url,
          onUrl: (created) => {
            url = created;
            if (e.upload_url !== created) {
              e.upload_url = created;
              u.saving = this.#persist(e);
            }
          },
          onProgress: (sent, total) => {
            u.sent = sent;
            u.total = total;
            if (sent >= total) u.state = 'processing';
            this.#progress();
          },
        });
        id = await u.task.done;
        u.task = null;
        u.state = 'processing';
        this.changed();
        url = url || `/api/uploads/${id}`;
        await this.#uploaded(e, u, await this.api.media(id));
        return;
      } catch (err) {
        u.task = null;
        if (u.cancelled || this.stopped || err.code === 'cancelled') return;
        if (err instanceof Unauthenticated || err.code === 'unauthenticated') {
          this.emit('signedout', err);
          return;
        }
        if (err.permanent || (err instanceof ApiError && PERMANENT.has(err.code) && err.code !== 'not_found')) {
          await this.#uploadFailed(e, err.message || err.code);
          return;
        }
        // The upload is gone on the server (expired, or complete while
        // the answer was lost): ask about it at once.
        if (err.status === 404 && url && attempt < 3) continue;
        // Offline, the server away: paused until the network or the
        // server is back, or a while has passed.
        u.state = 'paused';
        u.error = err.message || 'the server cannot be reached';
        this.changed();
        await new Promise((resolve) => {
          const t = setTimeout(resolve, Math.min(UPLOAD_RETRY_MAX_MS, 2000 * 2 ** Math.min(attempt, 8)));
          u.wake = () => {
            clearTimeout(t);
            u.wake = null;
            resolve();
          };
        });
      }
    }
  }

  /** uploaded: the server has the file; the entry is sent now. */
  async #uploaded(e, u, media) {
    const cmid = e.client_message_id;
    // The upload's URL is written first, so that it cannot land after this.
    await u.saving;
    // Cancelled meanwhile (maybe in another tab): nothing to send.
    if (u.cancelled || (u.stored && !(await outbox.get(cmid).catch(() => e)))) return;
    const done = { ...e, media_id: media.id, media, kind: kindOf(media.mime_type) };
    delete done.blob;
    delete done.upload_url;
    this.blobs.delete(cmid);
    this.pending = this.pending.map((x) => (x.client_message_id === cmid ? done : x));
    this.uploads.delete(cmid);
    try {
      await outbox.put(done);
    } catch {
      // Not durable: still send it now.
    }
    this.changed();
    this.#trySend(done);
  }

  async #uploadFailed(e, message) {
    const cmid = e.client_message_id;
    this.blobs.delete(cmid);
    const failed = { ...e, error: message };
    delete failed.blob;
    this.pending = this.pending.map((x) => (x.client_message_id === cmid ? failed : x));
    await outbox.put(failed).catch(() => {});
    this.changed();
  }

  /** persist stores an entry's progress (upload_url), keeping its file. */
  async #persist(e) {
    try {
      const cur = await outbox.get(e.client_message_id);
      if (cur) await outbox.put({ ...cur, upload_url: e.upload_url });
    } catch {
      // Not durable: a reload starts this upload again.
    }
  }

  /**
   * refreshMedia fetches fresh signed URLs of a media (they expire) and
   * puts them into every message that shows it. One request per media at
   * a time; resolves with the Media, or null.
   */
  refreshMedia(id) {
    if (!id) return Promise.resolve(null);
    let p = this.mediaFetches.get(id);
    if (!p) {
      p = this.api.media(id).then((m) => {
        this.#replaceMedia(m);
        return m;
      }, () => null).finally(() => setTimeout(() => this.mediaFetches.delete(id), 5000));
      this.mediaFetches.set(id, p);
    }
    return p;
  }

  #replaceMedia(m) {
    if (!m?.id) return;
    const put = (msg) => {
      if (msg?.media?.id === m.id) msg.media = m;
    };
    for (const L of this.loaded.values()) for (const msg of L.bySeq.values()) put(msg);
    for (const c of this.conversations.values()) put(c.last_message);
    for (const e of this.pending) put(e);
    this.changed();
  }

  /** send queues a text; it shows as pending until the server has it. */
  async send(cid, text) {
    if (!text.trim() || !this.conversations.has(cid)) return;
    if (utf8Length(text) > MAX_TEXT_BYTES) throw new ApiError('payload_too_large', 'That message is too long (16 KB at most).');
    const e = {
      client_message_id: uuid(),
      owner: this.me.id,
      conversation_id: cid,
      kind: 'text',
      text,
      created_at: Date.now(),
    };
    this.pending.push(e);
    this.stopTyping(cid);
    this.changed();
    try {
      await outbox.put(e);
    } catch {
      // Not durable (storage refused): still try to send it now.
    }
    this.#trySend(e);
  }

  #flushOutbox() {
    for (const e of this.pending) this.#trySend(e);
  }

  async #trySend(e) {
    const id = e.client_message_id;
    if (this.conn.state !== 'online' || this.inflight.has(id) || this.settled.has(id) || e.error) return;
    // A photo, video or file goes once its upload is complete.
    if (isMediaKind(e.kind) && !e.media_id) return;
    this.inflight.add(id);
    try {
      const payload = {
        conversation_id: e.conversation_id,
        client_message_id: id,
        kind: e.kind,
        text: e.text,
      };
      if (e.media_id) payload.media_id = e.media_id;
      const f = await this.conn.request('message.send', payload);
      this.inflight.delete(id);
      this.#settle(id, f.payload?.message);
    } catch (err) {
      this.inflight.delete(id);
      if (err.code === 'rate_limited') {
        setTimeout(() => this.#trySend(e), err.retryAfterMs || 1000);
      } else if (PERMANENT.has(err.code)) {
        e.error = err.message || err.code;
        outbox.put(e).catch(() => {});
        this.changed();
      } else if (err.code === 'internal') {
        setTimeout(() => this.#trySend(e), 5000);
      }
      // unavailable: resent after the next hello.
    }
  }

  #settle(clientMessageId, message) {
    const had = this.pending.some((e) => e.client_message_id === clientMessageId);
    if (had || message) {
      this.settled.add(clientMessageId);
      this.pending = this.pending.filter((e) => e.client_message_id !== clientMessageId);
      if (had) outbox.remove(clientMessageId).catch(() => {});
    }
    if (message) this.#addMessage(message, true);
    this.changed();
  }

  /** discard drops a message the server refused. */
  async discard(clientMessageId) {
    this.settled.add(clientMessageId);
    this.blobs.delete(clientMessageId);
    this.pending = this.pending.filter((e) => e.client_message_id !== clientMessageId);
    await outbox.remove(clientMessageId).catch(() => {});
    this.changed();
  }

  // ---- typing ----

  /** typed: the user changed the composer of cid (text is its content). */
  typed(cid, text) {
    if (!text.trim()) {
      this.stopTyping(cid);
      return;
    }
    const t = this.myTyping;
    if (t.convId !== cid) {
      if (t.convId) this.stopTyping(t.convId);
      t.convId = cid;
      t.last = 0;
    }
    const now = Date.now();
    if (now - t.last >= TYPING_REPEAT_MS) {
      if (this.conn.send('typing', { conversation_id: cid, state: 'started' })) t.last = now;
    }
    clearTimeout(t.idle);
    t.idle = setTimeout(() => this.stopTyping(cid), TYPING_IDLE_MS);
  }

  stopTyping(cid) {
    const t = this.myTyping;
    if (t.convId !== cid) return;
    clearTimeout(t.idle);
    if (t.last) this.conn.send('typing', { conversation_id: cid, state: 'stopped' });
    t.convId = null;
    t.last = 0;
  }

  // ---- people and groups ----

  async findUser(username) {
    const name = username.trim().replace(/^@/, '').toLowerCase();
    if (!name) return null;
    const r = await this.api.searchUsers(name);
    const u = (r.users || []).find((x) => x.username === name) || null;
    if (u) this.users.set(u.id, u);
    return u;
  }

  async search(prefix) {
    const q = prefix.trim().replace(/^@/, '').toLowerCase();
    if (!q) return [];
    const r = await this.api.searchUsers(q);
    for (const u of r.users || []) this.users.set(u.id, u);
    return (r.users || []).filter((u) => u.id !== this.me.id);
  }

  /** startDirect opens the direct chat with the user of that exact name. */
  async startDirect(username) {
    const name = username.trim().replace(/^@/, '').toLowerCase();
    const u = await this.findUser(name);
    if (!u) throw new ApiError('not_found', `There is no user named “${name}”.`);
    if (u.id === this.me.id) throw new ApiError('invalid_argument', 'That is you. Pick someone else.');
    const c = this.#upsert(await this.api.createDirect(u.id));
    return c;
  }

  async createGroup(title, usernames) {
    const ids = [];
    for (const name of usernames) {
      const u = await this.findUser(name);
      if (!u) throw new ApiError('not_found', `There is no user named “${name}”.`);
      if (u.id !== this.me.id && !ids.includes(u.id)) ids.push(u.id);
    }
    if (!ids.length) throw new ApiError('invalid_argument', 'Add at least one other person.');
    return this.#upsert(await this.api.createGroup(title, ids));
  }

  async addMember(cid, username) {
    const u = await this.findUser(username);
    if (!u) throw new ApiError('not_found', `There is no user named “${username.trim()}”.`);
    return this.#upsert(await this.api.addMember(cid, u.id));
  }

  async leave(cid) {
    await this.api.removeMember(cid, this.me.id);
    this.#remove(cid);
  }
}
