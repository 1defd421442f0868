// The HTTP JSON API (/api/v1): one function per call. Errors come back as
// ApiError with the server's stable code, its sentence and, for rate limits,
// the seconds to wait.

const BASE = '/api/v1';

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function call(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(BASE + path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const retry = Number(resp.headers.get('Retry-After')) || undefined;
    throw new ApiError(resp.status, data?.error || 'internal', data?.message || `HTTP ${resp.status}`, retry);
  }
  return data;
}

// Whether this browser signed in through this client. The session cookie is
// HttpOnly, so the page cannot see it; without this hint every guest's visit
// would start with a 401 from /me.
const ACCOUNT_HINT = 'conclave.account';

function setHint(on) {
  try {
    if (on) localStorage.setItem(ACCOUNT_HINT, '1');
    else localStorage.removeItem(ACCOUNT_HINT);
  } catch {
    // Without storage the hint is simply absent.
  }
}

function hasHint() {
  try {
    return localStorage.getItem(ACCOUNT_HINT) === '1';
  } catch {
    return true; // ask the server
  }
}

let ended = false;

/** The signed-in account, or null when nobody is signed in. */
export async function me() {
  if (!hasHint()) return null;
  try {
    return await call('GET', '/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      // This browser was signed in and the server no longer takes the
      // session: it expired (a provider's lasts `session_max_age_hours`)
      // or was ended.
      ended = true;
      setHint(false);
      return null;
    }
    if (e instanceof ApiError && e.code === 'account_disabled') {
      // An administrator disabled the account: its sessions ended.
      disabled = true;
      setHint(false);
      return null;
    }
    throw e;
  }
}

let disabled = false;

/** Whether the last me() found this browser's account disabled (once). */
export function accountDisabled() {
  const was = disabled;
  disabled = false;
  return was;
}

/** Whether the last me() found this browser's session ended (once). */
export function sessionEnded() {
  const was = ended;
  ended = false;
  return was;
}

/** Forgets the session hint (after the server answered 401). */
export const signedOut = () => setHint(false);

export async function signIn(username, password) {
  const user = await call('POST', '/auth/signin', { username, password });
  setHint(true);
  return user;
}

/**
 * After an OpenID Connect provider sent the browser back signed in: the
 * session cookie is set, so the hint may be too.
 */
export const signedInElsewhere = () => setHint(true);

/** The OpenID Connect providers to offer: [{name, start_url}]. */
export const providers = () => call('GET', '/auth/providers');
/** How this server signs people in: {password: bool, providers: [{name, start_url}]}. */
export const signInMethods = () => call('GET', '/auth/methods');

/** Whether an account still has to choose a password to sign in again. */
export const needsPassword = (user) => !user.has_password && !user.provider;

export async function redeemLink(token) {
  const user = await call('POST', '/auth/link', { token });
  setHint(true);
  return user;
}

/** Ends the session; resolves to {redirect} when the provider that signed
 * this browser in should end its session too, else null. */
export async function signOut() {
  setHint(false);
  return call('POST', '/auth/signout');
}

/** Sets the password; `current` is needed once the account has one. */
export function setPassword(newPassword, current) {
  const body = { new_password: newPassword };
  if (current !== undefined) body.current_password = current;
  return call('POST', '/me/password', body);
}

/** Administrators only: every account, and what they may do to one. */
export const adminUsers = () => call('GET', '/admin/users');
export const adminDisable = (id) => call('POST', `/admin/users/${encodeURIComponent(id)}/disable`);
export const adminEnable = (id) => call('POST', `/admin/users/${encodeURIComponent(id)}/enable`);
export const adminDelete = (id) => call('DELETE', `/admin/users/${encodeURIComponent(id)}`);

export const listMeetings = () => call('GET', '/meetings');
export const getMeeting = (id) => call('GET', `/meetings/${encodeURIComponent(id)}`);
export const createMeeting = (body) => call('POST', '/meetings', body);
export const updateMeeting = (id, body) => call('PATCH', `/meetings/${encodeURIComponent(id)}`, body);
export const deleteMeeting = (id) => call('DELETE', `/meetings/${encodeURIComponent(id)}`);
/** Where a scheduled meeting's calendar file (.ics) downloads from (session cookie). */
export const calendarUrl = (id) => `${BASE}/meetings/${encodeURIComponent(id)}/calendar.ics`;

/** The meeting WebSocket's URL, on this origin. */
export function meetingSocketUrl(id) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${BASE}/meetings/${encodeURIComponent(id)}/ws`;
}
