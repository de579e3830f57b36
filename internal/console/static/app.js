// The console's entry point: sign-in and hash routing.
import { auth, setAuth, clearAuth, call } from './api.js';
import { h, clear, errorBox, field } from './ui.js';
import * as entities from './entities.js';
import * as activations from './activations.js';
import { trustView } from './trust.js';
import { metricsView } from './metrics.js';

const main = document.getElementById('main');
let current = null; // AbortController of the view shown

function signInView() {
  const key = h('input', { type: 'password', required: true, autocomplete: 'off', spellcheck: 'false', id: 'apikey' });
  const out = h('div', { 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit', id: 'signin' }, 'Sign in');
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h('p', {}, 'Use your namespace\'s API key (uuid:key), as in ', h('code', {}, 'AUTH='), ' of ', h('code', {}, '~/.clemmys/wskprops'), '. ',
      'It is kept in this tab\'s session storage only and sent to the gateway in the Authorization header.'),
    field('API key', key), submit, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(out);
    submit.disabled = true;
    const k = key.value.trim();
    try {
      if (!/^[^:]+:.+$/.test(k)) throw new Error('An API key has the form uuid:key.');
      const { data } = await call('GET', '/api/v1/namespaces', undefined, k);
      setAuth(k);
      key.value = '';
      sessionStorage.setItem('clemmys.ns', data[0] || '');
      if (!location.hash || location.hash === '#/' || location.hash === '#/signin') location.hash = '#/actions';
      else route();
    } catch (e) {
      out.append(errorBox(e.status === 401 ? new Error('The gateway refused this key.') : e));
      submit.disabled = false;
    }
  });
  main.append(form);
  key.focus();
}

async function header() {
  const signed = !!auth();
  document.getElementById('nav').hidden = !signed;
  document.getElementById('signout').hidden = !signed;
  document.getElementById('whoami').textContent = signed ? 'namespace ' + (sessionStorage.getItem('clemmys.ns') || '?') : '';
  const badge = document.getElementById('tee-badge');
  try {
    const { data } = await call('GET', '/api/v1', undefined, '');
    if (data.tee) {
      badge.textContent = data.tee === 'sim' ? 'TEE: sim (simulated, no hardware protection)' : 'TEE: ' + data.tee;
      badge.className = 'badge ' + (data.tee === 'sim' ? 'badge-sim' : 'badge-hw');
      badge.hidden = false;
    }
  } catch { /* the badge is optional */ }
}

function markNav(path) {
  for (const a of document.querySelectorAll('#nav a')) {
    const on = path.startsWith(a.getAttribute('href').slice(1)) || (path.startsWith('/activation/') && a.getAttribute('href') === '#/activations');
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  main.removeAttribute('data-ready');
  clear(main);
  header();
  if (!auth()) {
    document.title = 'Sign in — clemmys console';
    signInView();
    return;
  }
  const raw = decodeURIComponent(location.hash.replace(/^#/, '')) || '/actions';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  markNav(path);
  const coll = parts[0] || 'actions';
  document.title = coll[0].toUpperCase() + coll.slice(1) + ' — clemmys console';
  try {
    if (entities.kinds[coll]) {
      if (parts.length > 1) await entities.detailView(main, coll, parts.slice(1).join('/'));
      else await entities.listView(main, coll);
    } else if (coll === 'activations') {
      await activations.listView(main, signal, query);
    } else if (coll === 'activation' && parts[1]) {
      document.title = 'Activation ' + parts[1] + ' — clemmys console';
      await activations.detailView(main, parts[1]);
    } else if (coll === 'trust') {
      await trustView(main);
    } else if (coll === 'metrics') {
      await metricsView(main, signal);
    } else {
      main.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/actions' }, 'Actions')));
    }
  } catch (e) {
    if (e.status === 401) {
      clearAuth();
      route();
      return;
    }
    main.append(errorBox(e));
  }
  if (!signal.aborted) main.setAttribute('data-ready', path);
}

document.getElementById('signout').addEventListener('click', () => {
  clearAuth();
  sessionStorage.removeItem('clemmys.ns');
  location.hash = '#/signin';
  route();
});
window.addEventListener('hashchange', () => {
  route().then(() => main.focus({ preventScroll: true }));
});
route();
