// The REST API, called with the namespace's API key in the Authorization
// header. The key is kept in this tab's sessionStorage only: never in a
// URL, a cookie or persistent storage.

const storageKey = 'clemmys.auth';

export const nsPath = '/api/v1/namespaces/_';

export function auth() { return sessionStorage.getItem(storageKey); }
export function setAuth(key) { sessionStorage.setItem(storageKey, key); }
export function clearAuth() { sessionStorage.removeItem(storageKey); }

function basic(key) {
  const bytes = new TextEncoder().encode(key);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return 'Basic ' + btoa(s);
}

export class APIError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

// call performs a request and returns the decoded JSON body (null if none).
// body, if given, is sent as JSON. key overrides the stored key (sign-in).
export async function call(method, path, body, key) {
  const headers = { 'Accept': 'application/json' };
  const k = key ?? auth();
  if (k) headers['Authorization'] = basic(k);
  const init = { method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error', mode: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new APIError(0, 'The gateway could not be reached: ' + e.message);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!resp.ok && resp.status !== 202) {
    const msg = data && typeof data === 'object' && data.error ? data.error : resp.status + ' ' + resp.statusText;
    throw new APIError(resp.status, typeof msg === 'string' ? msg : JSON.stringify(msg), data);
  }
  return { status: resp.status, data };
}

// seg encodes an entity name for a path: "pkg/name" keeps its slash.
export function seg(name) {
  return name.split('/').map(encodeURIComponent).join('/');
}
