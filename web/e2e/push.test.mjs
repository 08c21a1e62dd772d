// Web Push in the browser client: the service worker (/sw.js), the
// subscription flow (subscribe once notifications are allowed, register
// the subscription as a `web` device token, delete it at sign-out), and
// the worker's handling of a push and of a click on its notification.
//
//   cd web/e2e && npm ci && npm test
//
// What headless Chromium cannot do here, and how the tests get around it:
// - pushManager.subscribe needs a push service (Google's FCM for Chromium).
//   In a Playwright context (incognito-like) Chromium refuses at once ("not
//   supported in incognito"), and in a normal profile it waits for FCM,
//   which this machine cannot reach. So the tests replace PushManager's
//   subscribe/getSubscription in the page with a fake subscription (an
//   endpoint, keys and toJSON, as a browser's) and check what the app does
//   with it against the real server.
// - A push goes in through the DevTools protocol
//   (ServiceWorker.deliverPushMessage): the worker gets a real, trusted
//   push event with the JSON payload the server would send, but nothing
//   went through a push service or aes128gcm decryption (the Go tests of
//   the server cover those).
// - A click on a notification cannot be made through the protocol: the
//   test dispatches a synthetic notificationclick event with the shown
//   notification inside the worker. Without a real click the worker may
//   not focus a window or open a new one (no user activation), so the
//   openWindow path (no app window open) is not exercised.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH, randomUUID } from 'node:crypto';
import { startServer, launchBrowser, User, uniqueName, until, sleep } from './harness.mjs';

/**
 * fakePush replaces PushManager's subscribe and getSubscription in the
 * page. The subscription lives in localStorage (so every tab and reload
 * of the origin sees the same one, as with a browser's); window.__push
 * counts the calls of this page.
 */
function fakePush() {
  const STORE = '__fakepush';
  const b64 = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const unb64 = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const calls = { subscribe: [], getSubscription: 0, unsubscribe: 0 };
  window.__push = calls;
  const make = (state) => ({
    endpoint: state.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: unb64(state.key).buffer },
    getKey: (name) => unb64(state.keys[name]).buffer,
    toJSON: () => ({ endpoint: state.endpoint, expirationTime: null, keys: { ...state.keys } }),
    async unsubscribe() {
      calls.unsubscribe += 1;
      if (JSON.parse(localStorage.getItem(STORE) || 'null')?.endpoint === state.endpoint) localStorage.removeItem(STORE);
      return true;
    },
  });
  PushManager.prototype.subscribe = async function subscribe(options) {
    const k = options.applicationServerKey;
    const key = typeof k === 'string' ? k : b64(new Uint8Array(k.buffer ? k.buffer.slice(k.byteOffset, k.byteOffset + k.byteLength) : k));
    calls.subscribe.push({ userVisibleOnly: options.userVisibleOnly, key });
    const p256dh = crypto.getRandomValues(new Uint8Array(65));
    p256dh[0] = 4;
    const state = {
      endpoint: `https://push.example.com/send/${crypto.randomUUID()}`,
      key,
      keys: { p256dh: b64(p256dh), auth: b64(crypto.getRandomValues(new Uint8Array(16))) },
    };
    localStorage.setItem(STORE, JSON.stringify(state));
    return make(state);
  };
  PushManager.prototype.getSubscription = async function getSubscription() {
    calls.getSubscription += 1;
    const s = JSON.parse(localStorage.getItem(STORE) || 'null');
    return s ? make(s) : null;
  };
}

/** cspWatch records CSP violations in the page. */
function cspWatch() {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
}

const PROBLEM_404 = JSON.stringify({
  type: 'about:blank', title: 'Not Found', status: 404, code: 'not_found', detail: 'Web Push is not enabled on this server',
});

describe('Web Push in the browser', { timeout: 300_000 }, () => {
  let server;
  let browser;
  let base;
  // The server's VAPID key, or, while it has none (Web Push not wired or
  // off), a key made here and answered by a route in the browser.
  let vapidKey;
  let serverHasKey;
  const users = [];

  async function rest(method, path, token, body) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: res.status, json };
  }

  async function login(name, password) {
    const r = await rest('POST', '/api/auth/login', null, { username: name, password });
    assert.equal(r.status, 200, `login ${name}: ${r.status}`);
    return r.json.access_token;
  }

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    base = server.url;
    const reg = await rest('POST', '/api/auth/register', null, { username: uniqueName('probe'), password: 'correct horse battery' });
    assert.equal(reg.status, 201);
    const r = await rest('GET', '/api/push/vapid-public-key', reg.json.access_token);
    serverHasKey = r.status === 200;
    if (serverHasKey) {
      vapidKey = r.json.public_key;
      assert.match(vapidKey, /^[A-Za-z0-9_-]{87}$/, 'a base64url uncompressed P-256 point');
    } else {
      assert.equal(r.status, 404, 'no VAPID key is 404');
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      vapidKey = ecdh.getPublicKey().toString('base64url');
    }
  });

  after(async () => {
    for (const u of users) await u.close().catch(() => {});
    await browser?.close();
    await server?.stop();
  });

  /**
   * person opens a browser context. allow: notifications are allowed;
   * fake: PushManager is the fake one; key: 'server' (the server's key,
   * or a route answering with one), '404' (a route answering 404), or
   * nothing (the server as it is); base: another server. log records the
   * push-related calls.
   */
  async function person(prefix, { allow = false, fake = true, key = 'server', base: at = base } = {}) {
    const u = new User(browser, at, uniqueName(prefix), allow ? { permissions: ['notifications'] } : {});
    u.log = [];
    await u.open(async (context) => {
      await context.addInitScript(cspWatch);
      if (fake) await context.addInitScript(fakePush);
      if (key === '404' || (key === 'server' && !serverHasKey)) {
        await context.route('**/api/push/vapid-public-key', (route) => route.fulfill(key === '404'
          ? { status: 404, contentType: 'application/problem+json', body: PROBLEM_404 }
          : { status: 200, contentType: 'application/json', body: JSON.stringify({ public_key: vapidKey }) }));
      }
      context.on('response', (res) => {
        const req = res.request();
        const path = new URL(req.url()).pathname;
        if (!/^\/api\/(device-tokens|push\/|auth\/logout)/.test(path)) return;
        let body = null;
        try { body = req.postDataJSON(); } catch { /* none */ }
        u.log.push({ method: req.method(), path, status: res.status(), body });
      });
    });
    users.push(u);
    return u;
  }

  const calls = (u, method, prefix) => u.log.filter((c) => c.method === method && c.path.startsWith(prefix));

  async function pushCalls(u, page = u.page) {
    return page.evaluate(() => window.__push);
  }

  async function noCSPViolations(u, page = u.page) {
    assert.deepEqual(await page.evaluate(() => window.__csp), [], 'CSP violations');
  }

  /** worker returns the context's service worker (starting it if needed). */
  async function worker(u) {
    const find = () => u.context.serviceWorkers().find((w) => w.url() === `${base}/sw.js`);
    if (!find()) await u.page.evaluate(() => navigator.serviceWorker.ready);
    return until(find, 'the service worker');
  }

  it('serves /sw.js from the root as JavaScript, under the app CSP', async (t) => {
    t.diagnostic(serverHasKey
      ? 'the server serves a VAPID key: the tests use it'
      : 'the server has no VAPID key (404): a route in the browser answers with one made here');
    const res = await fetch(`${base}/sw.js`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/javascript/);
    const page = await fetch(`${base}/`);
    const csp = res.headers.get('content-security-policy');
    assert.equal(csp, page.headers.get('content-security-policy'));
    assert.match(csp, /worker-src 'self'/);
    assert.match(csp, /require-trusted-types-for 'script'; trusted-types parley-sw$/);
    assert.equal(res.headers.get('service-worker-allowed'), null);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  });

  it('registers the service worker, which controls the app after a reload', async () => {
    const u = await person('sw', { fake: false, key: null });
    const reg = await u.page.evaluate(async () => {
      const r = await navigator.serviceWorker.ready;
      return { scope: r.scope, script: r.active?.scriptURL };
    });
    assert.deepEqual(reg, { scope: `${base}/`, script: `${base}/sw.js` });
    // clients.claim(): the first page is controlled too, and every load after.
    await until(() => u.page.evaluate(() => navigator.serviceWorker.controller?.scriptURL), 'the page to be controlled');
    await u.page.reload();
    assert.equal(await u.page.evaluate(() => navigator.serviceWorker.controller?.scriptURL), `${base}/sw.js`);
    await u.register();
    // The app and its socket work as before under the worker.
    assert.equal(await u.tid('connection').getAttribute('data-state'), 'online');
    await noCSPViolations(u);
    assert.deepEqual(u.errors, []);
  });

  it('does not subscribe while notifications are not allowed', async () => {
    const u = await person('quiet');
    await u.register();
    await sleep(1000);
    assert.notEqual(await u.page.evaluate(() => Notification.permission), 'granted');
    assert.deepEqual(calls(u, 'POST', '/api/device-tokens'), []);
    assert.deepEqual(calls(u, 'GET', '/api/push/'), [], 'no key is fetched before permission');
    assert.equal((await pushCalls(u)).subscribe.length, 0);
    await noCSPViolations(u);
    assert.deepEqual(u.errors, []);
  });

  it('stays quiet when the server has Web Push off (404 for the key)', async (t) => {
    // A second server with Web Push off; a binary without that flag gets
    // the 404 from a route instead.
    let off = null;
    try {
      off = await startServer(['--web-push=false']);
    } catch (e) {
      t.diagnostic(`no server with --web-push=false (${e.message.split(';')[0]}): a route answers 404`);
    }
    try {
      const u = await person('off', { allow: true, key: off ? null : '404', base: off?.url });
      await u.register();
      await until(() => calls(u, 'GET', '/api/push/vapid-public-key').length, 'the key to be asked for');
      await sleep(500);
      assert.equal(calls(u, 'GET', '/api/push/vapid-public-key')[0].status, 404);
      assert.equal((await pushCalls(u)).subscribe.length, 0);
      assert.deepEqual(calls(u, 'POST', '/api/device-tokens'), []);
      // Nothing shown: no toast, no alert, the app online.
      assert.equal(await u.page.locator('.toast:not([hidden])').count(), 0);
      assert.equal(await u.page.getByRole('alert').count(), 0);
      assert.equal(await u.tid('connection').getAttribute('data-state'), 'online');
      await noCSPViolations(u);
      assert.deepEqual(u.errors, []);
      await u.close();
    } finally {
      await off?.stop();
    }
  });

  it('subscribes, registers the web device token, and deletes it at sign-out', async () => {
    const u = await person('sub', { allow: true });
    await u.register();
    const post = await until(() => calls(u, 'POST', '/api/device-tokens')[0], 'the device token to be registered');
    assert.equal(post.status, 201);
    assert.equal(post.body.platform, 'web');
    assert.equal(typeof post.body.token, 'string');
    const token = post.body.token;
    const sub = JSON.parse(token);
    assert.match(sub.endpoint, /^https:\/\/push\.example\.com\/send\//);
    assert.ok(sub.keys.p256dh && sub.keys.auth);
    const pc = await pushCalls(u);
    assert.deepEqual(pc.subscribe, [{ userVisibleOnly: true, key: vapidKey }]);
    assert.equal(calls(u, 'GET', '/api/push/vapid-public-key')[0].status, 200);

    // The server has it: registering it again is "already yours".
    const access = await login(u.name, u.password);
    assert.equal((await rest('POST', '/api/device-tokens', access, { platform: 'web', token })).status, 200);

    // A reload (every start) registers the same subscription again,
    // without subscribing anew.
    await u.page.reload();
    await u.connected();
    await until(() => calls(u, 'POST', '/api/device-tokens').length === 2, 'the token to be registered again');
    assert.equal(calls(u, 'POST', '/api/device-tokens')[1].status, 200);
    assert.equal(calls(u, 'POST', '/api/device-tokens')[1].body.token, token);
    assert.equal((await pushCalls(u)).subscribe.length, 0);

    // Sign-out: the token is deleted while the login still works, then
    // the subscription is dropped and the login ended.
    await u.page.getByRole('button', { name: 'Sign out' }).click();
    await u.tid('username').waitFor({ state: 'visible' });
    await until(() => calls(u, 'POST', '/api/auth/logout').length, 'the logout');
    const del = calls(u, 'DELETE', '/api/device-tokens/');
    assert.equal(del.length, 1);
    assert.equal(del[0].status, 204);
    assert.equal(decodeURIComponent(del[0].path.slice('/api/device-tokens/'.length)), token);
    assert.ok(u.log.indexOf(del[0]) < u.log.indexOf(calls(u, 'POST', '/api/auth/logout')[0]), 'DELETE before logout');
    assert.equal((await pushCalls(u)).unsubscribe, 1);
    assert.equal(await u.page.evaluate(() => localStorage.getItem('__fakepush')), null);
    assert.equal(await u.page.evaluate(() => localStorage.getItem('parley.push')), null);

    // The server forgot it: registering it now is new (201).
    assert.equal((await rest('POST', '/api/device-tokens', access, { platform: 'web', token })).status, 201);
    assert.equal((await rest('DELETE', `/api/device-tokens/${encodeURIComponent(token)}`, access)).status, 204);

    // Signing in again subscribes anew.
    await u.login();
    await until(() => calls(u, 'POST', '/api/device-tokens').length === 3, 'a new registration after sign-in');
    const again = calls(u, 'POST', '/api/device-tokens')[2];
    assert.equal(again.status, 201);
    assert.notEqual(JSON.parse(again.body.token).endpoint, sub.endpoint);
    await noCSPViolations(u);
    assert.deepEqual(u.errors, []);
  });

  it('subscribes when the user allows notifications from the bell', async (t) => {
    const u = await person('bell');
    await u.register();
    const bell = u.page.getByRole('button', { name: 'Enable notifications' });
    await sleep(500);
    assert.deepEqual(calls(u, 'POST', '/api/device-tokens'), []);
    if (await u.page.evaluate(() => Notification.permission) === 'default') {
      await bell.waitFor({ state: 'visible' });
    }
    // The user answers "Allow" to the browser's prompt.
    await u.context.grantPermissions(['notifications'], { origin: base });
    if (await bell.isVisible()) await bell.click();
    else t.diagnostic('no bell (permission was not "default"): registered on the permission change alone');
    const post = await until(() => calls(u, 'POST', '/api/device-tokens')[0], 'the device token to be registered');
    assert.equal(post.status, 201);
    assert.equal(post.body.platform, 'web');
    await until(async () => !(await bell.isVisible()), 'the bell to go');
    assert.deepEqual(u.errors, []);
  });

  it('replaces the token when the subscription changes', async () => {
    const u = await person('change', { allow: true });
    await u.register();
    const first = await until(() => calls(u, 'POST', '/api/device-tokens')[0], 'the first registration');
    const oldToken = first.body.token;

    // The push service gave the browser a new subscription and the worker
    // got pushsubscriptionchange: it tells the open pages.
    await u.page.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('__fakepush'));
      s.endpoint = `${s.endpoint}-renewed`;
      localStorage.setItem('__fakepush', JSON.stringify(s));
    });
    const sw = await worker(u);
    await sw.evaluate(() => self.dispatchEvent(new ExtendableEvent('pushsubscriptionchange')));
    const second = await until(() => calls(u, 'POST', '/api/device-tokens')[1], 'the new subscription to be registered');
    assert.equal(second.status, 201);
    assert.match(JSON.parse(second.body.token).endpoint, /-renewed$/);
    const del = calls(u, 'DELETE', '/api/device-tokens/');
    assert.equal(del.length, 1);
    assert.equal(decodeURIComponent(del[0].path.slice('/api/device-tokens/'.length)), oldToken);
    assert.ok(u.log.indexOf(del[0]) < u.log.indexOf(second), 'the old token goes first');

    // A change while no page was open is found at the next start.
    await u.page.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('__fakepush'));
      s.endpoint = `${s.endpoint}-again`;
      localStorage.setItem('__fakepush', JSON.stringify(s));
    });
    await u.page.reload();
    await u.connected();
    const third = await until(() => calls(u, 'POST', '/api/device-tokens')[2], 'the changed subscription at start');
    assert.equal(third.status, 201);
    assert.match(JSON.parse(third.body.token).endpoint, /-renewed-again$/);
    assert.equal(calls(u, 'DELETE', '/api/device-tokens/').length, 2);

    const access = await login(u.name, u.password);
    assert.equal((await rest('POST', '/api/device-tokens', access, { platform: 'web', token: oldToken })).status, 201, 'the old token was deleted');
    await rest('DELETE', `/api/device-tokens/${encodeURIComponent(oldToken)}`, access);
    assert.equal((await rest('POST', '/api/device-tokens', access, { platform: 'web', token: third.body.token })).status, 200);
    assert.deepEqual(u.errors, []);
  });

  it('shows a push as a notification unless the app is in front; a click opens the chat', async () => {
    const a = await person('alice', { key: null });
    const b = await person('bob', { allow: true });
    await a.register();
    await b.register();
    const cid = await a.startChat(b);
    await b.conversation(cid).waitFor({ state: 'visible' });
    await until(() => calls(b, 'POST', '/api/device-tokens')[0], 'b registered for push');

    const cdp = await b.context.newCDPSession(b.page);
    const regs = new Map();
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      for (const r of e.registrations) regs.set(r.scopeURL, r);
    });
    await cdp.send('ServiceWorker.enable');
    const reg = await until(() => { const r = regs.get(`${base}/`); return r && !r.isDeleted && r; }, 'the registration over CDP');
    const deliver = (payload) => cdp.send('ServiceWorker.deliverPushMessage', {
      origin: base, registrationId: reg.registrationId, data: JSON.stringify(payload),
    });
    const shown = (page) => page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
      .map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })));
    const sw = await worker(b);
    const aName = a.name;

    // b has the app in front (focused and visible, as the worker sees it):
    // the page shows the message live, so the push shows nothing.
    await b.page.bringToFront();
    const wins = await sw.evaluate(async () => (await clients.matchAll({ type: 'window', includeUncontrolled: true }))
      .map((c) => ({ url: c.url, focused: c.focused, visibilityState: c.visibilityState })));
    assert.deepEqual(wins, [{ url: `${base}/`, focused: true, visibilityState: 'visible' }]);
    await deliver({
      title: aName, body: 'shown live', badge: 1, conversation_id: 'not-shown', sender_id: 'x', message_id: 'm0', seq: 1, tag: 'not-shown',
    });
    await sleep(1000);
    assert.deepEqual(await shown(b.page), []);

    // No app window: the push shows, a group's sender in the body, and a
    // second one of the same conversation replaces the first.
    await b.page.goto('about:blank');
    const payload = {
      title: 'Trip planning', subtitle: aName, body: 'hello', badge: 2,
      conversation_id: cid, sender_id: 'u1', message_id: 'm1', seq: 1, tag: cid,
    };
    await deliver(payload);
    await sleep(300);
    await deliver({ ...payload, body: 'hello again', badge: 3, message_id: 'm2', seq: 2 });
    await sleep(300);
    await deliver({
      title: aName, subtitle: '', body: 'direct', badge: 4,
      conversation_id: 'other-conversation', sender_id: 'u1', message_id: 'm3', seq: 1, tag: 'other-conversation',
    });
    await b.page.goto(base);
    await b.connected();
    const notes = await until(async () => {
      const n = await shown(b.page);
      return n.length === 2 && n;
    }, 'two notifications');
    notes.sort((x, y) => x.tag.localeCompare(y.tag));
    assert.deepEqual(notes, [
      { title: 'Trip planning', body: `${aName}: hello again`, tag: cid, data: cid },
      { title: aName, body: 'direct', tag: 'other-conversation', data: 'other-conversation' },
    ].sort((x, y) => x.tag.localeCompare(y.tag)));
    assert.equal(await b.page.evaluate(() => location.hash), '');

    // A click on the conversation's notification closes it and opens the
    // chat in the app's window.
    const sw2 = await worker(b);
    await sw2.evaluate(async (tag) => {
      const [n] = await self.registration.getNotifications({ tag });
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification: n }));
    }, cid);
    await until(async () => (await b.conversation(cid).getAttribute('aria-current')) === 'true', 'the clicked chat to open');
    assert.equal(await b.page.evaluate(() => location.hash), `#/c/${cid}`);
    await b.tid('composer').waitFor({ state: 'visible' });
    await until(async () => (await shown(b.page)).every((n) => n.tag !== cid), 'the notification to close');

    await noCSPViolations(b);
    assert.deepEqual(b.errors, []);
    assert.deepEqual(a.errors, []);
  });

  it('handles a badge push: sets the badge, shows nothing, and at 0 closes the notifications', async () => {
    const b = await person('badge', { allow: true });
    await b.register();
    const cdp = await b.context.newCDPSession(b.page);
    const regs = new Map();
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      for (const r of e.registrations) regs.set(r.scopeURL, r);
    });
    await cdp.send('ServiceWorker.enable');
    const reg = await until(() => { const r = regs.get(`${base}/`); return r && !r.isDeleted && r; }, 'the registration over CDP');
    const sw = await worker(b);
    // Record the Badging API's calls in the worker (headless Chromium has
    // no app icon to put a badge on).
    await sw.evaluate(() => {
      self.__badges = [];
      Object.defineProperty(self.navigator, 'setAppBadge', { configurable: true, value: async (n) => { self.__badges.push(n); } });
      Object.defineProperty(self.navigator, 'clearAppBadge', { configurable: true, value: async () => { self.__badges.push(0); } });
    });
    const deliver = async (payload) => {
      const before = await sw.evaluate(() => self.__badges.length);
      await cdp.send('ServiceWorker.deliverPushMessage', { origin: base, registrationId: reg.registrationId, data: JSON.stringify(payload) });
      if (Number.isInteger(payload.badge)) {
        await until(() => sw.evaluate((n) => self.__badges.length > n, before), 'the push to be handled');
      } else {
        await sleep(500);
      }
    };
    const shown = () => sw.evaluate(async () => (await self.registration.getNotifications())
      .map((n) => ({ title: n.title, body: n.body, tag: n.tag })).sort((x, y) => x.tag.localeCompare(y.tag)));

    // No app window in front: message pushes show, typed or not (an
    // older server's payload has no type).
    await b.page.goto('about:blank');
    const message = (cid, body, badge, type) => ({
      ...(type ? { type } : {}),
      title: 'Carol', body, badge, conversation_id: cid, sender_id: 'u1', message_id: `m-${cid}`, seq: 1, tag: cid,
    });
    await deliver(message('conv-a', 'typed', 1, 'message'));
    await deliver(message('conv-b', 'untyped', 2));
    const two = await until(async () => { const n = await shown(); return n.length === 2 && n; }, 'two notifications');
    assert.deepEqual(two, [
      { title: 'Carol', body: 'typed', tag: 'conv-a' },
      { title: 'Carol', body: 'untyped', tag: 'conv-b' },
    ]);

    // Read on another device, the count went down to 1: the badge says so
    // and nothing new shows.
    await deliver({ type: 'badge', badge: 1 });
    assert.deepEqual(await shown(), two);
    // A type this worker does not know shows nothing either.
    await deliver({ type: 'something-new', title: 'x', body: 'y', conversation_id: 'conv-c', tag: 'conv-c' });
    assert.deepEqual(await shown(), two);
    // All read: the badge is cleared and the notifications go.
    await deliver({ type: 'badge', badge: 0 });
    await until(async () => (await shown()).length === 0, 'the notifications to close');
    assert.deepEqual(await sw.evaluate(() => self.__badges), [1, 2, 1, 0]);

    // A badge push while the app is in front shows nothing either.
    await b.page.goto(base);
    await b.connected();
    await b.page.bringToFront();
    await deliver({ type: 'badge', badge: 0 });
    assert.deepEqual(await shown(), []);
    await noCSPViolations(b);
    assert.deepEqual(b.errors, []);
  });
});
