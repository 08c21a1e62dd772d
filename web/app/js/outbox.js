// The outbox: messages written but not yet acknowledged, in IndexedDB so
// that they survive going offline, a reload and a browser restart. Each
// entry keeps the client_message_id it was created with, so a resend after
// any of those is stored by the server only once.
//
// Entry: {client_message_id, owner, conversation_id, kind, text,
//         created_at (ms, local), error?}
// and for a photo, video or file (kind image, video or file):
//         {file: {name, size, type}, blob (the File, until it is uploaded),
//          upload_url (the tus upload, once created), media_id and media
//          (the Media, once uploaded)}
// A media message is sent only once it has its media_id.
//
// Tabs of the same origin share the database; a BroadcastChannel tells the
// other tabs to re-read it.

const DB_NAME = 'parley';
const STORE = 'outbox';

let dbPromise = null;
const memory = new Map(); // fallback when IndexedDB is unavailable

function openDB() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve) => {
      let req;
      try {
        req = indexedDB.open(DB_NAME, 1);
      } catch {
        resolve(null);
        return;
      }
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(STORE)) {
          const s = db.createObjectStore(STORE, { keyPath: 'client_message_id' });
          s.createIndex('owner', 'owner');
        }
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
  }
  return dbPromise;
}

function tx(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const result = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(result?.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}

const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('parley.outbox') : null;

function announce() {
  channel?.postMessage('changed');
}

/** onChange calls fn when another tab changed the outbox. */
export function onChange(fn) {
  if (!channel) return () => {};
  const h = () => fn();
  channel.addEventListener('message', h);
  return () => channel.removeEventListener('message', h);
}

/** put adds or replaces an entry; it resolves once the entry is durable. */
export async function put(entry) {
  const db = await openDB();
  if (!db) memory.set(entry.client_message_id, entry);
  else await tx(db, 'readwrite', (s) => s.put(entry));
  announce();
}

export async function remove(clientMessageId) {
  const db = await openDB();
  if (!db) memory.delete(clientMessageId);
  else await tx(db, 'readwrite', (s) => s.delete(clientMessageId));
  announce();
}

/** get returns one entry, or undefined. */
export async function get(clientMessageId) {
  const db = await openDB();
  if (!db) return memory.get(clientMessageId);
  return new Promise((resolve, reject) => {
    const req = db.transaction(STORE, 'readonly').objectStore(STORE).get(clientMessageId);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** list returns the owner's entries, oldest first. */
export async function list(owner) {
  const db = await openDB();
  let all;
  if (!db) all = [...memory.values()].filter((e) => e.owner === owner);
  else {
    all = await new Promise((resolve, reject) => {
      const t = db.transaction(STORE, 'readonly');
      const req = t.objectStore(STORE).index('owner').getAll(owner);
      req.onsuccess = () => resolve(req.result || []);
      req.onerror = () => reject(req.error);
    });
  }
  return all.sort((a, b) => a.created_at - b.created_at);
}

/** clear removes every entry of owner (on sign-out). */
export async function clear(owner) {
  for (const e of await list(owner)) await remove(e.client_message_id);
}
