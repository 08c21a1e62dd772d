// End-to-end tests of photos, videos and files in the browser client
// (docs/protocol.md, section 19): attaching by the button, by a paste and
// by a drop; the upload (tus) with its progress, cancelled, resumed after
// the network drops and after a reload; what the other person sees (a
// thumbnail that loads, the full photo, a video player, a download link)
// and the conversation list's "Photo"/"File" previews. Every message is
// checked to be stored exactly once.
//
//   cd web/e2e && npm ci && node --test media.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startServer, launchBrowser, User, uniqueName, until, sleep, history } from './harness.mjs';

const CHUNK = 5 * 1024 * 1024; // the app's tus chunk (web/app/js/media.js)

/** png draws a w×h picture in the page and returns it as PNG bytes. */
async function png(page, w = 64, h = 48) {
  const b64 = await page.evaluate(async ([w, h]) => {
    const c = new OffscreenCanvas(w, h);
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, '#0f766e');
    grad.addColorStop(1, '#fbbf24');
    g.fillStyle = grad;
    g.fillRect(0, 0, w, h);
    const bytes = new Uint8Array(await (await c.convertToBlob({ type: 'image/png' })).arrayBuffer());
    let s = '';
    for (const x of bytes) s += String.fromCharCode(x);
    return btoa(s);
  }, [w, h]);
  return Buffer.from(b64, 'base64');
}

/** pick attaches files with the attach button and the file chooser. */
async function pick(u, files) {
  const chooser = u.page.waitForEvent('filechooser');
  await u.tid('attach').click();
  await (await chooser).setFiles(files);
}

/** loaded: an <img> that finished loading with real pixels. */
async function loaded(img) {
  return img.evaluate((el) => el.complete && el.naturalWidth > 0).catch(() => false);
}

function withMedia(u, testid) {
  return u.page.getByTestId('message').filter({ has: u.page.getByTestId(testid) });
}

describe('Photos, videos and files in the browser', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const users = [];
  // One conversation for every test (registering people takes seconds).
  let a;
  let b;
  let cid;
  let dir;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'parley-media-e2e-'));
    server = await startServer();
    browser = await launchBrowser();
    ({ a, b, cid } = await pair());
  });

  after(async () => {
    for (const u of users) await u.close().catch(() => {});
    await browser?.close();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * bigFile writes size random bytes to a file named name: a path is
   * handed to the browser as it is, where bytes would cross the DevTools
   * connection in base64, seconds for a few megabytes.
   */
  async function bigFile(name, size) {
    const data = randomBytes(size);
    const path = join(dir, name);
    await writeFile(path, data);
    return { path, data };
  }

  async function person(prefix) {
    const u = await new User(browser, server.url, uniqueName(prefix)).open();
    users.push(u);
    return u;
  }

  async function pair() {
    const a = await person('alice');
    const b = await person('bob');
    await a.register();
    await b.register();
    const cid = await a.startChat(b);
    await b.conversation(cid).waitFor({ state: 'visible' });
    await b.openConversation(cid);
    return { a, b, cid };
  }

  /** stored: the conversation's stored messages that fit, over REST. */
  async function stored(u, fits) {
    return (await history(server.url, (await u.session()).access_token, cid)).filter(fits);
  }

  it('sends a photo picked with the button: a thumbnail on the other side, the full photo on a click', async () => {
    const photo = await png(a.page, 64, 48);
    await pick(a, { name: 'beach.png', mimeType: 'image/png', buffer: photo });
    const chip = a.tid('attachment');
    await chip.waitFor({ state: 'visible' });
    assert.match(await chip.textContent(), /beach\.png/);
    await a.tid('composer').fill('the beach');
    await a.screenshot('media-attach');
    await a.tid('send').click();
    assert.equal(await a.tid('attachment').count(), 0, 'the tray empties on send');

    const mine = await a.waitForMessage('the beach');
    await a.waitForStatus(mine, ['sent', 'delivered', 'read'], 15_000);
    const theirs = await b.waitForMessage('the beach', b.page, 15_000);
    const thumb = theirs.getByTestId('media-thumbnail');
    await until(() => loaded(thumb), 'the thumbnail to load');
    const src = await thumb.getAttribute('src');
    assert.match(src, /^\/media\/[0-9a-f-]+\/thumbnail\?exp=\d+&sig=/);
    assert.equal(await thumb.getAttribute('width'), '64', 'sized from the Media before it loads');

    // The full photo over the app; Escape closes it.
    await thumb.click();
    const viewer = b.tid('media-viewer');
    await viewer.waitFor({ state: 'visible' });
    const full = b.tid('media-viewer-image');
    await until(() => loaded(full), 'the full photo to load');
    assert.equal(await full.evaluate((el) => el.naturalWidth), 64);
    assert.match(await full.getAttribute('src'), /^\/media\/[0-9a-f-]+\?exp=\d+&sig=/);
    assert.equal(await viewer.locator('figcaption').textContent(), 'the beach');
    await b.screenshot('media-viewer');
    await b.page.keyboard.press('Escape');
    await until(async () => (await b.tid('media-viewer').count()) === 0, 'the viewer to close');

    // The lists say what it is.
    await until(async () => (await b.conversation(cid).locator('.conv-preview').textContent()) === 'Photo: the beach',
      "bob's list to say Photo: the beach");
    await until(async () => (await a.conversation(cid).locator('.conv-preview').textContent()) === 'You: Photo: the beach',
      "alice's list to say You: Photo: the beach");
    await until(() => loaded(mine.getByTestId('media-thumbnail')), "alice's own message to show the server's thumbnail");
    await a.screenshot('media-chat');

    const msgs = await stored(b, (m) => m.text === 'the beach');
    assert.equal(msgs.length, 1, 'stored once');
    assert.equal(msgs[0].kind, 'image');
    assert.equal(msgs[0].media.mime_type, 'image/png');
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it('sends a file as a download link with its name and size; names and captions stay text', async () => {
    const name = '<img src=x onerror=alert(1)>.txt';
    const body = Buffer.from('hello from a text file\n'.repeat(10));
    await pick(a, { name, mimeType: 'text/plain', buffer: body });
    const caption = '<img src=y onerror=alert(2)> notes';
    await a.tid('composer').fill(caption);
    await a.tid('send').click();

    const msg = await b.waitForMessage(caption, b.page, 15_000);
    const link = msg.getByTestId('media-file');
    await link.waitFor({ state: 'visible' });
    assert.equal(await link.locator('.file-name').textContent(), name);
    assert.equal(await link.locator('.file-size').textContent(), '230 B');
    assert.equal(await link.getAttribute('download'), name);
    assert.equal(await msg.locator('img').count(), 0, 'no element made from the name or the caption');
    assert.deepEqual(b.dialogs, []);

    // The link downloads the bytes, as an attachment.
    const href = await link.getAttribute('href');
    assert.match(href, /^\/media\/[0-9a-f-]+\?exp=\d+&sig=/);
    const res = await fetch(server.url + href);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-disposition'), /^attachment/);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), body);

    await until(async () => (await b.conversation(cid).locator('.conv-preview').textContent()) === `File: ${caption}`,
      "bob's list to say File: …");
    const msgs = await stored(a, (m) => m.text === caption);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].kind, 'file');
    assert.equal(msgs[0].media.name, name);
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it('says why the server refused an upload, and deletes it', async () => {
    // A PNG whose pixels are missing: the server refuses it (400).
    const bad = Buffer.from('89504e470d0a1a0a0000000d4948445200000010000000100806000000', 'hex');
    await pick(a, { name: 'broken.png', mimeType: 'image/png', buffer: bad });
    await a.tid('send').click();
    const failed = a.page.locator('.msg.failed');
    await failed.waitFor({ state: 'visible', timeout: 15_000 });
    assert.match(await failed.locator('.msg-error').textContent(), /^Not sent: .*PNG.*Delete$/);
    await failed.getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await a.page.locator('.msg.failed').count()) === 0, 'the refused message to go');
    assert.equal((await stored(b, (m) => m.media?.name === 'broken.png')).length, 0);
  });

  it('attaches a pasted image and a dropped one', async () => {
    const photo = [...await png(a.page, 80, 60)];
    // A paste into the composer, as a screenshot from the clipboard.
    await a.tid('composer').focus();
    await a.page.evaluate((bytes) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'image.png', { type: 'image/png' }));
      const e = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
      document.querySelector('[data-testid="composer"]').dispatchEvent(e);
    }, photo);
    await a.tid('attachment').waitFor({ state: 'visible' });
    await a.tid('send').click();
    const pasted = withMedia(b, 'media-thumbnail').filter({ has: b.page.locator('img[alt="image.png"]') });
    await until(async () => (await pasted.count()) === 1, 'bob to get the pasted image', 15_000);
    await until(() => loaded(pasted.getByTestId('media-thumbnail')), 'the pasted image to load');

    // A drop onto the chat.
    await a.page.evaluate((bytes) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'dropped.png', { type: 'image/png' }));
      const pane = document.querySelector('section.chat');
      const opts = { dataTransfer: dt, bubbles: true, cancelable: true };
      pane.dispatchEvent(new DragEvent('dragenter', opts));
      const over = new DragEvent('dragover', opts);
      pane.dispatchEvent(over);
      if (!over.defaultPrevented) throw new Error('the chat does not accept the drop');
      pane.dispatchEvent(new DragEvent('drop', opts));
    }, photo);
    const chip = a.tid('attachment');
    await chip.waitFor({ state: 'visible' });
    assert.match(await chip.textContent(), /dropped\.png/);
    await a.tid('composer').fill('dropped in');
    await a.tid('send').click();
    const msg = await b.waitForMessage('dropped in', b.page, 15_000);
    await until(() => loaded(msg.getByTestId('media-thumbnail')), 'the dropped image to load');

    const msgs = await stored(b, (m) => ['image.png', 'dropped.png'].includes(m.media?.name));
    assert.deepEqual(msgs.map((m) => [m.kind, m.media.name, m.text]), [['image', 'image.png', ''], ['image', 'dropped.png', 'dropped in']]);
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it('fetches fresh URLs once when a thumbnail has expired', async () => {
    await pick(a, { name: 'old.png', mimeType: 'image/png', buffer: await png(a.page) });
    await a.tid('composer').fill('an old photo');
    await a.tid('send').click();
    await b.waitForMessage('an old photo', b.page, 15_000);
    const id = (await stored(b, (m) => m.text === 'an old photo'))[0].media.id;

    // Bob comes back later: the history he loads has an expired
    // thumbnail URL (the server refuses it, 403).
    let stale = 0;
    await b.page.route('**/api/conversations/*/messages?*', async (route) => {
      const res = await route.fetch();
      const data = await res.json();
      for (const m of data.messages || []) {
        if (m.media?.thumbnail_url) {
          m.media.thumbnail_url = m.media.thumbnail_url.replace(/exp=\d+/, 'exp=1000000000');
          stale++;
        }
      }
      await route.fulfill({ response: res, json: data });
    });
    const fresh = [];
    b.page.on('request', (r) => { if (r.url().endsWith(`/api/media/${id}`)) fresh.push(r.url()); });
    await b.page.reload();
    await b.connected();
    await b.openConversation(cid);
    const thumb = b.page.locator(`[data-testid="media-thumbnail"][data-media-id="${id}"]`);
    await until(() => loaded(thumb), 'the thumbnail to load with fresh URLs', 15_000);
    assert.ok(stale >= 1, 'the history carried the expired URL');
    assert.equal(fresh.length, 1, 'one GET /api/media/{id}');
    assert.doesNotMatch(await thumb.getAttribute('src'), /exp=1000000000/);
    await b.page.unroute('**/api/conversations/*/messages?*');
  });

  it('plays a video, poster and all', async (t) => {
    const clip = join(dir, 'clip.webm');
    try {
      await promisify(execFile)('ffmpeg', ['-nostdin', '-v', 'error', '-f', 'lavfi', '-i', 'testsrc=duration=1:size=160x120:rate=10',
        '-c:v', 'libvpx', '-b:v', '200k', '-y', clip]);
    } catch (e) {
      t.skip(`no ffmpeg with libvpx to make a test video: ${e.message}`);
      return;
    }
    const video = await readFile(clip);
    await pick(a, { name: 'clip.webm', mimeType: 'video/webm', buffer: video });
    await a.tid('composer').fill('a clip');
    await a.tid('send').click();
    await b.waitForMessage('a clip', b.page, 15_000);
    const player = b.page.getByTestId('media-video');
    assert.match(await player.getAttribute('src'), /^\/media\/[0-9a-f-]+\?exp=/);
    assert.notEqual(await player.getAttribute('controls'), null);
    // The server's poster frame (it has ffmpeg, or there is none).
    const poster = await player.getAttribute('poster');
    if (poster) assert.match(poster, /^\/media\/[0-9a-f-]+\/thumbnail\?/);
    await until(() => player.evaluate((v) => v.readyState >= 1 && v.videoWidth === 160), 'the video metadata to load', 15_000);
    await until(async () => (await b.conversation(cid).locator('.conv-preview').textContent()) === 'Video: a clip', "bob's list to say Video: a clip");
    const msgs = await stored(a, (m) => m.text === 'a clip');
    assert.deepEqual(msgs.map((m) => [m.kind, m.media.mime_type]), [['video', 'video/webm']]);
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it('shows the progress of an upload and cancels it', async () => {
    // The first chunk goes with the creation; the next PATCH is held.
    let held = null;
    const deletes = [];
    let uploadUrl = null;
    await a.page.route('**/api/uploads**', async (route) => {
      const req = route.request();
      if (req.method() === 'PATCH' && !held) {
        held = route;
        return;
      }
      const res = await route.fetch();
      if (req.method() === 'DELETE') deletes.push(res.status());
      if (req.method() === 'POST') uploadUrl = new URL(res.headers().location, server.url).pathname;
      await route.fulfill({ response: res });
    });
    await pick(a, (await bigFile('big.bin', CHUNK + 500_000)).path);
    await a.tid('send').click();
    const bar = a.tid('upload-progress');
    await bar.waitFor({ state: 'visible' });
    await until(async () => Number(await bar.getAttribute('value')) >= CHUNK, 'the progress to pass the first chunk', 15_000);
    assert.equal(Number(await bar.getAttribute('max')), CHUNK + 500_000);
    await until(() => held, 'the second PATCH');
    await a.screenshot('media-uploading');

    await a.tid('upload-cancel').click();
    await until(async () => (await withMedia(a, 'media-preview').count()) + (await a.page.locator('.msg .file.local').count()) === 0,
      'the message to go');
    await held.abort().catch(() => {});
    await until(() => deletes.length === 1, 'the upload to be deleted on the server (tus termination)');
    assert.deepEqual(deletes, [204]);
    const id = uploadUrl.split('/').pop();
    const res = await fetch(`${server.url}/api/media/${id}`, { headers: { Authorization: `Bearer ${(await a.session()).access_token}` } });
    assert.equal(res.status, 404, 'the upload is gone');
    assert.equal(await a.page.evaluate(() => new Promise((resolve) => {
      const r = indexedDB.open('parley');
      r.onsuccess = () => {
        const q = r.result.transaction('outbox').objectStore('outbox').count();
        q.onsuccess = () => resolve(q.result);
      };
    })), 0, 'nothing left in the outbox');
    await sleep(500);
    assert.equal((await stored(b, (m) => m.media?.name === 'big.bin')).length, 0, 'nothing sent');
    await a.page.unroute('**/api/uploads**');
  });

  it('resumes an upload after the network drops, and after a reload, and sends it once', async () => {
    const size = CHUNK + 1_200_000;
    const first = await bigFile('first.bin', size);
    const sha = createHash('sha256').update(first.data).digest('hex');
    const log = [];
    let blockedUntil = 0;
    let drop = true;
    await a.page.route('**/api/uploads**', async (route) => {
      const req = route.request();
      const h = req.headers();
      log.push(`${req.method()} ${h['upload-offset'] ?? ''}`.trim());
      // The first PATCH after the creation: the network drops for a
      // moment (tus-js-client tries again at once, then after 1 s).
      if (req.method() === 'PATCH' && drop) {
        drop = false;
        blockedUntil = Date.now() + 700;
      }
      if (Date.now() < blockedUntil) return route.abort('internetdisconnected');
      return route.continue();
    });
    await pick(a, first.path);
    await a.tid('composer').fill('resumed');
    await a.tid('send').click();
    const msg = await b.waitForMessage('resumed', b.page, 30_000);
    const link = msg.getByTestId('media-file');
    await link.waitFor({ state: 'visible' });
    assert.equal(log.filter((l) => l === 'POST').length, 1, `one upload created: ${log}`);
    assert.ok(log.includes('HEAD'), `the offset asked after the drop: ${log}`);
    const patches = log.filter((l) => l.startsWith('PATCH'));
    assert.equal(patches[patches.length - 1], `PATCH ${CHUNK}`, `resumed from the server's offset, not from 0: ${log}`);
    const res = await fetch(server.url + await link.getAttribute('href'));
    assert.equal(createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex'), sha, 'the same bytes arrived');
    await a.page.unroute('**/api/uploads**');

    // A reload in the middle of an upload: the outbox holds the file and
    // the upload's URL, and the reloaded page goes on from the offset.
    log.length = 0;
    let hold = true;
    let held = null;
    await a.page.route('**/api/uploads**', async (route) => {
      const req = route.request();
      log.push(`${req.method()} ${req.headers()['upload-offset'] ?? ''}`.trim());
      if (req.method() === 'PATCH' && hold) {
        held = route;
        return;
      }
      return route.continue();
    });
    await pick(a, (await bigFile('second.bin', size)).path);
    await a.tid('composer').fill('after a reload');
    await a.tid('send').click();
    await until(() => held, 'the upload to be under way', 15_000);
    hold = false;
    await a.page.reload();
    await held.abort().catch(() => {});
    await a.connected();
    const again = await b.waitForMessage('after a reload', b.page, 30_000);
    await again.getByTestId('media-file').waitFor({ state: 'visible' });
    assert.equal(log.filter((l) => l === 'POST').length, 1, `one upload created: ${log}`);
    assert.ok(log.includes(`PATCH ${CHUNK}`) && !log.includes('PATCH 0'), `resumed at the offset: ${log}`);
    await a.page.unroute('**/api/uploads**');

    const msgs = await stored(b, (m) => ['first.bin', 'second.bin'].includes(m.media?.name));
    assert.deepEqual(msgs.map((m) => [m.kind, m.text, m.media.size]), [['file', 'resumed', size], ['file', 'after a reload', size]]);
    assert.deepEqual(b.errors, []);
  });
});
