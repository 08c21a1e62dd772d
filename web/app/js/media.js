// Photos, videos and files (docs/protocol.md, section 19): which kind of
// message a file makes, how it reads in a list, sizes for people, and the
// upload itself, with tus 1.0 at /api/uploads (resumable: after a broken
// connection the upload goes on from the server's offset).
//
// tus-js-client is vendored (vendor/tus.min.js, its browser build, MIT) and
// loaded the first time something is uploaded.

import { Unauthenticated } from './session.js';

// What the server takes as an image or a video (it decides from the
// content; the file's own type is only a guess until then).
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
const VIDEO_TYPES = new Set(['video/mp4', 'video/quicktime', 'video/webm']);

export const KIND_TEXT = { image: 'Photo', video: 'Video', file: 'File' };

/** isMediaKind: a message of this kind carries a media_id. */
export function isMediaKind(kind) {
  return kind === 'image' || kind === 'video' || kind === 'file';
}

/** kindOf: the message kind for a MIME type. */
export function kindOf(mime) {
  const t = String(mime || '').split(';')[0].trim().toLowerCase();
  if (IMAGE_TYPES.has(t)) return 'image';
  if (VIDEO_TYPES.has(t)) return 'video';
  return 'file';
}

/** describe: a message as one line, "Photo: the beach" (as pushes say it). */
export function describe(m) {
  const label = KIND_TEXT[m?.kind];
  if (!label) return m?.text || `[${m?.kind || 'message'}]`;
  return m.text ? `${label}: ${m.text}` : label;
}

/** humanSize: 532 B, 12.4 KB, 3.1 MB. */
export function humanSize(n) {
  const b = Number(n) || 0;
  if (b < 1000) return `${b} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = b;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** expired: a signed URL whose exp (seconds) is past or within margin ms. */
export function expired(url, margin = 30_000) {
  try {
    const exp = Number(new URL(url, location.href).searchParams.get('exp'));
    return Number.isFinite(exp) && exp > 0 && exp * 1000 < Date.now() + margin;
  } catch {
    return false;
  }
}

/** fit scales w×h into a box of max pixels, for <img width height>. */
export function fit(w, h, max) {
  if (!(w > 0 && h > 0)) return null;
  const s = Math.min(1, max / Math.max(w, h));
  return { width: Math.max(1, Math.round(w * s)), height: Math.max(1, Math.round(h * s)) };
}

/** mediaIdOf: the media id of a tus upload URL (its last path segment). */
export function mediaIdOf(uploadUrl) {
  try {
    const p = new URL(uploadUrl, location.href).pathname;
    return decodeURIComponent(p.slice(p.lastIndexOf('/') + 1)) || null;
  } catch {
    return null;
  }
}

let tusLoaded = null;

/** loadTus loads the vendored tus-js-client once (it sets window.tus). */
export function loadTus() {
  if (!tusLoaded) {
    tusLoaded = import('../vendor/tus.min.js').then(() => {
      if (!globalThis.tus?.Upload) throw new Error('tus-js-client did not load');
      return globalThis.tus;
    });
    tusLoaded.catch(() => { tusLoaded = null; });
  }
  return tusLoaded;
}

// A chunk per PATCH: a broken connection costs at most this much again
// (the server also keeps what arrived of a broken PATCH), and no proxy's
// body limit is in the way.
export const CHUNK_BYTES = 5 * 1024 * 1024;
// tus-js-client's own quick retries; longer outages are the caller's.
const RETRY_DELAYS = [0, 1000, 3000, 5000];

/** UploadError: a tus upload that stopped; permanent when retrying is no use. */
export class UploadError extends Error {
  constructor(message, { code = 'unavailable', status = 0, permanent = false } = {}) {
    super(message);
    this.name = 'UploadError';
    this.code = code;
    this.status = status;
    this.permanent = permanent;
  }
}

function uploadError(err) {
  if (err instanceof UploadError) return err;
  if (err?.causingError instanceof Unauthenticated || err instanceof Unauthenticated) {
    return new UploadError('signed out', { code: 'unauthenticated' });
  }
  const res = err?.originalResponse;
  const status = res ? res.getStatus() : 0;
  // The API answers a problem (JSON); tus answers in text, "CODE: detail".
  const body = String(res?.getBody?.() || '').trim();
  let problem = null;
  try {
    problem = JSON.parse(body || 'null');
  } catch {
    const m = /^([A-Z][A-Z_]+): (.+)$/s.exec(body);
    if (m) problem = { code: m[1].toLowerCase(), detail: m[2] };
  }
  const code = problem?.code || (status === 413 ? 'payload_too_large' : status >= 500 || !status ? 'unavailable' : 'invalid_argument');
  let message = problem?.detail || problem?.title || '';
  if (status === 413) message = message || 'That file is too large.';
  if (!message) message = status ? `upload failed (${status})` : 'the server cannot be reached';
  // 400 (refused content), 403, 413: sending the same again will not help.
  // 404 is an upload that is gone: the caller starts a new one.
  const permanent = status === 400 || status === 403 || status === 413 || status === 415;
  return new UploadError(message, { code, status, permanent });
}

/**
 * tusUpload uploads file (a File or Blob) and resolves with the media id.
 * uploadUrl resumes an upload created before (a HEAD asks for its offset);
 * such an upload that no longer exists fails with status 404 instead of
 * starting over by itself, so that the caller may first ask whether it
 * completed. Hooks: onUrl(url) once the upload exists on the server,
 * onProgress(sent, total). The returned handle's abort(terminate) stops
 * it, and with terminate deletes it on the server.
 */
export function tusUpload(session, file, { name, type, uploadUrl = null, onUrl, onProgress } = {}) {
  let up = null;
  let aborted = false;
  let stop = null;
  const cancelled = () => new UploadError('cancelled', { code: 'cancelled' });
  const done = loadTus().then((tus) => new Promise((resolve, reject) => {
    if (aborted) {
      reject(cancelled());
      return;
    }
    // tus-js-client reports nothing after abort(): the promise ends here.
    stop = () => reject(cancelled());
    let lastToken = null;
    let stale = null;
    up = new tus.Upload(file, {
      endpoint: uploadUrl ? null : new URL('/api/uploads', location.href).href,
      uploadUrl,
      chunkSize: CHUNK_BYTES,
      uploadDataDuringCreation: true,
      retryDelays: RETRY_DELAYS,
      // The outbox keeps the upload's URL; nothing in localStorage.
      storeFingerprintForResuming: false,
      metadata: { filename: name || file.name || 'file', filetype: type || file.type || 'application/octet-stream' },
      onBeforeRequest: async (req) => {
        let token = await session.accessToken();
        if (stale && token === stale) token = (await session.refresh(stale)).access_token;
        stale = null;
        lastToken = token;
        req.setHeader('Authorization', `Bearer ${token}`);
      },
      onShouldRetry: (err, attempt) => {
        if (err?.causingError instanceof Unauthenticated) return false;
        const status = err?.originalResponse ? err.originalResponse.getStatus() : 0;
        if (status === 401) {
          stale = lastToken;
          return attempt < 2;
        }
        return status === 0 || status >= 500 || status === 409 || status === 423 || status === 429;
      },
      onUploadUrlAvailable: () => {
        // Created: from now on a lost upload is the caller's to look into
        // (it may have completed), never silently started over.
        up.options.endpoint = null;
        onUrl?.(up.url);
      },
      onProgress: (sent, total) => onProgress?.(sent, total),
      onSuccess: () => {
        const id = mediaIdOf(up.url);
        if (id) resolve(id);
        else reject(new UploadError('the server named no upload', { permanent: true }));
      },
      onError: (err) => reject(uploadError(err)),
    });
    up.start();
  }), (err) => {
    throw new UploadError(`cannot upload here: ${err.message}`);
  });
  return {
    done,
    url: () => up?.url || uploadUrl,
    abort(terminate = false) {
      aborted = true;
      stop?.();
      if (up) return up.abort(terminate).catch(() => {});
      return Promise.resolve();
    },
  };
}
