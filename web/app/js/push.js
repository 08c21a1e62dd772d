// Web Push in the page: the service worker (/sw.js) shows the
// notifications; this module registers it and, once the user has allowed
// notifications, subscribes with the server's VAPID key and registers the
// subscription as a `web` device token (docs/protocol.md, "Device tokens"
// and "Push notifications"). At sign-out it deletes the token while the
// access token still works, then drops the subscription.
//
// Push is an extra: a browser without it, a server with Web Push off (404
// for the key), a push service that cannot be reached, each only costs a
// line on the console. Nothing here throws into the app.

const WORKER = '/sw.js';
// The device token this browser last registered, and for whom: shared by
// the tabs, so that a changed subscription replaces the old token.
const RECORD = 'parley.push';
const TIMEOUT_MS = 15_000;
const SIGNOUT_MS = 5_000;

/** supported: the browser can receive Web Push (secure context, worker, push). */
export function supported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

// Trusted Types: register() takes a TrustedScriptURL. The CSP admits one
// policy, this one (web.go), and it makes exactly one URL.
const POLICY = 'parley-sw';

function workerURL() {
  if (!window.trustedTypes?.createPolicy) return WORKER;
  const policy = trustedTypes.createPolicy(POLICY, {
    createScriptURL(u) {
      if (u !== WORKER) throw new TypeError(`${POLICY} only makes ${WORKER}`);
      return u;
    },
  });
  return policy.createScriptURL(WORKER);
}

let registering = null;

/**
 * registerWorker registers the service worker once per page; it resolves
 * to the registration, or null where there is none.
 */
export function registerWorker() {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  registering ??= (async () => navigator.serviceWorker.register(workerURL(), { scope: '/' }))().catch((e) => {
    console.warn('parley: the service worker was not registered:', e?.message || e);
    return null;
  });
  return registering;
}

/** activeRegistration waits for the registration to have an active worker. */
async function activeRegistration() {
  const reg = await registerWorker();
  if (!reg) return null;
  if (reg.active) return reg;
  return timeout(navigator.serviceWorker.ready, TIMEOUT_MS, 'the service worker did not start');
}

/**
 * showNotification shows a notification through the service worker, for
 * browsers that have no `new Notification` in pages (Android). A click is
 * handled like a push's: the worker opens the conversation in data.
 */
export async function showNotification(title, options) {
  const reg = await navigator.serviceWorker?.getRegistration();
  if (reg) await reg.showNotification(title, options);
}

function timeout(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(what)), ms); }),
  ]).finally(() => clearTimeout(t));
}

function readRecord() {
  try {
    const r = JSON.parse(localStorage.getItem(RECORD) || 'null');
    return r && typeof r.user === 'string' && typeof r.token === 'string' ? r : null;
  } catch {
    return null;
  }
}

/** keyBytes decodes the server's base64url public key. */
function keyBytes(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function sameBytes(buf, bytes) {
  if (!buf) return false;
  const a = new Uint8Array(buf);
  return a.length === bytes.length && a.every((x, i) => x === bytes[i]);
}

function permission() {
  return 'Notification' in window ? Notification.permission : 'denied';
}

/**
 * WebPush keeps one user's browser subscription registered with the
 * server while the app runs.
 */
export class WebPush {
  #chain = Promise.resolve();
  #offs = [];
  #registered = null; // the token this tab registered, for this user
  #stopped = false;

  constructor(api, userId) {
    this.api = api;
    this.userId = userId;
  }

  /**
   * active: this tab registered the browser's subscription with the
   * server, so pushes reach this browser while its tabs are hidden.
   */
  get active() {
    return this.#registered !== null && !this.#stopped && permission() === 'granted';
  }

  /** start registers now (a login, a reload) and whenever something changes. */
  start() {
    if (!supported() || this.#stopped) return;
    const onMessage = (e) => {
      if (e.data?.type === 'parley.pushsubscriptionchange') this.sync();
    };
    navigator.serviceWorker.addEventListener('message', onMessage);
    this.#offs.push(() => navigator.serviceWorker.removeEventListener('message', onMessage));
    // Notifications allowed or blocked later, from the bell or the
    // browser's own settings.
    navigator.permissions?.query({ name: 'notifications' }).then((status) => {
      if (this.#stopped) return;
      const onChange = () => this.sync();
      status.addEventListener('change', onChange);
      this.#offs.push(() => status.removeEventListener('change', onChange));
    }).catch(() => {});
    this.sync();
  }

  stop() {
    this.#stopped = true;
    for (const off of this.#offs.splice(0)) off();
  }

  /**
   * sync makes the server know this browser's subscription if the user
   * allows notifications, and forget it if not. One runs at a time; it
   * never throws.
   */
  sync() {
    const run = () => (this.#stopped ? null : this.#sync().catch((e) => {
      console.warn('parley: push notifications are not set up:', e?.message || e);
    }));
    this.#chain = this.#chain.then(run, run);
    return this.#chain;
  }

  async #sync() {
    if (!supported()) return;
    const rec = readRecord();
    if (permission() !== 'granted') {
      // Blocked or never allowed: a token registered earlier is useless.
      if (rec?.user === this.userId) {
        await this.#delete(rec.token);
        localStorage.removeItem(RECORD);
      }
      return;
    }
    const reg = await activeRegistration();
    if (!reg || this.#stopped) return;
    let key;
    try {
      key = (await this.api.call('GET', '/api/push/vapid-public-key'))?.public_key;
    } catch (e) {
      if (e?.status === 404) {
        console.info('parley: this server does not send Web Push notifications');
        return;
      }
      throw e;
    }
    if (typeof key !== 'string' || !key) throw new Error('the server sent no VAPID key');
    const applicationServerKey = keyBytes(key);
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameBytes(sub.options?.applicationServerKey, applicationServerKey)) {
      // Made with another key (the server's changed): it cannot be used.
      await sub.unsubscribe().catch(() => {});
      sub = null;
    }
    if (!sub) {
      sub = await timeout(reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey }),
        TIMEOUT_MS, 'no push service answered');
    }
    const token = JSON.stringify(sub);
    if (this.#stopped || token === this.#registered) return;
    const old = readRecord();
    if (old && old.user === this.userId && old.token !== token) await this.#delete(old.token);
    await this.api.call('POST', '/api/device-tokens', { platform: 'web', token });
    this.#registered = token;
    localStorage.setItem(RECORD, JSON.stringify({ user: this.userId, token }));
  }

  async #delete(token) {
    try {
      await this.api.call('DELETE', `/api/device-tokens/${encodeURIComponent(token)}`);
    } catch (e) {
      console.warn('parley: the push token was not deleted:', e?.message || e);
    }
  }

  /**
   * disable runs at sign-out, before the tokens are cleared: it deletes
   * the device token (so the server stops pushing to this browser), then
   * drops the subscription. It takes a few seconds at most.
   */
  async disable() {
    this.stop();
    if (!supported()) return;
    const work = (async () => {
      const tokens = new Set();
      const rec = readRecord();
      if (rec?.user === this.userId) tokens.add(rec.token);
      const reg = await navigator.serviceWorker.getRegistration();
      const sub = await reg?.pushManager.getSubscription();
      if (sub) tokens.add(JSON.stringify(sub));
      for (const t of tokens) await this.#delete(t);
      localStorage.removeItem(RECORD);
      await sub?.unsubscribe();
    })();
    await timeout(work, SIGNOUT_MS, 'signing out of push took too long').catch((e) => {
      console.warn('parley:', e?.message || e);
    });
  }

  /**
   * forget drops this browser's subscription without the API, when the
   * login ended elsewhere (revoked, or signed out in another tab): the
   * push service then refuses the old endpoint and the server deletes
   * the token by itself.
   */
  static async forget() {
    if (!supported()) return;
    localStorage.removeItem(RECORD);
    try {
      const reg = await navigator.serviceWorker.getRegistration();
      const sub = await reg?.pushManager.getSubscription();
      await sub?.unsubscribe();
    } catch (e) {
      console.warn('parley: the push subscription was not dropped:', e?.message || e);
    }
  }
}
