// The WebSocket to /ws on the page's own origin (ws: or wss: after the
// page's scheme, so the server's Origin check passes without
// configuration). It authenticates with a first-frame `auth`, reconnects by
// itself with exponential backoff and full jitter, extends itself with a
// fresh token before the old one expires, and matches replies to requests
// by frame id.
//
// It also tells the server whether the page is seen (docs/protocol.md,
// section 18, `app.state`): `background` when the page becomes hidden,
// `foreground` when it is visible again, and `background` right after
// `hello` on a connection opened while hidden (a new connection starts in
// the foreground). The server holds a device's push notifications back
// while it has a foreground connection, so a hidden tab must say so, or
// it would silence its own browser's Web Push.
//
// States: 'connecting' (dialling, authenticating or waiting to retry),
// 'online' (hello received), 'offline' (the browser says there is no
// network: no attempt until it comes back).

import { ApiError, Emitter, backoff } from './util.js';
import { Unauthenticated } from './session.js';

const HELLO_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 20_000;
// A connection that stayed up this long resets the backoff.
const STABLE_MS = 60_000;

export function socketURL(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

export class Connection extends Emitter {
  state = 'connecting';
  #session;
  #ws = null;
  #seq = 0;
  #pending = new Map(); // id -> {resolve, reject, timer}
  #attempt = 0;
  #retryTimer = 0;
  #stableTimer = 0;
  #stopped = true;
  #authFailures = 0;
  #offTokens = null;
  #listeners = [];
  // What the server was last told of the current connection's page.
  #appState = 'foreground';

  constructor(session) {
    super();
    this.#session = session;
  }

  start() {
    if (!this.#stopped) return;
    this.#stopped = false;
    const on = (target, type, fn) => {
      target.addEventListener(type, fn);
      this.#listeners.push(() => target.removeEventListener(type, fn));
    };
    on(window, 'offline', () => {
      // The browser lost the network. An open socket may not notice for a
      // long time (or, under emulation, at all): drop it now, so that what
      // the user writes is kept as pending instead of vanishing into it.
      this.#drop(4000, 'offline');
      this.#setState('offline');
    });
    on(window, 'online', () => this.#connectSoon(Math.random() * 300));
    on(document, 'visibilitychange', () => {
      this.#sendAppState();
      if (document.visibilityState === 'visible' && !this.#ws && this.state !== 'offline') this.#connectSoon(0);
    });
    this.#offTokens = this.#session.on('tokens', (s) => this.#reauth(s.access_token));
    this.#connectSoon(0);
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#stableTimer);
    for (const off of this.#listeners.splice(0)) off();
    this.#offTokens?.();
    this.#drop(1000, 'bye');
  }

  /** send sends a frame without waiting for anything; false if offline. */
  send(type, payload) {
    if (this.state !== 'online' || this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify({ type, payload }));
    return true;
  }

  /**
   * request sends a frame with an id and resolves with the reply frame; an
   * `error` reply rejects with an ApiError of its code, a lost connection
   * with ApiError('unavailable').
   */
  request(type, payload, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (this.state !== 'online' || this.#ws?.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ApiError('unavailable', 'not connected'));
    }
    return this.#request(this.#ws, type, payload, timeoutMs);
  }

  #request(ws, type, payload, timeoutMs) {
    const id = `c-${++this.#seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ApiError('unavailable', `no answer to ${type}`));
        // A connection that does not answer is broken: start over.
        if (this.#ws === ws) this.#drop(4000, 'request timeout', true);
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ type, id, payload }));
    });
  }

  /**
   * sendAppState tells the open connection whether the page is hidden,
   * when that changed since it was last told. A connection that is not up
   * yet is told right after its hello.
   */
  #sendAppState() {
    const ws = this.#ws;
    const want = document.visibilityState === 'hidden' ? 'background' : 'foreground';
    if (!ws || this.state !== 'online' || ws.readyState !== WebSocket.OPEN || this.#appState === want) return;
    this.#appState = want;
    this.#request(ws, 'app.state', { state: want }, REQUEST_TIMEOUT_MS).catch(() => {
      // A server without the extension answers an error: nothing to do.
      // A lost connection: the next one starts in the foreground and is
      // told after its hello.
    });
  }

  #setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  #connectSoon(ms) {
    if (this.#stopped) return;
    clearTimeout(this.#retryTimer);
    if (!navigator.onLine) {
      this.#setState('offline');
      return;
    }
    if (this.#ws) return;
    this.#setState('connecting');
    this.#retryTimer = setTimeout(() => this.#connect(), ms);
  }

  #retry(minMs = 0) {
    if (this.#stopped) return;
    const wait = Math.max(minMs, backoff(this.#attempt++));
    this.#connectSoon(wait);
  }

  async #connect() {
    if (this.#stopped || this.#ws) return;
    let token;
    try {
      token = await this.#session.accessToken();
    } catch (e) {
      if (e instanceof Unauthenticated) {
        this.emit('signedout', e);
        return;
      }
      this.#retry(1000);
      return;
    }
    if (this.#stopped || this.#ws) return;
    if (!navigator.onLine) {
      this.#setState('offline');
      return;
    }
    let ws;
    try {
      ws = new WebSocket(socketURL(), 'parley.v1');
    } catch {
      this.#retry(1000);
      return;
    }
    this.#ws = ws;
    let helloTimer = 0;
    let authed = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'auth', id: 'auth', payload: { token } }));
      helloTimer = setTimeout(() => this.#drop(4000, 'no hello', true), HELLO_TIMEOUT_MS);
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!f || typeof f.type !== 'string') return;
      if (f.type === 'hello' && !authed) {
        authed = true;
        clearTimeout(helloTimer);
        this.#authFailures = 0;
        this.#setState('online');
        clearTimeout(this.#stableTimer);
        this.#stableTimer = setTimeout(() => { this.#attempt = 0; }, STABLE_MS);
        // A new connection is in the foreground: before anything else, say
        // so if the page is hidden.
        this.#appState = 'foreground';
        this.#sendAppState();
        this.emit('hello', f.payload);
        return;
      }
      if (f.id && this.#pending.has(f.id)) {
        const p = this.#pending.get(f.id);
        this.#pending.delete(f.id);
        clearTimeout(p.timer);
        if (f.type === 'error') {
          const e = f.payload || {};
          p.reject(new ApiError(e.code || 'internal', e.message, 0, e.retry_after_ms || 0));
        } else p.resolve(f);
        return;
      }
      this.emit('frame', f);
    };
    ws.onclose = (ev) => {
      clearTimeout(helloTimer);
      if (this.#ws !== ws) return;
      this.#closed(ev.code, authed, token);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  /** drop closes the current socket; retry says to reconnect after it. */
  #drop(code, reason, retry = false) {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    ws.onclose = null;
    ws.onmessage = null;
    try { ws.close(code >= 4000 || code === 1000 ? code : 1000, reason); } catch { /* already closed */ }
    this.#failPending();
    clearTimeout(this.#stableTimer);
    this.emit('closed', { code });
    if (retry) this.#retry();
  }

  #failPending() {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new ApiError('unavailable', 'connection lost'));
      this.#pending.delete(id);
    }
  }

  async #closed(code, authed, token) {
    this.#ws = null;
    this.#failPending();
    clearTimeout(this.#stableTimer);
    this.emit('closed', { code });
    if (this.#stopped) return;
    if (code === 4003) {
      this.emit('signedout', new Unauthenticated('this account was deleted or disabled'));
      return;
    }
    if (code === 4001) {
      // Expired or revoked: refresh once, then reconnect. A second 4001
      // right after a fresh refresh means the login is gone.
      if (++this.#authFailures > 2) {
        this.emit('signedout', new Unauthenticated());
        return;
      }
      this.#setState('connecting');
      try {
        await this.#session.refresh(token);
      } catch (e) {
        if (e instanceof Unauthenticated) {
          this.emit('signedout', e);
          return;
        }
        this.#retry(1000);
        return;
      }
      this.#connectSoon(authed ? 0 : backoff(this.#attempt++));
      return;
    }
    // 1013: the server could not keep up; never come straight back.
    this.#retry(code === 1013 ? 2000 : 0);
  }

  /** reauth extends the open connection with a fresh access token. */
  #reauth(token) {
    const ws = this.#ws;
    if (!ws || this.state !== 'online' || ws.readyState !== WebSocket.OPEN) return;
    this.#request(ws, 'auth', { token }, REQUEST_TIMEOUT_MS).catch(() => {
      // An unauthenticated answer is followed by a 4001 close, handled there.
    });
  }
}
