// DOM helpers. Text is always set as text (never HTML), so data from the
// API cannot inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const svgNS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); }

export function pretty(v) {
  if (v === undefined) return '';
  return JSON.stringify(v, null, 2);
}

export function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null) return '—';
  if (ms < 1000) return ms + ' ms';
  return (ms / 1000).toFixed(2) + ' s';
}

export const statusNames = ['success', 'application error', 'developer error', 'internal error'];

export function statusName(code) { return statusNames[code] ?? 'unknown (' + code + ')'; }

export function statusBadge(code, running) {
  if (running) return h('span', { class: 'status status-running' }, 'running');
  return h('span', { class: 'status status-' + code }, statusName(code));
}

// table builds a table with a caption, header cells and rows of cells.
export function table(caption, headers, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, 'None yet.'))));
}

let toastTimer;
export function toast(msg) {
  const el = document.getElementById('toast');
  el.textContent = msg;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 5000);
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err.message || String(err));
}

export function ann(rec, key) {
  for (const a of rec.annotations || []) if (a.key === key) return a.value;
  return undefined;
}

// readFile returns a File's contents as text or as base64.
export function readText(file) { return file.text(); }

export async function readBase64(file) {
  const buf = new Uint8Array(await file.arrayBuffer());
  let s = '';
  const chunk = 0x8000;
  for (let i = 0; i < buf.length; i += chunk) s += String.fromCharCode(...buf.subarray(i, i + chunk));
  return btoa(s);
}

let seq = 0;
export function uid(p) { return p + '-' + (++seq); }

// field is a labelled form control.
export function field(label, control, hint) {
  if (!control.id) control.id = uid('f');
  const parts = [h('label', { for: control.id }, label), control];
  if (hint) {
    const hid = uid('hint');
    control.setAttribute('aria-describedby', hid);
    parts.push(h('small', { id: hid, class: 'hint' }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

export function parseJSONObject(text, what) {
  const t = text.trim();
  if (!t) return {};
  let v;
  try { v = JSON.parse(t); } catch (e) { throw new Error(what + ' is not valid JSON: ' + e.message); }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(what + ' must be a JSON object.');
  return v;
}

// kvs turns {k: v} into OpenWhisk's [{key, value}], and back.
export function toKVs(obj) { return Object.entries(obj).map(([key, value]) => ({ key, value })); }
export function fromKVs(list) {
  const o = {};
  for (const kv of list || []) o[kv.key] = kv.value;
  return o;
}
