// The REST API under /api (docs/protocol.md, section 5). Requests carry the
// access token; a 401 whose WWW-Authenticate says invalid_token is answered
// by one refresh and one retry.

import { ApiError } from './util.js';
import { Unauthenticated } from './session.js';

async function parse(res) {
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : null;
  if (!res.ok) {
    throw new ApiError(
      data?.code || (res.status >= 500 ? 'internal' : 'invalid_argument'),
      data?.detail || data?.title || res.statusText,
      res.status,
      data?.retry_after_ms || 0,
    );
  }
  return data;
}

async function send(method, path, body, token) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError('unavailable', 'the server cannot be reached');
  }
}

/** anonymous calls: register, login, logout. */
export async function register(username, password, displayName) {
  const body = { username, password };
  if (displayName) body.display_name = displayName;
  return parse(await send('POST', '/api/auth/register', body));
}

export async function login(username, password) {
  return parse(await send('POST', '/api/auth/login', { username, password }));
}

export async function logout(refreshToken) {
  return parse(await send('POST', '/api/auth/logout', { refresh_token: refreshToken }));
}

/** Api makes the calls that need a user. */
export class Api {
  constructor(session) {
    this.session = session;
  }

  async call(method, path, body) {
    let token = await this.session.accessToken();
    let res = await send(method, path, body, token);
    if (res.status === 401 && /invalid_token/.test(res.headers.get('WWW-Authenticate') || '')) {
      token = (await this.session.refresh(token)).access_token;
      res = await send(method, path, body, token);
      if (res.status === 401) throw new Unauthenticated();
    }
    return parse(res);
  }

  me() { return this.call('GET', '/api/users/me'); }
  user(id) { return this.call('GET', `/api/users/${encodeURIComponent(id)}`); }
  searchUsers(q) { return this.call('GET', `/api/users?q=${encodeURIComponent(q)}`); }
  conversations() { return this.call('GET', '/api/conversations'); }
  conversation(id) { return this.call('GET', `/api/conversations/${encodeURIComponent(id)}`); }
  createDirect(userId) {
    return this.call('POST', '/api/conversations', { type: 'direct', member_ids: [userId] });
  }
  createGroup(title, memberIds) {
    return this.call('POST', '/api/conversations', { type: 'group', title, member_ids: memberIds });
  }
  addMember(id, userId) {
    return this.call('POST', `/api/conversations/${encodeURIComponent(id)}/members`, { user_id: userId });
  }
  removeMember(id, userId) {
    return this.call('DELETE', `/api/conversations/${encodeURIComponent(id)}/members/${encodeURIComponent(userId)}`);
  }
  /** mute: until is an RFC 3339 time, or null for ever (docs/protocol.md, 18). */
  mute(id, until) {
    return this.call('PUT', `/api/conversations/${encodeURIComponent(id)}/mute`, { until });
  }
  unmute(id) {
    return this.call('DELETE', `/api/conversations/${encodeURIComponent(id)}/mute`);
  }
  /** media: a Media with fresh signed URLs (docs/protocol.md, 19). */
  media(id) { return this.call('GET', `/api/media/${encodeURIComponent(id)}`); }
  /** history: {before, after, limit} as in the contract. */
  history(id, { before, after, limit = 50 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set('before_seq', String(before));
    if (after !== undefined && after !== null) q.set('after_seq', String(after));
    return this.call('GET', `/api/conversations/${encodeURIComponent(id)}/messages?${q}`);
  }
}
