// End-to-end tests of the browser client: the real server, Debian's
// Chromium, two or three people in separate browser contexts.
//
//   cd web/e2e && npm ci && npm test
//
// Screenshots of the main screens land in web/e2e/screenshots/.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, User, uniqueName, until, sleep, history } from './harness.mjs';

const SINGLE = ['composer', 'send', 'search-user', 'start-chat', 'connection', 'typing'];

describe('Parley in the browser', { timeout: 300_000 }, () => {
  let server;
  let browser;
  const users = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    for (const u of users) await u.close().catch(() => {});
    await browser?.close();
    await server?.stop();
  });

  async function person(prefix, contextOptions) {
    const u = await new User(browser, server.url, uniqueName(prefix), contextOptions).open();
    users.push(u);
    return u;
  }

  /** pair registers two people and opens a direct chat from a to b. */
  async function pair() {
    const a = await person('alice');
    const b = await person('bob');
    await a.register();
    await b.register();
    const cid = await a.startChat(b);
    await b.conversation(cid).waitFor({ state: 'visible' });
    return { a, b, cid };
  }

  async function atMostOneVisible(u, page = u.page) {
    for (const id of SINGLE) {
      const n = await u.visibleCount(id, page);
      assert.ok(n <= 1, `${n} visible elements carry data-testid=${id}`);
    }
  }

  it('serves the app with a strict CSP and keeps the API answers', async () => {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /object-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/i, 'no inline script');
    assert.doesNotMatch(html, /\sstyle=|\son[a-z]+=/i, 'no inline style or handler');

    const js = await fetch(`${server.url}/js/main.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type'), /^text\/javascript/);

    const missing = await fetch(`${server.url}/api/no-such-thing`);
    assert.equal(missing.status, 404);
    assert.match(missing.headers.get('content-type'), /^application\/problem\+json/);
    assert.equal((await missing.json()).code, 'not_found');
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    assert.equal((await fetch(`${server.url}/metrics`)).status, 200);
  });

  it('signs up, signs out and signs in again', async () => {
    const u = await person('carol');
    await u.screenshot('01-sign-in');
    const sockets = [];
    u.page.on('websocket', (ws) => {
      const s = { url: ws.url(), frames: [] };
      sockets.push(s);
      ws.on('framesent', (f) => s.frames.push(String(f.payload)));
    });
    await u.register();
    // Same origin, no token in the URL, and the first frame is auth.
    await until(() => sockets[0]?.frames.length, 'a frame on the socket');
    assert.equal(sockets[0].url, `${server.url.replace('http:', 'ws:')}/ws`);
    const first = JSON.parse(sockets[0].frames[0]);
    assert.equal(first.type, 'auth');
    assert.ok(first.payload.token);
    await u.page.getByRole('button', { name: 'Sign out' }).click();
    await u.tid('username').waitFor({ state: 'visible' });
    assert.equal(await u.tid('connection').count(), 0);
    await u.login();
    await atMostOneVisible(u);

    // A wrong password is refused with a message, and nothing is stored.
    const other = await person('dave');
    await other.tid('username').fill(u.name);
    await other.tid('password').fill('not the password');
    await other.tid('login').click();
    await until(async () => /wrong/i.test(await other.page.getByRole('alert').first().textContent()), 'an error message');
    assert.equal(await other.page.evaluate(() => localStorage.getItem('parley.session')), null);
    assert.deepEqual(u.errors, []);
  });

  it('two people chat live both ways, with typing indicator and read marks', async () => {
    const { a, b, cid } = await pair();

    // a writes first; b has not opened the chat, so it is unread for b.
    await a.send('Hello Bob!');
    const m1 = await a.waitForMessage('Hello Bob!');
    await a.waitForStatus(m1, ['sent', 'delivered']);
    assert.ok(Number(await m1.getAttribute('data-seq')) >= 1);
    const unread = b.conversation(cid).getByTestId('unread');
    await unread.waitFor({ state: 'visible' });
    assert.equal((await unread.textContent()).trim(), '1');
    await a.waitForStatus(m1, 'delivered');
    await b.screenshot('02-list-with-unread');

    // b opens it: the message is shown, the badge goes, a sees "read".
    await b.openConversation(cid);
    await b.waitForMessage('Hello Bob!');
    assert.equal(await b.status(b.page.getByTestId('message').first()), null, 'no data-status on others\' messages');
    await until(async () => (await b.conversation(cid).getByTestId('unread').count()) === 0, 'the unread badge to go');
    await a.waitForStatus(m1, 'read');

    // b types: a sees the indicator (b does not); sending stops it.
    assert.equal(await a.tid('typing').count(), 0);
    await b.tid('composer').pressSequentially('Hi Alice, how', { delay: 40 });
    await a.tid('typing').waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await a.tid('typing').textContent(), /typing/);
    assert.equal(await b.tid('typing').count(), 0);
    await atMostOneVisible(a);
    await a.screenshot('03-typing');
    await b.tid('composer').pressSequentially(' are you?', { delay: 20 });
    const typedAt = Date.now();
    await b.tid('send').click();
    await a.waitForMessage('Hi Alice, how are you?');
    await a.tid('typing').waitFor({ state: 'detached', timeout: 4000 });
    assert.ok(Date.now() - typedAt < 4500, 'the indicator went with "stopped", not by expiry');

    // a has the chat open and visible: b's message becomes read.
    const m2 = await b.waitForMessage('Hi Alice, how are you?');
    await b.waitForStatus(m2, 'read');

    // A few more, both ways, in order.
    for (let i = 1; i <= 3; i++) {
      await a.send(`ping ${i}`);
      await b.waitForMessage(`ping ${i}`);
      await b.send(`pong ${i}`);
      await a.waitForMessage(`pong ${i}`);
    }
    const aTexts = await a.messageTexts();
    assert.deepEqual(aTexts, await b.messageTexts());
    assert.deepEqual(aTexts, ['Hello Bob!', 'Hi Alice, how are you?', 'ping 1', 'pong 1', 'ping 2', 'pong 2', 'ping 3', 'pong 3']);
    const seqs = await a.page.getByTestId('message').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    await atMostOneVisible(a);
    await atMostOneVisible(b);
    assert.deepEqual(await a.page.locator('.messages .day').allTextContents(), ['Today']);
    await until(async () => (await a.page.locator('.chat-sub').textContent()) === 'online', 'b to show as online');
    await a.screenshot('04-chat-desktop');
    assert.deepEqual([...a.errors, ...b.errors], []);

    // b leaves: a sees when b was last online.
    await b.close();
    await until(async () => /^last seen/.test(await a.page.locator('.chat-sub').textContent()), 'b\'s last seen');
  });

  it('keeps messages written offline as pending and sends each once when back', async () => {
    const { a, b, cid } = await pair();
    await b.openConversation(cid);
    await a.send('before going offline');
    await b.waitForMessage('before going offline');

    await a.context.setOffline(true);
    await until(async () => (await a.tid('connection').getAttribute('data-state')) === 'offline', 'a to show offline');
    await a.send('written offline 1');
    await a.send('written offline 2');
    const p1 = await a.waitForMessage('written offline 1');
    const p2 = await a.waitForMessage('written offline 2');
    assert.equal(await p1.getAttribute('data-status'), 'pending');
    assert.equal(await p2.getAttribute('data-status'), 'pending');
    assert.equal(await p1.getAttribute('data-seq'), null, 'no seq before the server stored it');
    await a.screenshot('05-offline-pending');
    await sleep(1000);
    assert.ok(!(await b.messageTexts()).includes('written offline 1'), 'nothing leaks while offline');
    await b.send('while you were away');
    await b.waitForMessage('while you were away');
    await sleep(500);
    assert.ok(!(await a.messageTexts()).includes('while you were away'), 'a is really offline');

    await a.context.setOffline(false);
    await a.connected();
    await a.waitForStatus(p1, ['sent', 'delivered', 'read']);
    await a.waitForStatus(p2, ['sent', 'delivered', 'read']);
    await b.waitForMessage('written offline 1');
    await b.waitForMessage('written offline 2');
    await sleep(1000); // a duplicate, if any, would show up now
    // a synced what b wrote meanwhile; both show the same, in seq order.
    await a.waitForMessage('while you were away');
    const texts = await b.messageTexts();
    assert.deepEqual(texts, ['before going offline', 'while you were away', 'written offline 1', 'written offline 2']);
    assert.deepEqual(await a.messageTexts(), texts);

    const { access_token: token } = await b.session();
    const stored = (await history(server.url, token, cid)).map((m) => m.text);
    assert.deepEqual(stored, texts, 'stored once each, in order');
  });

  it('sends messages from the outbox after a reload, with the same id', async () => {
    const { a, b, cid } = await pair();
    await a.context.setOffline(true);
    await until(async () => (await a.tid('connection').getAttribute('data-state')) === 'offline', 'a to show offline');
    await a.send('survives a reload');
    const p = await a.waitForMessage('survives a reload');
    assert.equal(await p.getAttribute('data-status'), 'pending');
    // The outbox is in IndexedDB: close the tab, come back online, open a
    // new one. The session comes from localStorage, the message from the
    // outbox.
    await a.page.close();
    await a.context.setOffline(false);
    a.page = await a.newPage();
    await a.connected();
    await a.openConversation(cid);
    const m = await a.waitForMessage('survives a reload');
    await a.waitForStatus(m, ['sent', 'delivered', 'read']);

    await b.openConversation(cid);
    await b.waitForMessage('survives a reload');
    const { access_token: token } = await b.session();
    assert.deepEqual((await history(server.url, token, cid)).map((x) => x.text), ['survives a reload']);
  });

  it('resends with the same client_message_id when the ack was lost', async () => {
    const { a, b, cid } = await pair();
    // Swallow the server's acks on a's socket: the message is stored, but
    // a cannot know it and keeps it pending.
    let dropAcks = true;
    await a.page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        if (dropAcks && typeof m === 'string' && JSON.parse(m).type === 'message.ack') return;
        ws.send(m);
      });
    });
    await a.page.reload();
    await a.connected();
    await a.openConversation(cid);
    await a.send('acked once');
    const p = await a.waitForMessage('acked once');
    await b.openConversation(cid);
    await b.waitForMessage('acked once');
    assert.equal(await p.getAttribute('data-status'), 'pending');

    // Reload with the acks flowing again: the outbox resends, the server
    // acks the original, nothing is stored twice.
    dropAcks = false;
    await a.page.reload();
    await a.connected();
    await a.openConversation(cid);
    const m = await a.waitForMessage('acked once');
    await a.waitForStatus(m, ['sent', 'delivered', 'read']);
    assert.equal(await m.getAttribute('data-seq'), '1');
    await sleep(500);
    assert.deepEqual(await b.messageTexts(), ['acked once']);
    const { access_token: token } = await b.session();
    assert.deepEqual((await history(server.url, token, cid)).map((x) => x.text), ['acked once']);
  });

  it('shows markup in a message as text', async () => {
    const { a, b, cid } = await pair();
    await b.openConversation(cid);
    const evil = '<img src=x onerror=alert(1)>';
    const bold = '<b>not bold</b> & <script>alert(2)</script>';
    await a.send(evil);
    await a.send(bold);
    for (const u of [a, b]) {
      const m = await u.waitForMessage(evil);
      assert.equal(await m.locator('.text').textContent(), evil);
      assert.equal(await m.locator('img').count(), 0);
      const m2 = await u.waitForMessage(bold);
      assert.equal(await m2.locator('b, script').count(), 0);
      // The list preview is text too.
      assert.equal(await u.conversation(cid).locator('img, b, script').count(), 0);
    }
    await sleep(500);
    assert.deepEqual([...a.dialogs, ...b.dialogs], [], 'no script ran');
    await b.screenshot('06-markup-as-text');
  });

  it('keeps the session and the history across a reload and in a new tab', async () => {
    const { a, b, cid } = await pair();
    await a.send('one');
    await a.send('two');
    await a.waitForStatus(await a.waitForMessage('two'), ['sent', 'delivered', 'read']);

    await a.page.reload();
    await a.signedIn();
    // The open conversation is in the URL, so it reopens.
    await a.tid('composer').waitFor({ state: 'visible' });
    assert.equal(await a.conversation(cid).getAttribute('aria-current'), 'true');
    await until(async () => (await a.messageTexts()).join('|') === 'one|two', 'the history after reload');

    const tab = await a.newPage();
    await a.signedIn(tab);
    await a.conversation(cid, tab).click();
    await until(async () => (await a.messageTexts(tab)).join('|') === 'one|two', 'the history in a new tab');
    // Both tabs stay live.
    await b.openConversation(cid);
    await b.send('three');
    await a.waitForMessage('three');
    await a.waitForMessage('three', tab);
    await tab.close();

    // The list survives too, newest activity first.
    const c = await person('erin');
    await c.register();
    await c.startChat(a);
    await c.send('newer');
    await until(async () => (await a.page.getByTestId('conversation').first().getAttribute('data-conversation-id')) !== cid,
      'the newer conversation to move to the top');
    assert.deepEqual(a.errors, []);
  });

  it('groups: delivered and read once every other member got there', async () => {
    const a = await person('gina');
    const b = await person('hank');
    const c = await person('ivy');
    for (const u of [a, b, c]) await u.register();
    await a.page.getByRole('button', { name: 'New group' }).click();
    const dlg = a.page.getByRole('dialog');
    await dlg.getByLabel('Group name').fill('Trip planning');
    await dlg.getByLabel(/People/).fill(`${b.name}, ${c.name}`);
    await dlg.getByRole('button', { name: 'Create group' }).click();
    await a.tid('composer').waitFor({ state: 'visible' });
    const cid = await a.page.locator('[data-testid="conversation"][aria-current="true"]').getAttribute('data-conversation-id');
    await b.conversation(cid).waitFor();
    await c.conversation(cid).waitFor();

    await a.send('Who brings the map?');
    const m = await a.waitForMessage('Who brings the map?');
    await a.waitForStatus(m, 'delivered');
    await b.openConversation(cid);
    await b.waitForMessage('Who brings the map?');
    await sleep(700);
    assert.equal(await m.getAttribute('data-status'), 'delivered', 'one reader of two is not read');
    await c.openConversation(cid);
    await c.waitForMessage('Who brings the map?');
    await a.waitForStatus(m, 'read');

    await c.send('I do');
    const seen = await b.waitForMessage('I do');
    assert.match(await seen.textContent(), new RegExp(c.name.slice(0, 3), 'i'), 'the sender is named in a group');
    await a.screenshot('07-group');

    // The admin adds a fourth person, who gets the group and its history.
    const d = await person('jack');
    await d.register();
    await a.page.getByRole('button', { name: 'Members' }).click();
    const members = a.page.getByRole('dialog');
    await members.getByPlaceholder('username').fill(d.name);
    await members.getByRole('button', { name: 'Add' }).click();
    await until(async () => (await members.locator('.member').count()) === 4, 'four members');
    await a.screenshot('08-group-members');
    await members.getByRole('button', { name: 'Close' }).click();
    await d.conversation(cid).waitFor();
    await d.openConversation(cid);
    await d.waitForMessage('I do');
    assert.deepEqual(await d.messageTexts(), ['Who brings the map?', 'I do']);
  });

  it('notifies of a message while the tab is hidden', async () => {
    const { a, b, cid } = await pair();
    // b's tab is hidden and has allowed notifications: record them.
    await b.page.addInitScript(() => {
      Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { get: () => true });
      window.__notes = [];
      window.Notification = class {
        static permission = 'granted';
        static requestPermission() { return Promise.resolve('granted'); }
        constructor(title, options) { window.__notes.push({ title, body: options?.body, tag: options?.tag }); }
        close() {}
      };
    });
    await b.page.reload();
    await b.connected();
    await b.openConversation(cid);
    await a.send('are you there?');
    await b.waitForMessage('are you there?');
    const notes = await until(async () => {
      const n = await b.page.evaluate(() => window.__notes);
      return n.length ? n : null;
    }, 'a notification');
    assert.equal(notes.length, 1);
    assert.equal(notes[0].body, 'are you there?');
    assert.equal(notes[0].tag, cid);
    // A hidden tab does not mark anything read.
    const m = await a.waitForMessage('are you there?');
    await a.waitForStatus(m, 'delivered');
    await sleep(700);
    assert.equal(await m.getAttribute('data-status'), 'delivered');
  });

  it('loads older history while scrolling up', async () => {
    const { a, b, cid } = await pair();
    const { access_token: token } = await a.session();
    for (let i = 1; i <= 130; i++) {
      for (;;) {
        const res = await fetch(`${server.url}/api/conversations/${cid}/messages`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ client_message_id: `seed-${i}`, kind: 'text', text: `message ${i}` }),
        });
        if (res.status === 429) {
          await sleep(200);
          continue;
        }
        assert.equal(res.status, 201);
        break;
      }
    }
    await b.openConversation(cid);
    await b.waitForMessage('message 130');
    const loaded = await b.page.getByTestId('message').count();
    assert.ok(loaded >= 50 && loaded < 130, `one page first (${loaded})`);
    const scroller = b.page.locator('.scroller');
    await until(async () => {
      await scroller.evaluate((el) => { el.scrollTop = 0; });
      return (await b.page.getByTestId('message').count()) === 130;
    }, 'all 130 messages after scrolling up', 20_000);
    const seqs = await b.page.getByTestId('message').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, Array.from({ length: 130 }, (_, i) => i + 1));
    await until(async () => /beginning/.test(await b.page.locator('.history-top').textContent()), 'the beginning marker');
    // a's list shows the last one; b has read everything it saw.
    await until(async () => (await b.conversation(cid).getByTestId('unread').count()) === 0, 'no unread for b');
  });

  it('reconnects by itself after a server restart and catches up', async () => {
    const { a, b, cid } = await pair();
    await b.openConversation(cid);
    await a.send('before the restart');
    await b.waitForMessage('before the restart');

    const restarted = server.restart(1500);
    await until(async () => (await a.tid('connection').getAttribute('data-state')) === 'connecting', 'a to show connecting');
    await a.send('during the restart');
    const p = await a.waitForMessage('during the restart');
    assert.equal(await p.getAttribute('data-status'), 'pending');
    await restarted;
    await a.connected(a.page);
    await b.connected(b.page);
    await a.waitForStatus(p, ['sent', 'delivered', 'read'], 15_000);
    await b.waitForMessage('during the restart');
    await b.send('after the restart');
    await a.waitForMessage('after the restart');
    assert.deepEqual(await b.messageTexts(), ['before the restart', 'during the restart', 'after the restart']);
    assert.deepEqual(await a.messageTexts(), await b.messageTexts());
  });

  it('works on a phone-sized screen', async () => {
    const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
    const a = await person('jane', phone);
    const b = await person('kurt');
    await a.register();
    await b.register();
    await atMostOneVisible(a);
    await a.screenshot('10-phone-empty');
    const cid = await a.startChat(b);
    // The chat replaces the list on a phone.
    assert.equal(await a.tid('search-user').isVisible(), false);
    await a.send('Hi from my phone');
    await b.openConversation(cid);
    await b.waitForMessage('Hi from my phone');
    await b.send('Hi phone, a longer answer so that the bubble has to wrap over more than one line on a narrow screen.');
    await a.waitForMessage('Hi phone, a longer answer so that the bubble has to wrap over more than one line on a narrow screen.');
    await atMostOneVisible(a);
    await a.screenshot('11-phone-chat');
    await a.page.getByRole('link', { name: 'Back to conversations' }).click();
    await a.tid('search-user').waitFor({ state: 'visible' });
    assert.equal(await a.visibleCount('composer'), 0);
    await atMostOneVisible(a);
    await a.screenshot('12-phone-list');
  });
});

describe('Parley in the browser, with 10-second access tokens', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const users = [];

  before(async () => {
    server = await startServer(['--access-ttl', '10s']);
    browser = await launchBrowser();
  });

  after(async () => {
    for (const u of users) await u.close().catch(() => {});
    await browser?.close();
    await server?.stop();
  });

  it('refreshes one tab at a time, keeps its sockets, never reuses a refresh token', async () => {
    const a = await new User(browser, server.url, uniqueName('lena')).open();
    const b = await new User(browser, server.url, uniqueName('mark')).open();
    users.push(a, b);
    await a.register();
    await b.register();
    const cid = await a.startChat(b);
    const tab = await a.newPage();
    await a.signedIn(tab);

    const refreshes = [];
    const sockets = [];
    for (const page of [a.page, tab]) {
      page.on('request', (r) => {
        if (r.url().endsWith('/api/auth/refresh')) refreshes.push(JSON.parse(r.postData()).refresh_token);
      });
      page.on('websocket', (ws) => sockets.push(ws.url()));
    }
    const first = (await a.session()).refresh_token;
    await sleep(25_000);

    assert.ok(refreshes.length >= 2, `the tokens were refreshed (${refreshes.length} times)`);
    assert.equal(new Set(refreshes).size, refreshes.length, 'no refresh token was sent twice');
    assert.notEqual((await a.session()).refresh_token, first);
    assert.deepEqual(sockets, [], 'the sockets were extended with auth, not reopened');
    for (const page of [a.page, tab]) {
      assert.equal(await page.getByTestId('connection').getAttribute('data-state'), 'online');
      assert.equal(await page.getByTestId('username').count(), 0, 'still signed in');
    }
    await b.openConversation(cid);
    await a.send('still here');
    await b.waitForMessage('still here');
    await b.send('me too');
    await a.waitForMessage('me too', tab).catch(async () => {
      await a.conversation(cid, tab).click();
      await a.waitForMessage('me too', tab);
    });
    assert.deepEqual([...a.errors, ...b.errors], []);
  });
});
