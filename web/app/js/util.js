// Small helpers shared by every module. DOM is only ever built with
// createElement and textContent: no string of HTML exists in this app (the
// server's Content-Security-Policy enforces that with Trusted Types).

/**
 * h builds an element. props: class, text, dataset, on<event> handlers,
 * value/checked/disabled/hidden as properties, anything else as attribute.
 * Children are nodes or strings (strings become text nodes).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'hidden') el[k] = v;
      else if (k === 'style' || k.startsWith('on')) throw new Error(`h: ${k} is not allowed`);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** setAttr sets or removes an attribute only when it changes. */
export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else {
    const s = value === true ? '' : String(value);
    if (el.getAttribute(name) !== s) el.setAttribute(name, s);
  }
}

/** setText sets textContent only when it changes. */
export function setText(el, text) {
  const s = text == null ? '' : String(text);
  if (el.textContent !== s) el.textContent = s;
}

/** uuid returns a random UUID, also outside secure contexts. */
export function uuid() {
  if (globalThis.crypto?.randomUUID) {
    try { return crypto.randomUUID(); } catch { /* insecure context */ }
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((n) => n.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * backoff returns the wait before attempt n (from 0): full jitter,
 * uniformly random in [0, min(cap, base * 2^n)].
 */
export function backoff(n, base = 500, cap = 30000) {
  return Math.random() * Math.min(cap, base * 2 ** Math.min(n, 16));
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long' });
const dateFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
const shortDateFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });

export function startOfDay(d) {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** dayKey identifies the local calendar day of a time. */
export function dayKey(t) {
  const d = new Date(t);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** dayLabel is a date separator's text: Today, Yesterday, a weekday or a date. */
export function dayLabel(t) {
  const d = new Date(t);
  const days = Math.round((startOfDay(new Date()) - startOfDay(d)) / 86400000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  if (days > 1 && days < 7) return dayFmt.format(d);
  return dateFmt.format(d);
}

export function timeOf(t) {
  return timeFmt.format(new Date(t));
}

/** listTime is the short time of a conversation list item. */
export function listTime(t) {
  if (!t) return '';
  const d = new Date(t);
  const days = Math.round((startOfDay(new Date()) - startOfDay(d)) / 86400000);
  if (days === 0) return timeFmt.format(d);
  if (days === 1) return 'Yesterday';
  if (days > 1 && days < 7) return dayFmt.format(d).slice(0, 3);
  return shortDateFmt.format(d);
}

/** lastSeen says when someone was last online, for a chat header. */
export function lastSeen(t) {
  if (!t) return 'offline';
  const d = new Date(t);
  const mins = Math.floor((Date.now() - d.getTime()) / 60000);
  if (mins < 1) return 'last seen just now';
  if (mins < 60) return `last seen ${mins} min ago`;
  const days = Math.round((startOfDay(new Date()) - startOfDay(d)) / 86400000);
  if (days === 0) return `last seen today at ${timeFmt.format(d)}`;
  if (days === 1) return `last seen yesterday at ${timeFmt.format(d)}`;
  return `last seen ${dateFmt.format(d)}`;
}

/** utf8Length counts the bytes of s in UTF-8. */
export function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

/** initials of a name, for avatars. */
export function initials(name) {
  const parts = String(name || '?').trim().split(/[\s._-]+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[1][0] : String(name || '?').slice(0, 2);
  return s.toUpperCase();
}

/** hue picks a stable avatar colour for an id (one of 8 CSS classes). */
export function hue(id) {
  let n = 0;
  for (const c of String(id)) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return n % 8;
}

/** ApiError is a failed request: code is the contract's error code. */
export class ApiError extends Error {
  constructor(code, message, status = 0, retryAfterMs = 0) {
    super(message || code);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Emitter is a tiny event emitter. */
export class Emitter {
  #handlers = new Map();
  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }
  emit(type, ...args) {
    for (const fn of [...(this.#handlers.get(type) || [])]) {
      try { fn(...args); } catch (e) { console.error(e); }
    }
  }
}
