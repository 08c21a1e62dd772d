// Entry point: shows the sign-in form or the app, and switches between
// them when this tab or another one signs in or out.

import { Session } from './session.js';
import { Chat } from './chat.js';
import * as api from './api.js';
import { AppView, renderLogin } from './ui.js';
import { WebPush, registerWorker } from './push.js';

const root = document.getElementById('root');
const session = new Session();
let chat = null;
let view = null;
let signingOut = false;

const MESSAGES = {
  conflict: 'That username is taken. Pick another one, or sign in.',
  unauthenticated: 'Wrong username or password.',
  rate_limited: 'Too many attempts. Wait a moment and try again.',
  unavailable: 'The server cannot be reached. Check your connection.',
};

async function submit(mode, username, password, displayName) {
  let tokens;
  try {
    tokens = mode === 'register'
      ? await api.register(username, password, displayName)
      : await api.login(username, password);
  } catch (e) {
    throw new Error(MESSAGES[e.code] || e.message);
  }
  session.save(tokens);
  startApp();
}

function showLogin(notice) {
  stopApp();
  renderLogin(root, { onSubmit: submit, notice });
}

function startApp() {
  if (chat) return;
  if (!session.load()) {
    showLogin();
    return;
  }
  session.start();
  chat = new Chat(session);
  view = new AppView(root, chat, {
    onSignOut: async () => {
      const c = chat;
      stopApp();
      // A refresh while the push token is deleted must not restart the app.
      signingOut = true;
      try {
        await c.signOut();
      } finally {
        signingOut = false;
      }
      showLogin();
    },
  });
  chat.on('signedout', (e) => {
    session.clear();
    WebPush.forget();
    showLogin(e?.message || 'You were signed out.');
  });
  chat.start();
}

function stopApp() {
  if (!chat) return;
  view?.destroy();
  chat.stop();
  session.stop();
  chat = null;
  view = null;
}

// Another tab signed out (or this login was revoked), or signed in.
session.on('signedout', () => {
  if (!chat) return;
  WebPush.forget();
  showLogin('You were signed out.');
});
session.on('tokens', () => {
  if (!chat && !signingOut) startApp();
});

// The service worker shows push notifications; a click on one asks the
// window to open that conversation, which the router (#/c/<id>) does,
// also after a sign-in if the window shows the sign-in form.
registerWorker();
navigator.serviceWorker?.addEventListener('message', (e) => {
  const id = e.data?.type === 'parley.open' ? e.data.conversation_id : null;
  if (typeof id !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(id)) return;
  if (location.hash !== `#/c/${id}`) location.hash = `#/c/${id}`;
});

if (session.load()) startApp();
else showLogin();
