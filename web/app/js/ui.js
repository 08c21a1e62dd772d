// The views: the sign-in form and the chat app (conversation list, chat,
// dialogs). Everything is built with createElement; message text and
// every other string from the server goes into textContent only.
//
// data-testid attributes are a stable interface for tests (see the issue
// and README): username, password, login, register, conversation, unread,
// muted, search-user, start-chat, composer, send, message, typing,
// connection, mute; for media attach, attach-input, attachment,
// upload-progress, upload-cancel, media-thumbnail, media-video,
// media-file, media-viewer.

import { h, setAttr, setText, dayKey, dayLabel, timeOf, listTime, lastSeen, initials, hue } from './util.js';
import { icon } from './icons.js';
import { showNotification } from './push.js';
import { describe, expired, fit, humanSize, isMediaKind, kindOf } from './media.js';

const CONN_TEXT = { online: 'Online', connecting: 'Connecting…', offline: 'Offline' };
const STATUS_TEXT = { pending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read' };
const STATUS_ICON = { pending: 'clock', sent: 'check', delivered: 'checks', read: 'checks' };
const MAX_STAGED = 10; // files attached to one send
const THUMB_PX = 300; // the longest side of a photo or video in the chat
const UPLOAD_TEXT = { waiting: 'Uploading…', processing: 'Processing…' };

/** filesOf: the files a drag or a paste carries. */
function filesOf(dt) {
  if (!dt) return [];
  const files = [...(dt.files || [])];
  if (files.length) return files;
  return [...(dt.items || [])].filter((i) => i.kind === 'file').map((i) => i.getAsFile()).filter(Boolean);
}

function dragsFiles(e) {
  return !!e.dataTransfer && [...(e.dataTransfer.types || [])].includes('Files');
}

function brand() {
  return h('span', { class: 'brand' }, h('img', { src: '/icon.svg', alt: '', width: 28, height: 28 }), h('span', { text: 'Parley' }));
}

function avatar(id, name, extraClass = '') {
  return h('span', { class: `avatar h${hue(id)} ${extraClass}`.trim(), 'aria-hidden': 'true', text: initials(name) });
}

/** untilText: " until Tue 14:00" for a mute's end, "" for ever. */
function untilText(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t) || t >= Date.parse('9000-01-01T00:00:00Z')) return '';
  const d = new Date(t);
  const sameDay = d.toDateString() === new Date().toDateString();
  const when = sameDay ? timeOf(t) : `${d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' })} ${timeOf(t)}`;
  return ` until ${when}`;
}

// ---------------------------------------------------------------------------
// Sign in / create account

/**
 * renderLogin shows the sign-in form in root. onSubmit(mode, username,
 * password, displayName) signs in or registers, throwing an Error whose
 * message is shown.
 */
export function renderLogin(root, { onSubmit, notice }) {
  const username = h('input', {
    id: 'f-username', name: 'username', 'data-testid': 'username', autocomplete: 'username',
    autocapitalize: 'none', spellcheck: 'false', required: true, maxlength: 32,
  });
  const password = h('input', {
    id: 'f-password', name: 'password', type: 'password', 'data-testid': 'password',
    autocomplete: 'current-password', required: true, maxlength: 1024,
  });
  const display = h('input', { id: 'f-display', name: 'display_name', autocomplete: 'nickname', maxlength: 64 });
  const error = h('p', { class: 'form-error', role: 'alert' });
  if (notice) error.textContent = notice;
  const loginBtn = h('button', { type: 'submit', class: 'btn primary', 'data-testid': 'login' }, 'Sign in');
  const registerBtn = h('button', { type: 'button', class: 'btn', 'data-testid': 'register' }, 'Create account');

  let busy = false;
  async function go(mode) {
    if (busy) return;
    const u = username.value.trim();
    const p = password.value;
    error.textContent = '';
    if (!/^[a-zA-Z0-9_.]{3,32}$/.test(u)) {
      error.textContent = 'A username is 3 to 32 letters, digits, “_” or “.”.';
      username.focus();
      return;
    }
    if (new TextEncoder().encode(p).length < 8) {
      error.textContent = 'A password has at least 8 characters.';
      password.focus();
      return;
    }
    busy = true;
    loginBtn.disabled = registerBtn.disabled = true;
    try {
      await onSubmit(mode, u, p, display.value.trim());
    } catch (e) {
      error.textContent = e.message || String(e);
    } finally {
      busy = false;
      loginBtn.disabled = registerBtn.disabled = false;
    }
  }

  const form = h('form', { class: 'login-form', novalidate: true, 'aria-label': 'Sign in' },
    h('label', { for: 'f-username' }, 'Username'), username,
    h('label', { for: 'f-password' }, 'Password'), password,
    h('label', { for: 'f-display' }, 'Display name ', h('span', { class: 'hint', text: '(new accounts, optional)' })), display,
    error,
    h('div', { class: 'login-actions' }, loginBtn, registerBtn),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go('login');
  });
  registerBtn.addEventListener('click', () => go('register'));

  root.replaceChildren(h('main', { class: 'login' },
    h('div', { class: 'login-card' },
      h('div', { class: 'login-brand' }, brand()),
      h('p', { class: 'tagline', text: 'Real-time chat. Sign in, or create an account with one click.' }),
      form,
    ),
  ));
  username.focus();
}

// ---------------------------------------------------------------------------
// The app

export class AppView {
  constructor(root, chat, { onSignOut }) {
    this.root = root;
    this.chat = chat;
    this.onSignOut = onSignOut;
    this.drafts = new Map();
    this.listItems = new Map();
    this.msgItems = new Map();
    this.parts = new WeakMap();
    this.staged = new Map(); // cid -> Files attached in the composer, not sent yet
    this.trayUrls = [];
    this.previews = new Map(); // cmid -> object URL of a photo being uploaded
    this.refreshedUrls = new Set(); // media URLs that came from a refresh
    this.mediaBroken = new Set(); // media ids whose fresh URLs failed too
    this.openCid = undefined;
    this.forceBottom = false;
    this.offs = [];
    this.#build();

    const listen = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      this.offs.push(() => target.removeEventListener(type, fn, opts));
    };
    this.offs.push(
      chat.on('change', () => this.render()),
      chat.on('notice', (t) => this.toast(t)),
      chat.on('incoming', (c, m) => this.#notify(c, m)),
      chat.on('closed', () => { if (location.hash) history.replaceState(null, '', location.pathname); }),
    );
    listen(window, 'hashchange', () => this.#route());
    listen(document, 'visibilitychange', () => this.#checkRead());
    listen(window, 'focus', () => this.#checkRead());
    listen(window, 'resize', () => this.#checkRead());
    // Paste a photo or a file into the open chat.
    listen(document, 'paste', (e) => this.#onPaste(e));
    // A file dropped anywhere else must not replace the app with itself.
    listen(window, 'dragover', (e) => {
      if (!dragsFiles(e)) return;
      e.preventDefault();
      if (!this.pane.contains(e.target) || !this.composer) e.dataTransfer.dropEffect = 'none';
    });
    listen(window, 'drop', (e) => { if (dragsFiles(e)) e.preventDefault(); });
    this.#route();
    this.render();
  }

  destroy() {
    for (const off of this.offs.splice(0)) off();
    clearTimeout(this.toastTimer);
    clearTimeout(this.searchTimer);
    for (const d of document.querySelectorAll('dialog')) d.remove();
    for (const u of this.trayUrls) URL.revokeObjectURL(u);
    for (const u of this.previews.values()) URL.revokeObjectURL(u);
    this.previews.clear();
  }

  #route() {
    const m = /^#\/c\/([A-Za-z0-9-]{1,64})$/.exec(location.hash);
    const id = m ? m[1] : null;
    if (!this.chat.open(id) && id && this.chat.listState === 'ready') {
      history.replaceState(null, '', location.pathname);
    }
  }

  go(cid) {
    const target = cid ? `#/c/${cid}` : '';
    if (location.hash !== target) location.hash = target;
    else this.#route();
  }

  // ---- skeleton ----

  #build() {
    const chat = this.chat;
    this.connText = h('span', { class: 'conn-text' });
    this.conn = h('span', { class: 'conn', 'data-testid': 'connection', role: 'status', 'aria-live': 'polite' },
      h('span', { class: 'conn-dot', 'aria-hidden': 'true' }), this.connText);
    this.bell = h('button', {
      type: 'button', class: 'icon-btn', title: 'Notify me of new messages', 'aria-label': 'Enable notifications', hidden: true,
      onclick: async () => {
        try { await Notification.requestPermission(); } catch { /* unsupported */ }
        this.render();
        // Allowed: subscribe to Web Push too (nothing happens otherwise).
        this.chat.push.sync();
      },
    }, icon('bell'));
    const me = chat.me;
    const topbar = h('header', { class: 'topbar' },
      brand(),
      this.conn,
      h('span', { class: 'spacer' }),
      this.bell,
      h('span', { class: 'me', title: `Signed in as @${me.username}` }, avatar(me.id, me.display_name || me.username, 'small'),
        h('span', { class: 'me-name', text: me.display_name || me.username })),
      h('button', { type: 'button', class: 'icon-btn', title: 'Sign out', 'aria-label': 'Sign out', onclick: () => this.onSignOut() }, icon('logout')),
    );

    // Sidebar: find people, new group, the conversation list.
    this.search = h('input', {
      type: 'search', 'data-testid': 'search-user', placeholder: 'Username', 'aria-label': 'Find someone by username',
      autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: 33, enterkeyhint: 'go',
    });
    this.startBtn = h('button', { type: 'submit', class: 'btn primary small', 'data-testid': 'start-chat' }, 'Chat');
    this.suggest = h('ul', { class: 'suggest', role: 'listbox', hidden: true, 'aria-label': 'People' });
    const startForm = h('form', { class: 'start-chat', role: 'search' }, this.search, this.startBtn);
    startForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#startChat(this.search.value);
    });
    this.search.addEventListener('input', () => this.#suggest());
    this.search.addEventListener('keydown', (e) => { if (e.key === 'Escape') this.#hideSuggest(); });
    this.search.addEventListener('blur', () => setTimeout(() => this.#hideSuggest(), 200));

    this.list = h('nav', { class: 'conv-list', 'aria-label': 'Conversations' });
    this.listEmpty = h('p', { class: 'list-empty' });
    this.sidebar = h('aside', { class: 'sidebar' },
      h('div', { class: 'sidebar-tools' },
        startForm,
        this.suggest,
        h('button', { type: 'button', class: 'btn ghost small new-group', onclick: () => this.#groupDialog() }, icon('group'), 'New group'),
      ),
      this.list,
      this.listEmpty,
    );
    this.pane = h('section', { class: 'chat', 'aria-label': 'Chat' });
    // Drop files onto the chat to attach them.
    this.pane.addEventListener('dragover', (e) => {
      if (!this.composer || !dragsFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
      this.pane.classList.add('dropping');
    });
    this.pane.addEventListener('dragleave', (e) => {
      if (!e.relatedTarget || !this.pane.contains(e.relatedTarget)) this.pane.classList.remove('dropping');
    });
    this.pane.addEventListener('drop', (e) => {
      this.pane.classList.remove('dropping');
      if (!this.composer || !dragsFiles(e)) return;
      e.preventDefault();
      this.#stage(this.openCid, filesOf(e.dataTransfer));
    });
    this.main = h('div', { class: 'main', 'data-view': 'list' }, this.sidebar, this.pane);
    this.toastEl = h('div', { class: 'toast', role: 'status', hidden: true });
    this.root.replaceChildren(h('div', { class: 'shell' }, topbar, this.main, this.toastEl));
  }

  toast(text) {
    setText(this.toastEl, text);
    this.toastEl.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => { this.toastEl.hidden = true; }, 5000);
  }

  // ---- render ----

  render() {
    const chat = this.chat;
    const state = chat.connState;
    setAttr(this.conn, 'data-state', state);
    setText(this.connText, CONN_TEXT[state] || state);
    this.bell.hidden = !('Notification' in window) || Notification.permission !== 'default';
    setAttr(this.main, 'data-view', chat.openId ? 'chat' : 'list');
    // Muted conversations are not in the count, as in the server's badge.
    const unread = chat.totalUnread();
    const title = unread ? `(${unread}) Parley` : 'Parley';
    if (document.title !== title) document.title = title;
    this.#appBadge(unread);
    this.#renderList();
    this.#renderChat();
  }

  /**
   * appBadge puts the unread count on the app's icon where the Badging
   * API exists (an installed app): reading here lowers it at once, as a
   * badge push does for reading on another device.
   */
  #appBadge(n) {
    if (this.badgeShown === n || !navigator.setAppBadge) return;
    this.badgeShown = n;
    try {
      (n ? navigator.setAppBadge(n) : navigator.clearAppBadge()).catch(() => {});
    } catch {
      // Not supported here.
    }
  }

  #renderList() {
    const chat = this.chat;
    const convs = chat.sortedConversations();
    let cursor = this.list.firstChild;
    const seen = new Set();
    for (const c of convs) {
      let el = this.listItems.get(c.id);
      if (!el) {
        el = this.#listItem(c);
        this.listItems.set(c.id, el);
      }
      this.#updateListItem(el, c);
      seen.add(c.id);
      if (el !== cursor) this.list.insertBefore(el, cursor);
      else cursor = cursor.nextSibling;
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    for (const id of this.listItems.keys()) if (!seen.has(id)) this.listItems.delete(id);
    this.listEmpty.hidden = convs.length > 0;
    setText(this.listEmpty, chat.listState === 'loading'
      ? 'Loading your conversations…'
      : 'No conversations yet. Type a username above and press Chat to start one.');
  }

  #listItem(c) {
    const av = h('span', { class: 'avatar-wrap' });
    const title = h('span', { class: 'conv-title' });
    const time = h('span', { class: 'conv-time' });
    const preview = h('span', { class: 'conv-preview' });
    const bottom = h('span', { class: 'conv-bottom' }, preview);
    const top = h('span', { class: 'conv-top' }, title, time);
    const el = h('a', { class: 'conv', href: `#/c/${c.id}`, 'data-testid': 'conversation', 'data-conversation-id': c.id },
      av,
      h('span', { class: 'conv-main' }, top, bottom));
    this.parts.set(el, { av, title, time, top, preview, bottom, badge: null, muted: null, avKey: '' });
    return el;
  }

  #updateListItem(el, c) {
    const chat = this.chat;
    const p = this.parts.get(el);
    const other = c.type === 'direct' ? chat.other(c) : null;
    const name = chat.titleOf(c);
    const online = other && chat.presence.get(other.user_id)?.status === 'online';
    const avKey = `${name}|${online}`;
    if (p.avKey !== avKey) {
      p.avKey = avKey;
      const a = avatar(other ? other.user_id : c.id, name);
      p.av.replaceChildren(a);
      if (c.type === 'group') a.append(icon('group'));
      if (online) p.av.append(h('span', { class: 'presence-dot', title: 'online' }));
    }
    setText(p.title, name);
    setText(p.time, listTime(c.last_message?.created_at || c.updated_at));
    setAttr(el, 'aria-current', chat.openId === c.id ? 'true' : null);

    // Preview: someone typing, else what this user is sending, else the
    // last stored message.
    const typists = chat.typists(c.id);
    const pending = chat.pendingOf(c.id);
    let text;
    let cls = 'conv-preview';
    if (typists.length) {
      text = c.type === 'group' ? `${chat.nameOf(typists[0])} is typing…` : 'typing…';
      cls += ' is-typing';
    } else if (pending.length) {
      text = `You: ${describe(pending[pending.length - 1])}`;
      cls += ' is-pending';
    } else if (c.last_message) {
      const m = c.last_message;
      const who = m.sender_id === chat.me.id ? 'You: ' : c.type === 'group' ? `${chat.nameOf(m.sender_id)}: ` : '';
      text = who + describe(m);
    } else {
      text = c.type === 'group' ? 'Group created' : 'No messages yet';
      cls += ' is-empty';
    }
    setText(p.preview, text.length > 120 ? `${text.slice(0, 120)}…` : text);
    if (p.preview.className !== cls) p.preview.className = cls;

    const muted = chat.isMuted(c);
    if (muted && !p.muted) {
      p.muted = h('span', { class: 'conv-muted', 'data-testid': 'muted', title: 'Muted' }, icon('bellOff', 'Muted'));
      p.top.insertBefore(p.muted, p.time);
    } else if (!muted && p.muted) {
      p.muted.remove();
      p.muted = null;
    }
    setAttr(el, 'data-muted', muted ? 'true' : null);

    const n = c.unread_count || 0;
    if (n > 0) {
      if (!p.badge) {
        p.badge = h('span', { class: 'badge', 'data-testid': 'unread' });
        p.bottom.append(p.badge);
      }
      setText(p.badge, n > 99 ? '99+' : String(n));
      setAttr(p.badge, 'aria-label', `${n} unread${muted ? ', muted' : ''}`);
      p.badge.classList.toggle('is-muted', muted);
    } else if (p.badge) {
      p.badge.remove();
      p.badge = null;
    }
  }

  // ---- chat pane ----

  #renderChat() {
    const chat = this.chat;
    const cid = chat.openId;
    if (cid !== this.openCid) {
      this.openCid = cid;
      this.msgItems.clear();
      this.typingEl = null;
      if (cid) this.#buildChat(cid);
      else this.#buildEmpty();
    }
    if (!cid) return;
    const c = chat.conversations.get(cid);
    if (!c) return;
    this.#renderHead(c);
    const before = this.#captureScroll();
    this.#renderMessages(c);
    this.#renderTyping(c);
    this.#restoreScroll(before);
    this.#checkRead();
    const L = chat.loaded.get(cid);
    // Fill the screen, and keep loading while the top is in view.
    if (L && !L.loading && L.hasOlder && !L.loadingOlder
      && (this.scroller.scrollHeight <= this.scroller.clientHeight + 40 || (this.scroller.scrollTop < 200 && !this.forceBottom))) {
      chat.loadOlder(cid);
    }
  }

  #buildEmpty() {
    this.scroller = null;
    this.composer = null;
    this.tray = null;
    this.pane.replaceChildren(h('div', { class: 'chat-empty' },
      icon('chat'),
      h('h2', { text: 'Your messages' }),
      h('p', { text: 'Pick a conversation, or type a username and press Chat to start one.' })));
  }

  #buildChat(cid) {
    const chat = this.chat;
    this.headAvatar = h('span', { class: 'avatar-wrap' });
    this.headTitle = h('h2', { class: 'chat-title' });
    this.headSub = h('p', { class: 'chat-sub' });
    this.headAvKey = '';
    this.infoBtn = h('button', { type: 'button', class: 'icon-btn', title: 'Members', 'aria-label': 'Members', onclick: () => this.#membersDialog(cid) }, icon('info'));
    this.muteBtn = h('button', {
      type: 'button', class: 'icon-btn mute-btn', 'data-testid': 'mute', onclick: () => this.#muteDialog(cid),
    });
    this.muteKey = '';
    const head = h('header', { class: 'chat-head' },
      h('a', { class: 'icon-btn back', href: '#', title: 'Back', 'aria-label': 'Back to conversations' }, icon('back')),
      this.headAvatar,
      h('div', { class: 'chat-head-text' }, this.headTitle, this.headSub),
      this.muteBtn,
      this.infoBtn,
    );
    this.historyTop = h('div', { class: 'history-top' });
    this.msgList = h('div', { class: 'messages', role: 'log', 'aria-label': 'Messages' });
    this.scroller = h('div', { class: 'scroller' }, this.historyTop, this.msgList);
    let scrollQueued = false;
    this.scroller.addEventListener('scroll', () => {
      if (scrollQueued) return;
      scrollQueued = true;
      setTimeout(() => {
        scrollQueued = false;
        if (!this.scroller) return;
        if (this.scroller.scrollTop < 200) chat.loadOlder(cid);
        this.#checkRead();
      }, 100);
    }, { passive: true });
    this.typingSlot = h('div', { class: 'typing-slot', 'aria-live': 'polite' });

    this.composer = h('textarea', {
      'data-testid': 'composer', rows: 1, placeholder: 'Write a message', 'aria-label': 'Message',
      enterkeyhint: 'send', autocomplete: 'off',
    });
    this.composer.value = this.drafts.get(cid) || '';
    const send = h('button', { type: 'submit', class: 'send', 'data-testid': 'send', title: 'Send', 'aria-label': 'Send' }, icon('send'));
    // Attach: the button opens the file picker; a paste or a drop onto the
    // chat attaches too. Attached files wait in the tray above the
    // composer, whose text becomes the (first file's) caption.
    const fileInput = h('input', { type: 'file', multiple: true, hidden: true, tabindex: '-1', 'data-testid': 'attach-input' });
    fileInput.addEventListener('change', () => {
      this.#stage(cid, [...(fileInput.files || [])]);
      fileInput.value = '';
    });
    const attach = h('button', {
      type: 'button', class: 'icon-btn attach', 'data-testid': 'attach',
      title: 'Attach a photo, video or file', 'aria-label': 'Attach a photo, video or file',
      onclick: () => fileInput.click(),
    }, icon('attach'));
    this.tray = h('div', { class: 'tray', 'aria-label': 'Attached files', hidden: true });
    const form = h('form', { class: 'composer' }, attach, fileInput, this.composer, send);
    this.composer.addEventListener('input', () => {
      const v = this.composer.value;
      if (v) this.drafts.set(cid, v);
      else this.drafts.delete(cid);
      chat.typed(cid, v);
      this.#autosize();
    });
    this.composer.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !matchMedia('(pointer: coarse)').matches) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.composer.value;
      const files = this.staged.get(cid) || [];
      if (!text.trim() && !files.length) return;
      this.composer.value = '';
      this.drafts.delete(cid);
      this.staged.delete(cid);
      this.#renderTray();
      this.#autosize();
      this.forceBottom = true;
      const restore = (err) => {
        this.toast(err.message);
        if (!this.composer.value) this.composer.value = text;
      };
      if (files.length) {
        const caption = text.trim() ? text : '';
        files.forEach((f, i) => chat.sendMedia(cid, f, i === 0 ? caption : '').catch(restore));
      } else {
        chat.send(cid, text).catch(restore);
      }
      this.composer.focus();
    });
    this.pane.replaceChildren(head, this.scroller, this.typingSlot, this.tray, form);
    this.#renderTray();
    this.forceBottom = true;
    this.#autosize();
    if (matchMedia('(pointer: fine)').matches) this.composer.focus({ preventScroll: true });
  }

  // ---- attaching ----

  /** stage attaches files to the composer of cid (up to MAX_STAGED). */
  #stage(cid, files) {
    if (!cid || !files.length || cid !== this.openCid) return;
    const list = this.staged.get(cid) || [];
    const room = MAX_STAGED - list.length;
    if (files.length > room) this.toast(`At most ${MAX_STAGED} files at a time.`);
    list.push(...files.slice(0, Math.max(0, room)));
    if (list.length) this.staged.set(cid, list);
    this.#renderTray();
    this.composer?.focus({ preventScroll: true });
  }

  #unstage(cid, file) {
    const list = (this.staged.get(cid) || []).filter((f) => f !== file);
    if (list.length) this.staged.set(cid, list);
    else this.staged.delete(cid);
    this.#renderTray();
  }

  #renderTray() {
    if (!this.tray) return;
    for (const u of this.trayUrls.splice(0)) URL.revokeObjectURL(u);
    const cid = this.openCid;
    const files = (cid && this.staged.get(cid)) || [];
    this.tray.hidden = !files.length;
    if (this.composer) this.composer.placeholder = files.length ? 'Add a caption' : 'Write a message';
    this.tray.replaceChildren(...files.map((f) => {
      let thumb;
      if (kindOf(f.type) === 'image') {
        const url = URL.createObjectURL(f);
        this.trayUrls.push(url);
        thumb = h('img', { class: 'chip-thumb', src: url, alt: '' });
      } else {
        thumb = h('span', { class: 'chip-thumb' }, icon('file'));
      }
      return h('div', { class: 'chip', 'data-testid': 'attachment' },
        thumb,
        h('span', { class: 'chip-text' },
          h('span', { class: 'chip-name', text: f.name || 'file' }),
          h('span', { class: 'chip-size', text: humanSize(f.size) })),
        h('button', {
          type: 'button', class: 'icon-btn chip-remove', title: 'Remove', 'aria-label': `Remove ${f.name || 'file'}`,
          onclick: () => this.#unstage(cid, f),
        }, icon('close')));
    }));
  }

  #onPaste(e) {
    if (!this.composer || !this.openCid) return;
    // Pasting into another field (the search, a dialog) is that field's.
    const t = e.target;
    if (t !== this.composer && t?.closest?.('input, textarea, dialog, [contenteditable]')) return;
    const files = filesOf(e.clipboardData);
    if (!files.length) return;
    // A copied picture often comes with its HTML: the picture is enough.
    if (!e.clipboardData.types?.includes('text/plain')) e.preventDefault();
    this.#stage(this.openCid, files);
  }

  #autosize() {
    const t = this.composer;
    if (!t) return;
    t.rows = 1;
    while (t.rows < 6 && t.scrollHeight > t.clientHeight + 1) t.rows += 1;
  }

  #renderHead(c) {
    const chat = this.chat;
    const other = c.type === 'direct' ? chat.other(c) : null;
    const name = chat.titleOf(c);
    const avKey = `${c.id}|${name}`;
    if (this.headAvKey !== avKey) {
      this.headAvKey = avKey;
      const a = avatar(other ? other.user_id : c.id, name);
      if (c.type === 'group') a.append(icon('group'));
      this.headAvatar.replaceChildren(a);
    }
    setText(this.headTitle, name);
    let sub;
    if (other) {
      const p = chat.presence.get(other.user_id);
      const u = chat.users.get(other.user_id);
      if (p?.status === 'online') sub = 'online';
      else if (p) sub = lastSeen(p.last_seen_at);
      else sub = u ? `@${u.username}` : '';
      setAttr(this.headSub, 'data-online', p?.status === 'online' ? 'true' : null);
    } else {
      const others = c.members.filter((m) => m.user_id !== chat.me.id);
      const on = others.filter((m) => chat.presence.get(m.user_id)?.status === 'online').length;
      sub = `${c.members.length} members${on ? `, ${on} online` : ''}`;
      setAttr(this.headSub, 'data-online', null);
    }
    setText(this.headSub, sub);
    this.infoBtn.hidden = c.type !== 'group';
    const muted = chat.isMuted(c);
    const muteKey = muted ? `m|${c.muted_until}` : 'u';
    if (this.muteKey !== muteKey) {
      this.muteKey = muteKey;
      const label = muted ? `Notifications muted${untilText(c.muted_until)}` : 'Mute notifications';
      this.muteBtn.replaceChildren(icon(muted ? 'bellOff' : 'bell'));
      setAttr(this.muteBtn, 'title', label);
      setAttr(this.muteBtn, 'aria-label', label);
      setAttr(this.muteBtn, 'aria-pressed', muted ? 'true' : 'false');
    }
  }

  #renderMessages(c) {
    const chat = this.chat;
    const { stored, pending, state: L } = chat.messagesOf(c.id);
    if (!L || L.loading) setText(this.historyTop, 'Loading messages…');
    else if (L.loadingOlder) setText(this.historyTop, 'Loading earlier messages…');
    else if (L.hasOlder) setText(this.historyTop, '');
    else setText(this.historyTop, stored.length || pending.length ? 'This is the beginning of the conversation.' : 'No messages yet. Say hello!');

    const group = c.type === 'group';
    const items = [];
    let lastDay = null;
    let lastSender = null;
    const day = (t) => {
      const k = dayKey(t);
      if (k !== lastDay) {
        items.push({ key: `d-${k}`, day: true, t });
        lastDay = k;
        lastSender = null;
      }
    };
    for (const m of stored) {
      const t = Date.parse(m.created_at);
      day(t);
      const mine = m.sender_id === chat.me.id;
      items.push({
        key: mine && m.client_message_id ? `o-${m.client_message_id}` : `m-${m.id}`,
        t, mine, text: m.text ?? '', seq: m.seq,
        status: mine ? chat.statusOf(c, m) : null,
        sender: group && !mine && m.sender_id !== lastSender ? m.sender_id : null,
        kind: m.kind, media: m.media || null,
      });
      lastSender = m.sender_id;
    }
    const previewing = new Set();
    for (const e of pending) {
      day(e.created_at);
      const media = isMediaKind(e.kind);
      const blob = media && !e.media ? chat.blobOf(e) : null;
      if (blob) previewing.add(e.client_message_id);
      items.push({
        key: `o-${e.client_message_id}`, t: e.created_at, mine: true, text: e.text, seq: null,
        status: 'pending', error: e.error || null, cmid: e.client_message_id,
        kind: e.kind, media: e.media || null, file: e.file || null, blob,
        upload: media && !e.media && !e.error ? chat.uploadOf(e.client_message_id) || { state: 'waiting' } : null,
      });
      lastSender = chat.me.id;
    }
    // Local pictures of uploads that are done (or gone) are let go.
    for (const [cmid, url] of this.previews) {
      if (!previewing.has(cmid)) {
        URL.revokeObjectURL(url);
        this.previews.delete(cmid);
      }
    }

    let cursor = this.msgList.firstChild;
    const seen = new Set();
    for (const it of items) {
      let el = this.msgItems.get(it.key);
      if (!el) {
        el = it.day ? this.#dayEl() : this.#msgEl(it);
        this.msgItems.set(it.key, el);
      }
      if (it.day) setText(el.firstChild, dayLabel(it.t));
      else this.#updateMsg(el, it);
      seen.add(it.key);
      if (el !== cursor) this.msgList.insertBefore(el, cursor);
      else cursor = cursor.nextSibling;
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    for (const k of this.msgItems.keys()) if (!seen.has(k)) this.msgItems.delete(k);
  }

  #dayEl() {
    return h('div', { class: 'day', role: 'separator' }, h('span'));
  }

  #msgEl(it) {
    const text = h('span', { class: 'text' });
    text.textContent = it.text;
    const time = h('time', { class: 'time' });
    const status = h('span', { class: 'status' });
    const sender = h('span', { class: 'sender', hidden: true });
    const extra = h('span', { class: 'msg-error', hidden: true });
    const media = h('div', { class: 'media', hidden: true });
    const upload = h('div', { class: 'upload', hidden: true });
    const bubble = h('div', { class: 'bubble' }, sender, media, upload, text, h('span', { class: 'meta' }, time, status));
    const el = h('div', { class: `msg ${it.mine ? 'mine' : 'theirs'}`, 'data-testid': 'message' }, bubble, extra);
    this.parts.set(el, { text, time, status, sender, extra, media, upload, up: null, statusKey: '', errKey: '', mediaKey: '' });
    return el;
  }

  #updateMsg(el, it) {
    const p = this.parts.get(el);
    setAttr(el, 'data-seq', it.seq ?? null);
    setAttr(el, 'data-status', it.mine ? it.status : null);
    setText(p.text, it.text);
    const hasMedia = isMediaKind(it.kind);
    el.classList.toggle('has-media', hasMedia);
    p.text.hidden = hasMedia && !it.text;
    this.#updateMedia(p, it, hasMedia);
    setText(p.time, timeOf(it.t));
    setAttr(p.time, 'datetime', new Date(it.t).toISOString());
    if (it.mine && p.statusKey !== it.status) {
      p.statusKey = it.status;
      p.status.replaceChildren(icon(STATUS_ICON[it.status], STATUS_TEXT[it.status]));
      p.status.className = `status s-${it.status}`;
      setAttr(p.status, 'title', STATUS_TEXT[it.status]);
    }
    if (it.sender) {
      p.sender.hidden = false;
      setText(p.sender, this.chat.nameOf(it.sender));
      p.sender.className = `sender h${hue(it.sender)}`;
    } else if (!p.sender.hidden) {
      p.sender.hidden = true;
    }
    const errKey = it.error || '';
    if (p.errKey !== errKey) {
      p.errKey = errKey;
      el.classList.toggle('failed', !!it.error);
      if (it.error) {
        p.extra.hidden = false;
        p.extra.replaceChildren(
          h('span', { text: `Not sent: ${it.error}` }),
          h('button', { type: 'button', class: 'link', onclick: () => this.chat.discard(it.cmid) }, 'Delete'),
        );
      } else {
        p.extra.hidden = true;
        p.extra.replaceChildren();
      }
    }
  }

  // ---- media in messages ----

  /** updateMedia shows a message's photo, video or file, and its upload. */
  #updateMedia(p, it, hasMedia) {
    const m = it.media;
    let key = '';
    if (hasMedia && m) key = `${it.kind}|${m.id}|${m.url}|${m.thumbnail_url}|${this.mediaBroken.has(m.id)}`;
    else if (hasMedia) key = `local|${it.cmid}|${it.kind}|${it.blob ? 'blob' : ''}`;
    if (p.mediaKey !== key) {
      p.mediaKey = key;
      p.media.hidden = !key;
      p.media.className = `media media-${it.kind}`;
      p.media.replaceChildren(!key ? '' : m ? this.#mediaView(it.kind, m, it.text) : this.#localView(it));
    }
    const u = it.upload;
    p.upload.hidden = !u;
    if (!u) {
      // Only an upload under way has a progress bar.
      if (p.up) {
        p.up = null;
        p.upload.replaceChildren();
      }
      return;
    }
    if (!p.up) {
      const cmid = it.cmid;
      p.up = {
        bar: h('progress', { class: 'upload-bar', 'data-testid': 'upload-progress', max: 1 }),
        text: h('span', { class: 'upload-text' }),
        retry: h('button', { type: 'button', class: 'link', 'data-testid': 'upload-retry', hidden: true, onclick: () => this.chat.retryUpload(cmid) }, 'Retry now'),
        cancel: h('button', { type: 'button', class: 'link', 'data-testid': 'upload-cancel', onclick: () => this.chat.cancelUpload(cmid) }, 'Cancel'),
      };
      p.upload.replaceChildren(p.up.bar, h('span', { class: 'upload-row' }, p.up.text, p.up.retry, p.up.cancel));
    }
    const { bar, text, retry } = p.up;
    setAttr(bar, 'data-state', u.state);
    const total = u.total || it.file?.size || 0;
    if ((u.state === 'uploading' || u.state === 'paused') && total > 0) {
      setAttr(bar, 'max', total);
      setAttr(bar, 'value', Math.min(u.sent || 0, total));
      setAttr(bar, 'aria-label', `Uploaded ${humanSize(u.sent || 0)} of ${humanSize(total)}`);
    } else {
      setAttr(bar, 'value', null); // indeterminate: waiting, or the server at work
      setAttr(bar, 'aria-label', 'Uploading');
    }
    let label = UPLOAD_TEXT[u.state] || `${humanSize(u.sent || 0)} of ${humanSize(total)}`;
    if (u.state === 'paused') label = `Paused (${u.error || 'offline'}). `;
    setText(text, label);
    retry.hidden = u.state !== 'paused';
  }

  /** mediaView: a stored photo (thumbnail), video (player) or file (link). */
  #mediaView(kind, m, caption) {
    const name = m.name || 'file';
    if (this.mediaBroken.has(m.id)) {
      return h('button', {
        type: 'button', class: 'media-broken', title: 'Try again',
        onclick: () => {
          this.mediaBroken.delete(m.id);
          this.chat.refreshMedia(m.id).then(() => this.render());
        },
      }, icon('file'), h('span', { text: `${kind === 'video' ? 'Video' : kind === 'image' ? 'Photo' : 'File'} not available` }));
    }
    if (kind === 'image') {
      const size = fit(m.width, m.height, THUMB_PX);
      const src = m.thumbnail_url || m.url;
      const img = h('img', {
        class: 'thumb', 'data-testid': 'media-thumbnail', 'data-media-id': m.id, src, alt: name,
        decoding: 'async', width: size?.width, height: size?.height,
      });
      img.addEventListener('error', () => this.#mediaFailed(m.id, src, (f) => f.thumbnail_url || f.url));
      this.#keepBottom(img, 'load');
      return h('button', { type: 'button', class: 'media-open', 'aria-label': `Open the photo ${name}`, onclick: () => this.#viewer(m, caption) }, img);
    }
    if (kind === 'video') {
      const size = fit(m.width, m.height, THUMB_PX);
      const v = h('video', {
        class: 'video', 'data-testid': 'media-video', 'data-media-id': m.id, controls: true, preload: 'metadata',
        playsinline: true, poster: m.thumbnail_url || undefined, src: m.url, width: size?.width, height: size?.height,
        'aria-label': name,
      });
      v.addEventListener('error', () => this.#mediaFailed(m.id, m.url, (f) => f.url));
      this.#keepBottom(v, 'loadedmetadata');
      return v;
    }
    const a = h('a', { class: 'file', 'data-testid': 'media-file', 'data-media-id': m.id, href: m.url, download: name, rel: 'noopener' },
      h('span', { class: 'file-icon' }, icon('file')),
      h('span', { class: 'file-text' },
        h('span', { class: 'file-name', text: name }),
        h('span', { class: 'file-size', text: humanSize(m.size) })),
      icon('download'));
    a.addEventListener('click', (e) => {
      // A link shown for long has expired: fetch a fresh one first.
      if (!expired(a.href)) return;
      e.preventDefault();
      this.chat.refreshMedia(m.id).then((f) => {
        if (!f) {
          this.toast('That file is not available.');
          return;
        }
        const t = h('a', { href: f.url, download: f.name || name, hidden: true });
        document.body.append(t);
        t.click();
        t.remove();
      });
    });
    return a;
  }

  /** localView: a photo, video or file of one's own, still uploading. */
  #localView(it) {
    const f = it.file || {};
    if (it.blob && it.kind === 'image') {
      let url = this.previews.get(it.cmid);
      if (!url) {
        url = URL.createObjectURL(it.blob);
        this.previews.set(it.cmid, url);
      }
      const img = h('img', { class: 'thumb local', 'data-testid': 'media-preview', src: url, alt: f.name || '' });
      this.#keepBottom(img, 'load');
      return img;
    }
    return h('span', { class: 'file local' },
      h('span', { class: 'file-icon' }, icon('file')),
      h('span', { class: 'file-text' },
        h('span', { class: 'file-name', text: f.name || 'file' }),
        h('span', { class: 'file-size', text: humanSize(f.size) })));
  }

  /**
   * keepBottom: a picture or video without a known size grows when it
   * loads; at the bottom of the chat, the newest message stays in view.
   */
  #keepBottom(el, type) {
    el.addEventListener(type, () => {
      const s = this.scroller;
      if (!s || !el.isConnected || !s.contains(el)) return;
      const gap = s.scrollHeight - s.scrollTop - s.clientHeight;
      if (gap > 0 && gap < el.offsetHeight + 80) s.scrollTop = s.scrollHeight;
    }, { once: true });
  }

  /**
   * mediaFailed: a photo or video did not load, most likely because its
   * signed URL expired. Fresh URLs are fetched once per stale URL; when
   * those fail too, or the server gives the same one, it shows as
   * unavailable.
   */
  #mediaFailed(id, failed, pick) {
    const abs = (u) => new URL(u, location.href).href;
    if (this.refreshedUrls.has(abs(failed))) {
      this.mediaBroken.add(id);
      this.render();
      return;
    }
    this.chat.refreshMedia(id).then((f) => {
      const next = f && pick(f);
      if (!next || abs(next) === abs(failed)) {
        this.mediaBroken.add(id);
        this.render();
      } else {
        this.refreshedUrls.add(abs(next));
      }
    });
  }

  /** viewer shows a photo whole, over the app. */
  #viewer(m, caption) {
    for (const d of document.querySelectorAll('dialog.viewer')) d.close();
    const name = m.name || 'photo';
    const img = h('img', { class: 'viewer-img', 'data-testid': 'media-viewer-image', src: m.url, alt: name });
    let retried = false;
    img.addEventListener('error', () => {
      if (retried) return;
      retried = true;
      this.chat.refreshMedia(m.id).then((f) => { if (f?.url) img.src = f.url; });
    });
    const dl = h('a', { class: 'icon-btn', href: m.url, download: name, title: 'Download', 'aria-label': 'Download' }, icon('download'));
    const close = h('button', { type: 'button', class: 'icon-btn', 'data-testid': 'media-viewer-close', title: 'Close', 'aria-label': 'Close', onclick: () => dlg.close() }, icon('close'));
    const dlg = h('dialog', { class: 'viewer', 'data-testid': 'media-viewer', 'aria-label': name },
      h('div', { class: 'viewer-bar' }, h('span', { class: 'viewer-name', text: name }), dl, close),
      h('figure', { class: 'viewer-figure' }, img, caption ? h('figcaption', { text: caption }) : null));
    // A click beside the photo closes it, as Escape does.
    dlg.addEventListener('click', (e) => {
      if (e.target === dlg || e.target.classList.contains('viewer-figure')) dlg.close();
    });
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  }

  #renderTyping(c) {
    const chat = this.chat;
    const typists = chat.typists(c.id);
    if (!typists.length) {
      if (this.typingEl) {
        this.typingEl.remove();
        this.typingEl = null;
      }
      return;
    }
    if (!this.typingEl) {
      this.typingText = h('span');
      this.typingEl = h('div', { class: 'typing', 'data-testid': 'typing' },
        h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), this.typingText);
      this.typingSlot.append(this.typingEl);
    }
    const names = typists.map((u) => chat.nameOf(u));
    let text;
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else text = 'Several people are typing…';
    setText(this.typingText, text);
  }

  #captureScroll() {
    const s = this.scroller;
    if (!s) return null;
    const atBottom = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    let anchor = null;
    let offset = 0;
    if (!atBottom) {
      // The first message on screen stays put (not a date separator: the
      // one of its day moves up when older messages of that day arrive).
      for (const el of this.msgList.querySelectorAll('.msg')) {
        if (el.offsetTop + el.offsetHeight > s.scrollTop) {
          anchor = el;
          offset = el.offsetTop - s.scrollTop;
          break;
        }
      }
    }
    return { atBottom, anchor, offset };
  }

  #restoreScroll(b) {
    const s = this.scroller;
    if (!s || !b) return;
    if (this.forceBottom || b.atBottom) {
      s.scrollTop = s.scrollHeight;
      if (this.chat.loaded.get(this.openCid)?.loading === false) this.forceBottom = false;
    } else if (b.anchor?.isConnected) {
      s.scrollTop = b.anchor.offsetTop - b.offset;
    }
  }

  /** checkRead sends a read receipt for the newest message on screen. */
  #checkRead() {
    const cid = this.openCid;
    if (!cid || !this.scroller || document.visibilityState !== 'visible') return;
    const sr = this.scroller.getBoundingClientRect();
    if (sr.height < 10 || sr.width < 10) return; // hidden (phone list view)
    const els = this.msgList.querySelectorAll('.msg[data-seq]');
    for (let i = els.length - 1; i >= 0; i--) {
      const r = els[i].getBoundingClientRect();
      if (r.top < sr.bottom - 2 && r.bottom > sr.top + 2) {
        this.chat.markRead(cid, Number(els[i].dataset.seq));
        return;
      }
      if (r.bottom <= sr.top) return;
    }
  }

  // ---- people ----

  async #startChat(value) {
    const name = value.trim();
    if (!name) {
      this.search.focus();
      return;
    }
    this.#hideSuggest();
    this.startBtn.disabled = true;
    try {
      const c = await this.chat.startDirect(name);
      this.search.value = '';
      this.go(c.id);
    } catch (e) {
      this.toast(e.message);
    } finally {
      this.startBtn.disabled = false;
    }
  }

  #suggest() {
    clearTimeout(this.searchTimer);
    const q = this.search.value.trim();
    if (!q) {
      this.#hideSuggest();
      return;
    }
    this.searchTimer = setTimeout(async () => {
      let users;
      try {
        users = await this.chat.search(q);
      } catch {
        return;
      }
      if (this.search.value.trim() !== q) return;
      if (!users.length) {
        this.#hideSuggest();
        return;
      }
      this.suggest.replaceChildren(...users.slice(0, 8).map((u) => h('li', { role: 'option' },
        h('button', {
          type: 'button', class: 'suggest-item',
          onmousedown: (e) => e.preventDefault(),
          onclick: () => {
            this.search.value = u.username;
            this.#startChat(u.username);
          },
        }, avatar(u.id, u.display_name || u.username, 'small'),
        h('span', { class: 'suggest-name', text: u.display_name || u.username }),
        h('span', { class: 'suggest-user', text: `@${u.username}` })))));
      this.suggest.hidden = false;
    }, 200);
  }

  #hideSuggest() {
    this.suggest.hidden = true;
    this.suggest.replaceChildren();
  }

  #dialog(title, body, onClose) {
    const close = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close', onclick: () => dlg.close() }, icon('close'));
    const dlg = h('dialog', { class: 'dialog', 'aria-label': title },
      h('div', { class: 'dialog-head' }, h('h2', { text: title }), close), body);
    dlg.addEventListener('close', () => {
      dlg.remove();
      onClose?.();
    });
    document.body.append(dlg);
    dlg.showModal();
    return dlg;
  }

  #groupDialog() {
    const title = h('input', { id: 'g-title', required: true, maxlength: 128, placeholder: 'Trip planning' });
    const people = h('input', { id: 'g-people', placeholder: 'alice, bob', autocapitalize: 'none', spellcheck: 'false' });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const create = h('button', { type: 'submit', class: 'btn primary' }, 'Create group');
    const form = h('form', { class: 'dialog-form' },
      h('label', { for: 'g-title' }, 'Group name'), title,
      h('label', { for: 'g-people' }, 'People ', h('span', { class: 'hint', text: '(usernames, separated by commas or spaces)' })), people,
      error,
      h('div', { class: 'dialog-actions' }, create));
    const dlg = this.#dialog('New group', form);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.textContent = '';
      const t = title.value.trim();
      const names = people.value.split(/[\s,;]+/).map((s) => s.replace(/^@/, '')).filter(Boolean);
      if (!t) {
        error.textContent = 'Give the group a name.';
        return;
      }
      if (!names.length) {
        error.textContent = 'Add at least one person.';
        return;
      }
      create.disabled = true;
      try {
        const c = await this.chat.createGroup(t, names);
        dlg.close();
        if (c) this.go(c.id);
      } catch (err) {
        error.textContent = err.message;
      } finally {
        create.disabled = false;
      }
    });
    title.focus();
  }

  #membersDialog(cid) {
    const chat = this.chat;
    const c = chat.conversations.get(cid);
    if (!c) return;
    const list = h('ul', { class: 'member-list' });
    const fill = () => {
      const cur = chat.conversations.get(cid);
      if (!cur) return;
      list.replaceChildren(...cur.members.map((m) => {
        const u = chat.users.get(m.user_id);
        const p = chat.presence.get(m.user_id);
        const status = m.user_id === chat.me.id ? 'you' : p?.status === 'online' ? 'online' : p ? lastSeen(p.last_seen_at) : '';
        return h('li', { class: 'member' },
          avatar(m.user_id, chat.nameOf(m.user_id), 'small'),
          h('span', { class: 'member-name' },
            h('span', { text: chat.nameOf(m.user_id) }),
            h('span', { class: 'member-user', text: u ? `@${u.username}` : '' })),
          h('span', { class: 'member-meta', text: [m.role === 'admin' ? 'admin' : '', status].filter(Boolean).join(' · ') }));
      }));
    };
    fill();
    const off = chat.on('change', fill);
    const body = h('div', { class: 'dialog-form' }, list);
    if (chat.isAdmin(c)) {
      const who = h('input', { id: 'm-add', placeholder: 'username', autocapitalize: 'none', spellcheck: 'false' });
      const error = h('p', { class: 'form-error', role: 'alert' });
      const add = h('button', { type: 'submit', class: 'btn primary small' }, icon('plus'), 'Add');
      const form = h('form', { class: 'add-member' }, h('label', { for: 'm-add', class: 'sr-only' }, 'Add someone'), who, add);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        error.textContent = '';
        if (!who.value.trim()) return;
        add.disabled = true;
        try {
          await chat.addMember(cid, who.value);
          who.value = '';
        } catch (err) {
          error.textContent = err.message;
        } finally {
          add.disabled = false;
        }
      });
      body.append(h('h3', { text: 'Add someone' }), form, error);
    }
    const leave = h('button', { type: 'button', class: 'btn danger small' }, 'Leave group');
    leave.addEventListener('click', async () => {
      leave.disabled = true;
      try {
        await chat.leave(cid);
        dlg.close();
        this.go(null);
      } catch (err) {
        this.toast(err.message);
        leave.disabled = false;
      }
    });
    body.append(h('div', { class: 'dialog-actions' }, leave));
    const dlg = this.#dialog(c.title || 'Group', body, off);
  }

  // ---- muting ----

  #muteDialog(cid) {
    const chat = this.chat;
    const c = chat.conversations.get(cid);
    if (!c) return;
    const error = h('p', { class: 'form-error', role: 'alert' });
    const hour = 3600_000;
    const choice = (label, until) => {
      const b = h('button', { type: 'button', class: 'btn' }, label);
      b.addEventListener('click', async () => {
        for (const x of body.querySelectorAll('button')) x.disabled = true;
        error.textContent = '';
        try {
          await chat.setMuted(cid, typeof until === 'number' ? new Date(Date.now() + until) : until);
          dlg.close();
        } catch (err) {
          error.textContent = err.message;
          for (const x of body.querySelectorAll('button')) x.disabled = false;
        }
      });
      return b;
    };
    const muted = chat.isMuted(c);
    const body = h('div', { class: 'dialog-form' },
      h('p', { class: 'mute-state', text: muted
        ? `Muted${untilText(c.muted_until)}. No notifications, and its messages are not in the unread count.`
        : 'No notifications from this conversation, and its messages left out of the unread count.' }),
      h('div', { class: 'mute-options' },
        choice('For 1 hour', hour),
        choice('For 8 hours', 8 * hour),
        choice('For 1 week', 7 * 24 * hour),
        choice('Until I turn it back on', null)),
      error);
    if (muted) body.append(h('div', { class: 'dialog-actions' }, choice('Unmute', false)));
    const dlg = this.#dialog(muted ? 'Muted' : 'Mute notifications', body);
  }

  // ---- notifications ----

  #notify(c, m) {
    if (document.visibilityState !== 'hidden') return;
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const chat = this.chat;
    // Muted: nothing, as the server sends no push for it. With Web Push on
    // the hidden page told the server it is in the background, so the push
    // shows this message (the service worker): showing it here too would
    // alert twice.
    if (chat.isMuted(c) || chat.push.active) return;
    // As the server's push: a group's title, with the sender in the body.
    const title = c.type === 'group' ? chat.titleOf(c) : chat.nameOf(m.sender_id);
    let text = describe(m) || 'New message';
    if (text.length > 200) text = `${text.slice(0, 199)}…`;
    if (c.type === 'group') text = `${chat.nameOf(m.sender_id)}: ${text}`;
    // tag: one notification per conversation, the push's included.
    const options = { body: text, tag: c.id, renotify: true, icon: '/icon.svg', data: c.id };
    try {
      const n = new Notification(title, options);
      n.onclick = () => {
        window.focus();
        this.go(c.id);
        n.close();
      };
    } catch {
      // Some browsers (Android) only show notifications from a service
      // worker; its click handler opens the conversation.
      showNotification(title, options).catch(() => {});
    }
  }
}
