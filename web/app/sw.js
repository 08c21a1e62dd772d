// Parley's service worker: shows Web Push notifications and opens the
// right chat when one is clicked. It is served from the root (/sw.js) so
// that its scope is the whole app, and it is a classic script (no
// imports) so that every browser with Web Push can run it.
//
// It has no fetch handler on purpose: the app's requests, the API and the
// WebSocket go to the network exactly as without it.
//
// The push payload (JSON, decrypted by the browser) is the server's
// (docs/protocol.md, section 18), of one of two types:
// - {"type": "message", title, subtitle, body, badge, conversation_id,
//   sender_id, message_id, seq, tag}: a new message. tag is the
//   conversation id, so that the notifications of one conversation
//   replace each other. A payload without type (an older server) is one.
// - {"type": "badge", badge}: the user's unread count went down (read on
//   another device, a mute, leaving a group). It sets the app badge and
//   shows nothing; at 0 it also closes the app's notifications, all read
//   now.
// Any other type is ignored (a newer server's), apart from its badge.

'use strict';

// A conversation id, as the app's router accepts it (#/c/<id>).
const ID = /^[A-Za-z0-9-]{1,64}$/;
// The server cuts the text at 200 characters; this bounds the whole body.
const MAX_BODY = 300;

self.addEventListener('install', () => {
  // Nothing to cache: take over from an older version at once.
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  // Control the pages that are already open at once.
  event.waitUntil(self.clients.claim());
});

/** appWindows lists this origin's windows that show the app (served at /). */
async function appWindows() {
  const all = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  return all.filter((c) => {
    try {
      const p = new URL(c.url).pathname;
      return p === '/' || p === '/index.html';
    } catch {
      return false;
    }
  });
}

/** cut shortens s to n code points, with an ellipsis when it was longer. */
function cut(s, n) {
  const cps = Array.from(s);
  return cps.length > n ? `${cps.slice(0, n).join('')}…` : s;
}

/** parse reads a push message's payload; a message without JSON still shows. */
function parse(data) {
  if (!data) return {};
  try {
    const p = data.json();
    return p && typeof p === 'object' ? p : {};
  } catch {
    try {
      return { body: data.text() };
    } catch {
      return {};
    }
  }
}

function str(v) {
  return typeof v === 'string' ? v : '';
}

/**
 * notificationOf turns a payload into showNotification's arguments: the
 * title, and a body that names the sender in a group ("Alice: hi").
 */
function notificationOf(p) {
  const cid = ID.test(str(p.conversation_id)) ? p.conversation_id : '';
  const tag = str(p.tag) || cid;
  const body = str(p.body);
  const subtitle = str(p.subtitle);
  const options = {
    body: cut(subtitle ? `${subtitle}: ${body}` : body, MAX_BODY),
    icon: '/icon.svg',
    data: cid,
  };
  if (tag) {
    options.tag = tag;
    options.renotify = true; // a new message alerts again, replacing the last one
  }
  return { title: str(p.title) || 'Parley', options };
}

/** setBadge shows the total unread count on the app icon where supported. */
async function setBadge(n) {
  if (!Number.isInteger(n) || n < 0 || !self.navigator.setAppBadge) return;
  try {
    await (n ? self.navigator.setAppBadge(n) : self.navigator.clearAppBadge());
  } catch {
    // Not installed, or not supported here.
  }
}

/** closeAll closes every notification this app shows. */
async function closeAll() {
  for (const n of await self.registration.getNotifications()) n.close();
}

async function onPush(event) {
  const p = parse(event.data);
  const type = p.type === undefined ? 'message' : p.type;
  await setBadge(p.badge);
  if (type === 'badge') {
    if (p.badge === 0) await closeAll();
    return;
  }
  if (type !== 'message') return;
  // The app in a focused, visible window shows the message live already.
  const wins = await appWindows();
  if (wins.some((c) => c.focused && c.visibilityState === 'visible')) return;
  const { title, options } = notificationOf(p);
  await self.registration.showNotification(title, options);
}

/**
 * extend keeps the worker alive until p settles. Only events from the
 * browser can be extended (a synthetic one, isTrusted false, would throw).
 */
function extend(event, p) {
  if (event.isTrusted) event.waitUntil(p);
}

self.addEventListener('push', (event) => {
  extend(event, onPush(event).catch((e) => console.warn('parley: showing a push failed', e)));
});

async function onClick(event) {
  const cid = typeof event.notification.data === 'string' && ID.test(event.notification.data)
    ? event.notification.data : '';
  const wins = await appWindows();
  const win = wins.find((c) => c.focused) || wins.find((c) => c.visibilityState === 'visible') || wins[0];
  if (win) {
    // The page routes by its hash (#/c/<id>); main.js listens for this.
    if (cid) win.postMessage({ type: 'parley.open', conversation_id: cid });
    try {
      await win.focus();
    } catch {
      // Focus needs the click's user activation; without it the chat
      // still opened in that window.
    }
    return;
  }
  await self.clients.openWindow(cid ? `/#/c/${cid}` : '/');
}

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  // Extending the event also lets focus() and openWindow() use the click.
  extend(event, onClick(event).catch((e) => console.warn('parley: opening the chat failed', e)));
});

// The push service replaced or dropped the subscription (expiry, key
// rotation). The worker subscribes again with the same key if the browser
// did not, but it cannot call the API (it has no access token): the open
// pages register the new subscription, and a page that starts later finds
// it changed and does so too (push.js).
self.addEventListener('pushsubscriptionchange', (event) => {
  extend(event, (async () => {
    const key = event.oldSubscription?.options?.applicationServerKey;
    if (!event.newSubscription && key) {
      try {
        await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      } catch (e) {
        console.warn('parley: subscribing again failed', e);
      }
    }
    const wins = await appWindows();
    for (const c of wins) c.postMessage({ type: 'parley.pushsubscriptionchange' });
  })().catch((e) => console.warn('parley: a subscription change was lost', e)));
});
