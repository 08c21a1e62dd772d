// The login session: the token pair in localStorage, so that it survives a
// reload and every tab of the origin shares it.
//
// Refresh tokens rotate and a rotated one presented again revokes the whole
// login, so refreshes are serialized across tabs with a Web Lock (or a
// best-effort localStorage lock where Web Locks are missing), and the store
// is re-read inside the lock: another tab may have refreshed already. The
// new pair is written before it is used.

import { ApiError, Emitter, sleep, uuid } from './util.js';

const KEY = 'parley.session';
const LOCK = 'parley.refresh';
// Refresh once 80% of the access token's lifetime has passed (12 of 15
// minutes by default), well before the server closes the socket with 4001.
const REFRESH_AT = 0.8;

export class Unauthenticated extends Error {
  constructor(message = 'signed out') {
    super(message);
    this.name = 'Unauthenticated';
  }
}

export class Session extends Emitter {
  #timer = 0;

  constructor() {
    super();
    // Another tab refreshed (new pair) or signed out (gone).
    window.addEventListener('storage', (e) => {
      if (e.key !== KEY && e.key !== null) return;
      const s = this.load();
      if (!s) this.emit('signedout');
      else {
        this.emit('tokens', s);
        this.#schedule();
      }
    });
  }

  /** load reads the stored session, or null. */
  load() {
    try {
      const s = JSON.parse(localStorage.getItem(KEY) || 'null');
      return s && s.access_token && s.refresh_token && s.user ? s : null;
    } catch {
      return null;
    }
  }

  get user() {
    return this.load()?.user ?? null;
  }

  /** save stores a Tokens answer from register, login or refresh. */
  save(t) {
    const now = Date.now();
    const ttl = Math.max(10, Number(t.expires_in) || 900) * 1000;
    const s = {
      user: t.user,
      access_token: t.access_token,
      refresh_token: t.refresh_token,
      issued_at: now,
      expires_at: now + ttl,
    };
    localStorage.setItem(KEY, JSON.stringify(s));
    this.#schedule();
    return s;
  }

  clear() {
    localStorage.removeItem(KEY);
    clearTimeout(this.#timer);
  }

  /** start arms the proactive refresh of this tab. */
  start() {
    this.#schedule();
  }

  stop() {
    clearTimeout(this.#timer);
  }

  #refreshDue(s) {
    return s.issued_at + (s.expires_at - s.issued_at) * REFRESH_AT;
  }

  #schedule() {
    clearTimeout(this.#timer);
    const s = this.load();
    if (!s) return;
    // A little jitter so that tabs do not all wake at once (they would
    // only queue on the lock, but there is no need).
    const life = s.expires_at - s.issued_at;
    const wait = Math.max(1000, this.#refreshDue(s) - Date.now() + Math.random() * life * 0.05);
    this.#timer = setTimeout(() => {
      this.accessToken().catch((e) => {
        if (e instanceof Unauthenticated) this.emit('signedout');
        else this.#timer = setTimeout(() => this.#schedule(), 10_000);
      });
    }, Math.min(wait, 2 ** 31 - 1));
  }

  /**
   * accessToken returns a usable access token, refreshing it first when it
   * is close to expiry. It throws Unauthenticated when the login is gone.
   */
  async accessToken() {
    const s = this.load();
    if (!s) throw new Unauthenticated();
    if (Date.now() < this.#refreshDue(s)) return s.access_token;
    return (await this.refresh(s.access_token)).access_token;
  }

  /**
   * refresh replaces the token pair unless another tab already replaced
   * stale (the access token the caller found wanting). One refresh runs at
   * a time across tabs.
   */
  async refresh(stale) {
    return withLock(LOCK, async () => {
      const cur = this.load();
      if (!cur) throw new Unauthenticated();
      if (cur.access_token !== stale && Date.now() < this.#refreshDue(cur)) return cur;
      let res;
      try {
        res = await fetch('/api/auth/refresh', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ refresh_token: cur.refresh_token }),
          cache: 'no-store',
        });
      } catch (e) {
        throw new ApiError('unavailable', 'network error while refreshing');
      }
      if (res.status === 401 || res.status === 400) {
        // The login is over (revoked, expired, or reused elsewhere).
        if (this.load()?.refresh_token === cur.refresh_token) this.clear();
        throw new Unauthenticated('your session has ended, please sign in again');
      }
      if (!res.ok) throw new ApiError('unavailable', `refresh failed with ${res.status}`, res.status);
      const s = this.save(await res.json());
      this.emit('tokens', s);
      return s;
    });
  }
}

/**
 * withLock runs fn holding the named lock across every tab of the origin.
 * navigator.locks exists in secure contexts (https, localhost); elsewhere a
 * localStorage lock with a lease does nearly as well.
 */
export async function withLock(name, fn) {
  if (navigator.locks?.request) return navigator.locks.request(name, { mode: 'exclusive' }, fn);
  const key = `parley.lock.${name}`;
  const me = uuid();
  const read = () => {
    try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch { return null; }
  };
  for (let i = 0; i < 200; i++) {
    const held = read();
    if (!held || held.until < Date.now()) {
      localStorage.setItem(key, JSON.stringify({ owner: me, until: Date.now() + 15_000 }));
      await sleep(40);
      if (read()?.owner === me) {
        try {
          return await fn();
        } finally {
          if (read()?.owner === me) localStorage.removeItem(key);
        }
      }
    }
    await sleep(50 + Math.random() * 100);
  }
  throw new ApiError('unavailable', 'could not take the refresh lock');
}
