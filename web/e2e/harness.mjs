// Test harness: builds and starts the real parley server on a free port
// with a fresh data folder, launches Debian's Chromium through
// playwright-core, and offers small helpers to drive the app by its
// data-testid attributes.

import { spawn, execFile } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../..');
export const screenshotDir = resolve(here, 'screenshots');

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * startServer builds cmd/parley into a temporary folder (or takes the
 * binary named by PARLEY_BIN) and runs
 * `parley serve --addr 127.0.0.1:0 --data <tmp>`, reading the address from
 * its "listening on http://..." line. stop() sends SIGTERM and waits;
 * restart() stops it and starts it again on the same address and data.
 */
export async function startServer(extraArgs = []) {
  const dir = await mkdtemp(join(tmpdir(), 'parley-e2e-'));
  // PARLEY_BIN runs a binary built elsewhere instead of building one.
  let bin = process.env.PARLEY_BIN;
  if (!bin) {
    bin = join(dir, 'parley');
    await promisify(execFile)('go', ['build', '-o', bin, './cmd/parley'], {
      cwd: repoRoot,
      env: { ...process.env, CGO_ENABLED: process.env.CGO_ENABLED ?? '0' },
      maxBuffer: 16 << 20,
    });
  }
  const logPath = join(dir, 'server.log');
  const log = createWriteStream(logPath);
  let child = null;
  const kill = () => { try { child?.kill('SIGKILL'); } catch { /* gone */ } };
  process.on('exit', kill);

  async function run(addr) {
    child = spawn(bin, ['serve', '--addr', addr, '--data', join(dir, 'data'), ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(log, { end: false });
    const c = child;
    return new Promise((resolveURL, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`server did not start; log: ${logPath}`)), 30_000);
      c.once('exit', (code) => reject(new Error(`server exited with ${code}; log: ${logPath}`)));
      c.stderr.on('data', (chunk) => {
        log.write(chunk);
        if (buf === null) return;
        buf += chunk.toString();
        const m = /listening on (http:\/\/[^\s"]+)/.exec(buf);
        if (m) {
          buf = null;
          clearTimeout(timer);
          resolveURL(m[1]);
        }
      });
    });
  }

  async function halt() {
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (c.exitCode === null && c.signalCode === null) kill();
    }
  }

  const url = await run('127.0.0.1:0');
  return {
    url,
    logPath,
    /** restart stops the server, waits downMs, and starts it again. */
    async restart(downMs = 0) {
      await halt();
      await sleep(downMs);
      await run(new URL(url).host);
    },
    async stop() {
      await halt();
      process.removeListener('exit', kill);
      log.end();
      if (!process.env.KEEP_SERVER_DATA) await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** until polls fn until it returns something truthy. */
export async function until(fn, message, timeout = 10_000) {
  const end = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await sleep(100);
  }
}

let counter = 0;
/** uniqueName makes a fresh valid username. */
export function uniqueName(prefix) {
  counter += 1;
  return `${prefix}_${Date.now().toString(36)}${counter}`.slice(0, 32).toLowerCase();
}

/**
 * User is one person in their own browser context (own localStorage,
 * IndexedDB and cookies), with one page open on the app.
 */
export class User {
  constructor(browser, base, name, contextOptions = {}) {
    this.browser = browser;
    this.base = base;
    this.name = name;
    this.contextOptions = contextOptions;
    this.errors = [];
    this.dialogs = [];
  }

  /** open makes the context; prepare(context) runs before the first page. */
  async open(prepare) {
    this.context = await this.browser.newContext({ viewport: { width: 1280, height: 800 }, ...this.contextOptions });
    await prepare?.(this.context);
    this.page = await this.newPage();
    return this;
  }

  async newPage() {
    const page = await this.context.newPage();
    page.on('pageerror', (e) => this.errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource|ERR_INTERNET_DISCONNECTED|WebSocket/.test(m.text())) {
        this.errors.push(m.text());
      }
    });
    page.on('dialog', (d) => {
      this.dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    await page.goto(this.base);
    return page;
  }

  tid(id) {
    return this.page.getByTestId(id);
  }

  /** register signs up with one click on `register`. */
  async register(password = 'correct horse battery') {
    this.password = password;
    await this.tid('username').fill(this.name);
    await this.tid('password').fill(password);
    await this.tid('register').click();
    await this.signedIn();
    return this;
  }

  async login() {
    await this.tid('username').fill(this.name);
    await this.tid('password').fill(this.password);
    await this.tid('login').click();
    await this.signedIn();
  }

  async signedIn(page = this.page) {
    await page.getByTestId('connection').waitFor({ state: 'visible', timeout: 15_000 });
    await until(async () => (await page.getByTestId('username').count()) === 0, 'the login form to go');
    await this.connected(page);
  }

  async connected(page = this.page) {
    await until(async () => (await page.getByTestId('connection').getAttribute('data-state')) === 'online',
      `${this.name} to be online`, 15_000);
  }

  /** startChat opens the direct chat with another user by username. */
  async startChat(other) {
    await this.tid('search-user').fill(other.name);
    await this.tid('start-chat').click();
    await this.tid('composer').waitFor({ state: 'visible' });
    const id = await until(async () => this.page.locator('[data-testid="conversation"][aria-current="true"]').getAttribute('data-conversation-id'),
      'the opened conversation to be marked current');
    return id;
  }

  conversation(id, page = this.page) {
    return page.locator(`[data-testid="conversation"][data-conversation-id="${id}"]`);
  }

  async openConversation(id) {
    await this.conversation(id).click();
    await until(async () => (await this.conversation(id).getAttribute('aria-current')) === 'true', 'the conversation to open');
    await this.tid('composer').waitFor({ state: 'visible' });
  }

  async send(text) {
    await this.tid('composer').fill(text);
    await this.tid('send').click();
  }

  async messageTexts(page = this.page) {
    return page.locator('[data-testid="message"] .text').allTextContents();
  }

  /**
   * waitForMessage waits until exactly one message shows text, and returns
   * a locator of it (by its text, so it survives reordering).
   */
  async waitForMessage(text, page = this.page, timeout = 10_000) {
    await until(async () => (await this.messageTexts(page)).filter((t) => t === text).length === 1,
      `${this.name} to show "${text}" once`, timeout);
    return page.getByTestId('message').filter({ has: page.getByText(text, { exact: true }) });
  }

  async status(message) {
    return message.getAttribute('data-status');
  }

  async waitForStatus(message, want, timeout = 10_000) {
    const wants = Array.isArray(want) ? want : [want];
    await until(async () => wants.includes(await message.getAttribute('data-status')),
      `${this.name}'s message to be ${wants.join(' or ')}`, timeout);
  }

  /** visibleCount counts the visible elements carrying a data-testid. */
  async visibleCount(id, page = this.page) {
    const loc = page.getByTestId(id);
    const n = await loc.count();
    let visible = 0;
    for (let i = 0; i < n; i++) if (await loc.nth(i).isVisible()) visible++;
    return visible;
  }

  /** session reads the stored tokens (to call the REST API as this user). */
  async session(page = this.page) {
    return page.evaluate(() => JSON.parse(localStorage.getItem('parley.session')));
  }

  async screenshot(name, page = this.page) {
    mkdirSync(screenshotDir, { recursive: true });
    await page.screenshot({ path: join(screenshotDir, `${name}.png`) });
  }

  async close() {
    await this.context?.close();
  }
}

/** history fetches a conversation's stored messages over REST. */
export async function history(base, token, conversationId) {
  const res = await fetch(`${base}/api/conversations/${conversationId}/messages?limit=200`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!res.ok) throw new Error(`history: ${res.status}`);
  return (await res.json()).messages;
}
