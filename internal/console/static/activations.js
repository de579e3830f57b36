// Activations: a live list (polled), filtered by name and status, and an
// activation's detail: result, logs, annotations and, for a sequence, the
// waterfall of its components.
import { call, nsPath, seg } from './api.js';
import {
  h, clear, pretty, fmtTime, fmtDuration, table, errorBox, field, statusBadge,
  statusNames, ann,
} from './ui.js';
import { actLink } from './entities.js';
import { waterfall } from './waterfall.js';

const pollMs = 2000;

export async function listView(main, signal, query) {
  const name = h('input', { type: 'search', autocomplete: 'off', spellcheck: 'false', value: query.get('name') || '' });
  const status = h('select', {}, h('option', { value: '' }, 'any'),
    statusNames.map((n, i) => h('option', { value: String(i) }, n)), h('option', { value: 'running' }, 'running'));
  status.value = query.get('status') || '';
  const live = h('input', { type: 'checkbox', checked: true, id: 'live-toggle' });
  const stamp = h('p', { class: 'hint', id: 'poll-stamp' }, '');
  const list = h('div', { id: 'activation-list' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter activations' },
    field('Action name', name), field('Status', status),
    h('div', { class: 'field check' }, live, h('label', { for: 'live-toggle' }, 'Live (refresh every 2 s)')),
    h('button', { type: 'submit' }, 'Apply'));
  main.append(h('h1', {}, 'Activations'), form, stamp, list);

  let timer;
  const load = async () => {
    clearTimeout(timer);
    if (signal.aborted) return;
    const q = new URLSearchParams({ limit: '100' });
    if (name.value.trim()) q.set('name', name.value.trim());
    try {
      const { data } = await call('GET', nsPath + '/activations?' + q);
      if (signal.aborted) return;
      const rows = data.filter((a) => {
        if (status.value === '') return true;
        if (status.value === 'running') return !a.end;
        return a.end && String(a.statusCode) === status.value;
      }).map((a) => [actLink(a.activationId), a.name, statusBadge(a.statusCode, !a.end),
        fmtTime(a.start), a.end ? fmtDuration(a.duration) : '—', kindOf(a), a.cause ? actLink(a.cause) : '']);
      clear(list);
      list.append(table('Most recent activations first', ['Activation', 'Action', 'Status', 'Start', 'Duration', 'Kind', 'Caused by'], rows));
      stamp.textContent = 'Updated ' + new Date().toLocaleTimeString(undefined, { hour12: false }) + (live.checked ? '; refreshing every 2 s.' : '.');
    } catch (e) {
      clear(list);
      list.append(errorBox(e));
    }
    if (live.checked && !signal.aborted) timer = setTimeout(load, pollMs);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (name.value.trim()) q.set('name', name.value.trim());
    if (status.value) q.set('status', status.value);
    history.replaceState(null, '', '#/activations' + (q.toString() ? '?' + q : ''));
    load();
  });
  live.addEventListener('change', load);
  await load();
}

function kindOf(a) {
  const k = ann(a, 'kind');
  return k === undefined ? '' : String(k);
}

export function isSequence(a) { return ann(a, 'kind') === 'sequence'; }

export async function detailView(main, id) {
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '#/activations' }, 'Activations'), ' / ', id));
  let a;
  try {
    a = (await call('GET', nsPath + '/activations/' + seg(id))).data;
  } catch (e) {
    main.append(h('h1', {}, 'Activation'), errorBox(e));
    return;
  }
  main.append(h('h1', {}, 'Activation of ', h('code', {}, a.name)));
  const facts = [
    ['Activation id', h('span', { class: 'mono' }, a.activationId)],
    ['Status', statusBadge(a.response?.statusCode ?? a.statusCode, !a.end)],
    ['Start', fmtTime(a.start)], ['End', fmtTime(a.end)], ['Duration', a.end ? fmtDuration(a.duration) : '—'],
    ['Action', h('a', { href: '#/actions/' + seg(pathName(a)) }, String(ann(a, 'path') ?? a.name))],
    ['Kind', kindOf(a)],
  ];
  if (a.cause) facts.push(['Caused by', actLink(a.cause)]);
  const wait = ann(a, 'waitTime'), init = ann(a, 'initTime');
  if (wait !== undefined) facts.push(['Wait time', fmtDuration(wait)]);
  if (!isSequence(a)) facts.push(['Start-up', init ? 'cold, ' + fmtDuration(init) : 'warm']);
  main.append(h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
  if (isSequence(a)) {
    const wf = h('section', { 'aria-labelledby': 'wf-title', id: 'waterfall' }, h('h2', { id: 'wf-title' }, 'Chain waterfall'), h('p', {}, 'Loading the components…'));
    main.append(wf);
    waterfall(wf, a).catch((e) => wf.append(errorBox(e)));
  }
  main.append(h('h2', {}, 'Result'), h('pre', { class: 'json', id: 'activation-result' }, pretty(a.response?.result)));
  if (isSequence(a)) {
    main.append(h('h2', {}, 'Components'), h('ol', { class: 'mono' }, (a.logs || []).map((c) => h('li', {}, actLink(c)))));
  } else {
    main.append(h('h2', {}, 'Logs'), h('pre', { class: 'logs', id: 'activation-logs' }, (a.logs || []).join('\n') || '(no logs)'));
  }
  main.append(h('h2', {}, 'Annotations'), table('Annotations of the activation', ['Key', 'Value'],
    (a.annotations || []).map((kv) => [h('code', {}, kv.key), h('code', {}, typeof kv.value === 'string' ? kv.value : JSON.stringify(kv.value))])));
  main.append(h('details', {}, h('summary', {}, 'Raw JSON'), h('pre', { class: 'json' }, pretty(a))));
}

// pathName is the action's name in its namespace, from the "path"
// annotation ("ns/pkg/name" or "ns/name").
function pathName(a) {
  const p = ann(a, 'path');
  if (typeof p !== 'string') return a.name;
  const i = p.indexOf('/');
  return i >= 0 ? p.slice(i + 1) : a.name;
}
