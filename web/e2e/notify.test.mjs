// What the browser client does so that notifications are never wrong
// (docs/protocol.md, section 18): it tells the server when its page is
// hidden (`app.state`), each tab confirms what it received with its own
// `delivered` receipts, and muted conversations are marked and left out
// of the unread count.
//
//   cd web/e2e && npm ci && node --test notify.test.mjs
//
// Headless Chromium never hides a page: switching tabs, minimizing the
// window or freezing the page over the DevTools protocol all leave
// document.visibilityState at 'visible'. So the tests make the page hidden
// by replacing visibilityState and dispatching visibilitychange, and check
// the real frames on the real socket: what the app sends and the server's
// `ok` to it (page.on('websocket')), and, where the server holds pushes per
// device, its metrics: a visible tab's push held and cancelled by the
// tab's receipt, a hidden tab's sent at once.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH, randomBytes, randomUUID } from 'node:crypto';
import { startServer, launchBrowser, User, uniqueName, until, sleep } from './harness.mjs';

/** visibility lets a test hide and show the page (window.__setVisibility). */
function visibility() {
  let state = 'visible';
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => state === 'hidden' });
  window.__setVisibility = (s) => {
    if (s === state) return;
    state = s;
    document.dispatchEvent(new Event('visibilitychange'));
  };
}

/**
 * frames records every WebSocket of a page: sockets[i] is a list of
 * {dir: 'out'|'in', f: the parsed frame, t: when}.
 */
function frames(page) {
  const sockets = [];
  page.on('websocket', (ws) => {
    const log = [];
    sockets.push(log);
    const rec = (dir) => (ev) => {
      try {
        log.push({ dir, f: JSON.parse(ev.payload), t: Date.now() });
      } catch { /* not JSON */ }
    };
    ws.on('framesent', rec('out'));
    ws.on('framereceived', rec('in'));
  });
  return sockets;
}

/**
 * fakeSubscription is a browser's Web Push subscription as JSON (a valid
 * P-256 key), for an endpoint that is never reached.
 */
function fakeSubscription() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return JSON.stringify({
    endpoint: `https://push.example.com/send/${randomUUID()}`,
    expirationTime: null,
    keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
  });
}

/** reply finds the answer to the frame with that id. */
function reply(log, id) {
  return log.find((x) => x.dir === 'in' && x.f.id === id)?.f;
}

describe('Notifications never wrong, in the browser', { timeout: 300_000 }, () => {
  let server;
  let browser;
  let base;
  const users = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    base = server.url;
  });

  after(async () => {
    for (const u of users) await u.close().catch(() => {});
    await browser?.close();
    await server?.stop();
  });

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

  /** login signs in over REST: a login of its own, another device. */
  async function login(name, password = 'correct horse battery') {
    const r = await rest('POST', '/api/auth/login', null, { username: name, password });
    assert.equal(r.status, 200, `login ${name}: ${r.status}`);
    return r.json.access_token;
  }

  async function sendREST(token, cid, text) {
    const r = await rest('POST', `/api/conversations/${cid}/messages`, token, { client_message_id: randomUUID(), kind: 'text', text });
    assert.equal(r.status, 201, `send: ${r.status}`);
    return r.json;
  }

  /**
   * person opens a browser context; prepare(context) runs before the page
   * loads. name: an existing user's, to sign in as that user again (a
   * second device).
   */
  async function person(prefix, prepare, name) {
    const u = new User(browser, base, name || uniqueName(prefix));
    await u.open(prepare);
    users.push(u);
    return u;
  }

  it('tells the server when the page is hidden and shown again (app.state)', async () => {
    const u = await person('vis', (context) => context.addInitScript(visibility));
    const sockets = frames(u.page);
    await u.register();
    assert.equal(sockets.length, 1);
    const log = sockets[0];
    await sleep(500);
    const appStates = () => log.filter((x) => x.dir === 'out' && x.f.type === 'app.state');
    // A new connection is in the foreground: a visible page says nothing.
    assert.deepEqual(appStates(), []);

    await u.page.evaluate(() => window.__setVisibility('hidden'));
    const bg = await until(() => appStates()[0], 'app.state background');
    assert.deepEqual(bg.f.payload, { state: 'background' });
    assert.equal(typeof bg.f.id, 'string');
    assert.deepEqual(await until(() => reply(log, bg.f.id), 'the server to answer'), { type: 'ok', id: bg.f.id });

    await u.page.evaluate(() => window.__setVisibility('visible'));
    const fg = await until(() => appStates()[1], 'app.state foreground');
    assert.deepEqual(fg.f.payload, { state: 'foreground' });
    assert.equal((await until(() => reply(log, fg.f.id), 'the server to answer')).type, 'ok');
    assert.equal(appStates().length, 2);

    // A connection opened while the page is hidden says `background`
    // right after its hello, before anything else.
    await u.page.evaluate(() => window.__setVisibility('hidden'));
    await until(() => appStates().length === 3, 'app.state background again');
    await u.context.setOffline(true);
    await until(async () => (await u.tid('connection').getAttribute('data-state')) === 'offline', 'offline');
    await u.context.setOffline(false);
    await until(() => sockets.length === 2, 'a new socket');
    await u.connected();
    const log2 = sockets[1];
    const first = await until(() => {
      const i = log2.findIndex((x) => x.dir === 'in' && x.f.type === 'hello');
      const out = log2.slice(i + 1).filter((x) => x.dir === 'out');
      return i >= 0 && out.length && out[0];
    }, 'a frame after hello');
    assert.equal(first.f.type, 'app.state');
    assert.deepEqual(first.f.payload, { state: 'background' });
    assert.equal((await until(() => reply(log2, first.f.id), 'the server to answer')).type, 'ok');
    assert.equal(log2.filter((x) => x.dir === 'out')[0].f.type, 'auth');

    await u.page.evaluate(() => window.__setVisibility('visible'));
    const fg2 = await until(() => log2.filter((x) => x.dir === 'out' && x.f.type === 'app.state')[1], 'foreground on the new socket');
    assert.deepEqual(fg2.f.payload, { state: 'foreground' });
    assert.equal((await until(() => reply(log2, fg2.f.id), 'the server to answer')).type, 'ok');
    assert.equal(log.filter((x) => x.dir === 'out' && x.f.type === 'app.state').length, 3, 'nothing more on the old socket');
    assert.deepEqual(u.errors, []);
  });

  it("the server holds a visible tab's push until the tab confirms, and not a hidden tab's", async (t) => {
    // The server's own account of it, from /metrics: parley_push_held_total
    // (held for a device in the foreground), parley_push_skipped_total (the
    // device confirmed) and parley_push_unconfirmed_total (sent anyway).
    const metrics = async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const get = (name) => Number(new RegExp(`^${name}\\{platform="web"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      return {
        held: get('parley_push_held_total'),
        skipped: get('parley_push_skipped_total'),
        unconfirmed: get('parley_push_unconfirmed_total'),
        // Sent, or tried: the push service here is never reached.
        tried: get('parley_push_sent_total') + get('parley_push_retried_total') + get('parley_push_failed_total'),
      };
    };
    const a = await person('hal');
    const b = await person('ida', (context) => context.addInitScript(visibility));
    const sockets = frames(b.page);
    await a.register();
    await b.register();
    // A server that tells devices apart names the connection's in hello.
    const hello = sockets[0].find((x) => x.dir === 'in' && x.f.type === 'hello');
    if (!hello?.f.payload?.device_id) {
      t.skip('this server does not hold pushes per device yet (no device_id in hello)');
      return;
    }
    const cid = await a.startChat(b);
    await b.conversation(cid).waitFor({ state: 'visible' });
    // b's browser has a Web Push subscription, registered by this login
    // (this device); its push service is never reached.
    const bToken = (await b.session()).access_token;
    assert.equal((await rest('POST', '/api/device-tokens', bToken, { platform: 'web', token: fakeSubscription() })).status, 201);
    const aToken = await login(a.name);
    const m0 = await metrics();
    const delta = async () => {
      const m = await metrics();
      return { held: m.held - m0.held, skipped: m.skipped - m0.skipped, unconfirmed: m.unconfirmed - m0.unconfirmed, tried: m.tried - m0.tried };
    };

    // Visible: the push is held, and the tab's delivered receipt cancels it.
    const m1 = await sendREST(aToken, cid, 'seen live');
    await until(async () => (await delta()).skipped === 1, 'the held push to be skipped');
    assert.ok(sockets[0].some((x) => x.dir === 'out' && x.f.type === 'receipt' && x.f.payload.kind === 'delivered' && x.f.payload.seq === m1.seq));
    assert.deepEqual(await delta(), { held: 1, skipped: 1, unconfirmed: 0, tried: 0 });

    // Hidden: app.state background, and the push goes out at once.
    await b.page.evaluate(() => window.__setVisibility('hidden'));
    await until(() => sockets[0].some((x) => x.dir === 'in' && x.f.type === 'ok'
      && sockets[0].some((y) => y.dir === 'out' && y.f.type === 'app.state' && y.f.id === x.f.id)), 'background to be answered');
    await sendREST(aToken, cid, 'pushed');
    await until(async () => (await delta()).tried >= 1, 'the push to be sent at once');
    const hidden = await delta();
    assert.deepEqual([hidden.held, hidden.skipped, hidden.unconfirmed], [1, 1, 0], `not held while hidden: ${JSON.stringify(hidden)}`);

    // Visible again: held and confirmed again; nothing was sent unconfirmed
    // once the confirmation delay (5 s) is over. (A retry of the hidden
    // tab's push, which never reaches its push service here, may find the
    // tab in front and confirmed by then: skipped too.)
    await b.page.evaluate(() => window.__setVisibility('visible'));
    await until(() => sockets[0].filter((x) => x.dir === 'out' && x.f.type === 'app.state').length === 2, 'foreground');
    await sleep(300);
    await sendREST(aToken, cid, 'seen live again');
    await until(async () => (await delta()).skipped === 2, 'the second held push to be skipped');
    await sleep(5500);
    const end = await delta();
    assert.deepEqual([end.held, end.unconfirmed], [2, 0], JSON.stringify(end));
    assert.ok(end.skipped >= 2, JSON.stringify(end));
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it('confirms what this tab received with its own delivered receipts, never past a gap', async () => {
    const a = await person('ann');
    const b1 = await person('ben');
    await a.register();
    await b1.register();
    const cid = await a.startChat(b1);
    await b1.conversation(cid).waitFor({ state: 'visible' });

    // b's second device: another context, its own login. Its socket goes
    // through a route that records the frames and can drop one.
    const out = [];
    const inbound = [];
    let drop = () => false;
    const b2 = await person('ben', async (context) => {
      await context.routeWebSocket(/\/ws$/, (ws) => {
        const srv = ws.connectToServer();
        ws.onMessage((m) => {
          try { out.push({ f: JSON.parse(m), t: Date.now() }); } catch { /* not JSON */ }
          srv.send(m);
        });
        srv.onMessage((m) => {
          let f = null;
          try { f = JSON.parse(m); } catch { /* not JSON */ }
          if (f && drop(f)) return;
          if (f) inbound.push({ f, t: Date.now() });
          ws.send(m);
        });
      });
    }, b1.name);
    b2.password = 'correct horse battery';
    const historyCalls = [];
    b2.page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname === `/api/conversations/${cid}/messages`) historyCalls.push({ query: url.search, t: Date.now() });
    });
    await b2.login();
    await b2.conversation(cid).waitFor({ state: 'visible' });
    const delivered = () => out.filter((x) => x.f.type === 'receipt' && x.f.payload?.kind === 'delivered' && x.f.payload.conversation_id === cid);
    const seqs = () => delivered().map((x) => x.f.payload.seq);
    const aToken = await login(a.name);

    // 1. While b2 is offline, b1 receives the message and confirms it: the
    // user's delivered watermark is there. b2 still confirms it when the
    // sync brings it, for the server counts each device's own.
    await b2.context.setOffline(true);
    await until(async () => (await b2.tid('connection').getAttribute('data-state')) === 'offline', 'b2 offline');
    const m1 = await sendREST(aToken, cid, 'one');
    const bId = (await b1.session()).user.id;
    await until(async () => (await rest('GET', `/api/conversations/${cid}`, aToken)).json
      .members.find((m) => m.user_id === bId).delivered_seq >= m1.seq, "b's delivered watermark to reach the message (b1)");
    await b2.context.setOffline(false);
    await b2.connected();
    await until(() => seqs().includes(m1.seq), 'b2 to confirm the message it got from the sync');
    assert.deepEqual(seqs(), [m1.seq]);
    const ok1 = await until(() => inbound.find((x) => x.f.id === delivered()[0].f.id), 'the answer');
    assert.equal(ok1.f.type, 'ok');

    // 2. Live: each message is confirmed promptly (batched within 250 ms).
    const m2 = await sendREST(aToken, cid, 'two');
    const got2 = await until(() => inbound.find((x) => x.f.type === 'message.new' && x.f.payload.message.id === m2.id), 'b2 to get two');
    const d2 = await until(() => delivered().find((x) => x.f.payload.seq === m2.seq), 'b2 to confirm two');
    assert.ok(d2.t - got2.t < 1500, `confirmed ${d2.t - got2.t} ms after it arrived`);

    // 3. A lost frame: b2 gets four but not three. It confirms nothing past
    // two until it fetched three, then four.
    drop = (f) => f.type === 'message.new' && f.payload?.message?.seq === m2.seq + 1;
    const m3 = await sendREST(aToken, cid, 'three');
    await sleep(300);
    drop = () => false;
    const m4 = await sendREST(aToken, cid, 'four');
    await until(() => inbound.find((x) => x.f.type === 'message.new' && x.f.payload.message.id === m4.id), 'b2 to get four');
    assert.ok(!inbound.some((x) => x.f.type === 'message.new' && x.f.payload.message.id === m3.id), 'three was dropped');
    const d4 = await until(() => delivered().find((x) => x.f.payload.seq === m4.seq), 'b2 to confirm four');
    assert.ok(!seqs().includes(m3.seq) || delivered().find((x) => x.f.payload.seq === m3.seq).t >= historyCalls[0]?.t, 'three only once fetched');
    const fetch = historyCalls.find((x) => new URLSearchParams(x.query).get('after_seq') === String(m2.seq));
    assert.ok(fetch, `b2 fetched what follows two (${JSON.stringify(historyCalls)})`);
    assert.ok(fetch.t <= d4.t, 'four was confirmed after the gap was filled');
    assert.ok(seqs().every((s, i, all) => i === 0 || s > all[i - 1]), `receipts only go up: ${seqs()}`);
    // b2 shows four as the conversation's last message.
    await until(async () => /four/.test(await b2.conversation(cid).textContent()), 'four in the list');
    assert.deepEqual([...a.errors, ...b1.errors, ...b2.errors], []);
  });

  it('marks a muted conversation and leaves it out of the unread count', async (t) => {
    // Until the server fills muted_until (it may not yet: the field is
    // null even for a muted conversation), b's context plays its part:
    // once `mutes` is set, muted_until comes from it in the REST answers
    // and the frames, and the test sends the conversation.updated that
    // the server sends to the user's connections at a mute.
    let mutes = null;
    let pageSocket = null;
    const patch = (conv) => {
      if (mutes && conv?.id) conv.muted_until = mutes.get(conv.id) ?? null;
    };
    const a = await person('amy');
    const c = await person('cal');
    const b = await person('bea', async (context) => {
      await context.routeWebSocket(/\/ws$/, (ws) => {
        pageSocket = ws;
        const srv = ws.connectToServer();
        ws.onMessage((m) => srv.send(m));
        srv.onMessage((m) => {
          let f = null;
          try { f = JSON.parse(m); } catch { /* not JSON */ }
          if (!mutes || !f) return ws.send(m);
          if (f.type === 'sync.result') for (const e of f.payload?.conversations || []) patch(e.conversation);
          if (f.type === 'conversation.updated') patch(f.payload?.conversation);
          return ws.send(JSON.stringify(f));
        });
      });
      await context.route(/\/api\/conversations(\/[0-9a-f-]+)?$/, async (route) => {
        if (!mutes || route.request().method() !== 'GET') return route.fallback();
        const res = await route.fetch();
        const body = await res.json();
        if (Array.isArray(body?.conversations)) body.conversations.forEach(patch);
        else patch(body);
        return route.fulfill({ response: res, json: body });
      });
    });
    await a.register();
    await c.register();
    await b.register();
    const muted = await a.startChat(b);
    const loud = await c.startChat(b);
    await b.conversation(muted).waitFor({ state: 'visible' });
    await b.conversation(loud).waitFor({ state: 'visible' });
    await a.send('first');
    await a.send('second');
    await c.send('hello');
    const unread = (cid) => b.conversation(cid).getByTestId('unread').textContent();
    await until(async () => (await unread(muted).catch(() => '')) === '2', 'two unread from a');
    await until(async () => (await unread(loud).catch(() => '')) === '1', 'one unread from c');
    assert.equal(await b.page.title(), '(3) Parley');
    assert.equal(await b.conversation(muted).getByTestId('muted').count(), 0);

    // mute changes the mute on b's other device (a login over REST).
    const bToken = await login(b.name);
    let serverFills = null;
    async function mute(until) {
      const r = until === false
        ? await rest('DELETE', `/api/conversations/${muted}/mute`, bToken)
        : await rest('PUT', `/api/conversations/${muted}/mute`, bToken, { until });
      assert.equal(r.status, 204);
      const want = until === false ? null : until ?? '9999-12-31T23:59:59.999Z';
      const got = (await rest('GET', `/api/conversations/${muted}`, bToken)).json.muted_until;
      if (serverFills === null) {
        serverFills = got != null;
        t.diagnostic(serverFills
          ? 'the server fills muted_until and tells the connections'
          : 'the server does not fill muted_until yet: the test adds it to the answers and sends conversation.updated');
      }
      if (serverFills) {
        if (want === null) assert.equal(got, null);
        else assert.equal(Date.parse(got), Date.parse(want));
        return;
      }
      mutes ??= new Map();
      if (want === null) mutes.delete(muted);
      else mutes.set(muted, want);
      const conv = (await rest('GET', `/api/conversations/${muted}`, bToken)).json;
      patch(conv);
      pageSocket.send(JSON.stringify({ type: 'conversation.updated', payload: { conversation: conv } }));
    }

    // Muted for ever: the marker shows live, the unread messages still
    // show in the list but not in the total.
    await mute(null);
    await b.conversation(muted).getByTestId('muted').waitFor({ state: 'visible' });
    assert.equal(await b.conversation(loud).getByTestId('muted').count(), 0);
    assert.equal(await unread(muted), '2');
    await until(async () => (await b.page.title()) === '(1) Parley', 'the title to count only the loud chat');
    await b.screenshot('20-muted-conversation');

    // More messages in the muted chat do not count either.
    await a.send('third');
    await until(async () => (await unread(muted)) === '3', 'three unread from a');
    assert.equal(await b.page.title(), '(1) Parley');

    // After a reload too (the list, then the sync).
    await b.page.reload();
    await b.connected();
    await b.conversation(muted).getByTestId('muted').waitFor({ state: 'visible' });
    await sleep(500);
    assert.equal(await b.conversation(muted).getByTestId('muted').count(), 1);
    assert.equal(await b.page.title(), '(1) Parley');

    // Unmuted on the other device.
    await mute(false);
    await until(async () => (await b.conversation(muted).getByTestId('muted').count()) === 0, 'the marker to go');
    await until(async () => (await b.page.title()) === '(4) Parley', 'the title to count both');

    // A mute until a time ends by itself, without a reload.
    await mute(new Date(Date.now() + 4000).toISOString());
    await b.conversation(muted).getByTestId('muted').waitFor({ state: 'visible' });
    assert.equal(await b.page.title(), '(1) Parley');
    await until(async () => (await b.conversation(muted).getByTestId('muted').count()) === 0, 'the mute to end', 10_000);
    assert.equal(await b.page.title(), '(4) Parley');
    assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
  });

  it('mutes and unmutes from the chat header', async () => {
    const a = await person('al');
    const b = await person('bo');
    await a.register();
    await b.register();
    const cid = await a.startChat(b);
    const calls = [];
    a.page.on('response', (res) => {
      const url = new URL(res.url());
      if (url.pathname === `/api/conversations/${cid}/mute`) {
        let body = null;
        try { body = res.request().postDataJSON(); } catch { /* none */ }
        calls.push({ method: res.request().method(), status: res.status(), body });
      }
    });
    const mute = a.tid('mute');
    assert.equal(await mute.getAttribute('aria-pressed'), 'false');
    assert.equal(await mute.getAttribute('aria-label'), 'Mute notifications');
    await mute.click();
    await a.page.getByRole('button', { name: 'For 8 hours' }).click();
    await until(() => calls.length === 1, 'the mute call');
    assert.equal(calls[0].method, 'PUT');
    assert.equal(calls[0].status, 204);
    const until8 = Date.parse(calls[0].body.until);
    assert.ok(Math.abs(until8 - (Date.now() + 8 * 3600_000)) < 60_000, `until ${calls[0].body.until}`);
    await a.conversation(cid).getByTestId('muted').waitFor({ state: 'visible' });
    assert.equal(await mute.getAttribute('aria-pressed'), 'true');
    assert.match(await mute.getAttribute('aria-label'), /^Notifications muted until /);
    assert.equal(await a.page.locator('dialog').count(), 0, 'the dialog closed');

    // For ever, then unmuted.
    await mute.click();
    await a.page.getByRole('button', { name: 'Until I turn it back on' }).click();
    await until(() => calls.length === 2, 'the second mute call');
    assert.deepEqual([calls[1].method, calls[1].status, calls[1].body], ['PUT', 204, { until: null }]);
    await until(async () => (await mute.getAttribute('aria-label')) === 'Notifications muted', 'muted for ever');
    const bToken = await login(a.name);
    assert.deepEqual((await rest('GET', `/api/conversations/${cid}/mute`, bToken)).json, { muted: true, until: null });
    await mute.click();
    await a.page.getByRole('button', { name: 'Unmute' }).click();
    await until(() => calls.length === 3, 'the unmute call');
    assert.deepEqual([calls[2].method, calls[2].status], ['DELETE', 204]);
    await until(async () => (await a.conversation(cid).getByTestId('muted').count()) === 0, 'the marker to go');
    assert.equal(await mute.getAttribute('aria-pressed'), 'false');
    assert.deepEqual((await rest('GET', `/api/conversations/${cid}/mute`, bToken)).json, { muted: false, until: null });
    assert.deepEqual([...a.errors, ...b.errors], []);
  });
});
