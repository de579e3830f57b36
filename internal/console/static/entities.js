// Actions, packages, triggers and rules: list, view, create or update (from
// a file for actions), delete; invoke an action, fire a trigger.
import { call, nsPath, seg } from './api.js';
import {
  h, clear, pretty, fmtTime, table, toast, errorBox, field, parseJSONObject,
  toKVs, fromKVs, readBase64, readText, statusBadge, fmtDuration, ann, uid,
} from './ui.js';

export const kinds = {
  actions: { title: 'Actions', one: 'action' },
  packages: { title: 'Packages', one: 'package' },
  triggers: { title: 'Triggers', one: 'trigger' },
  rules: { title: 'Rules', one: 'rule' },
};

// fullName is an entity's name in its namespace: "pkg/name" for an action
// in a package (listed as namespace "ns/pkg", name "name").
export function fullName(e) {
  const i = (e.namespace || '').indexOf('/');
  return i >= 0 ? e.namespace.slice(i + 1) + '/' + e.name : e.name;
}

function link(coll, name) {
  return h('a', { href: '#/' + coll + '/' + seg(name) }, name);
}

async function remove(coll, name, after) {
  if (!window.confirm('Delete ' + kinds[coll].one + ' ' + name + '?')) return;
  try {
    await call('DELETE', nsPath + '/' + coll + '/' + seg(name));
    toast('Deleted ' + kinds[coll].one + ' ' + name + '.');
    after();
  } catch (e) {
    toast('Delete failed: ' + e.message);
  }
}

export async function listView(main, coll) {
  const k = kinds[coll];
  const list = h('div', { 'aria-busy': 'true' }, 'Loading…');
  main.append(h('h1', {}, k.title), createForm(coll, () => route()), list);
  const route = async () => {
    list.setAttribute('aria-busy', 'true');
    try {
      const { data } = await call('GET', nsPath + '/' + coll + '?limit=200');
      const rows = data.map((e) => {
        const name = fullName(e);
        const cells = [link(coll, name), String(e.version ?? '')];
        if (coll === 'actions') cells.push(e.exec?.kind ?? ann(e, 'exec') ?? '');
        if (coll === 'packages') cells.push(e.publish ? 'public' : 'private', e.binding && e.binding.name ? 'binding of /' + e.binding.namespace + '/' + e.binding.name : '');
        if (coll === 'rules') cells.push(e.status ?? '', ruleRef(e.trigger), ruleRef(e.action));
        if (coll !== 'rules') cells.push(fmtTime(e.updated));
        cells.push(h('button', { type: 'button', class: 'danger', 'aria-label': 'Delete ' + name, onclick: () => remove(coll, name, route) }, 'Delete'));
        return cells;
      });
      const headers = ['Name', 'Version'];
      if (coll === 'actions') headers.push('Kind');
      if (coll === 'packages') headers.push('Visibility', 'Binding');
      if (coll === 'rules') headers.push('Status', 'Trigger', 'Action');
      if (coll !== 'rules') headers.push('Updated');
      headers.push(h('span', { class: 'sr-only' }, 'Delete'));
      clear(list);
      list.append(table(k.title + ' in this namespace', headers, rows));
    } catch (e) {
      clear(list);
      list.append(errorBox(e));
    }
    list.setAttribute('aria-busy', 'false');
  };
  await route();
}

function ruleRef(r) {
  if (!r) return '';
  if (typeof r === 'string') return r;
  return '/' + (r.path || r.namespace || '_') + '/' + r.name;
}

// createForm builds the create-or-update form of a collection.
function createForm(coll, after) {
  const one = kinds[coll].one;
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const parts = [field(one[0].toUpperCase() + one.slice(1) + ' name', name, coll === 'actions' ? 'An action in a package: package/name.' : undefined)];
  let file, kind, main, components, body, trigger, action, publish, params;
  if (coll === 'actions') {
    kind = h('select', { name: 'kind' },
      h('option', { value: 'wasm' }, 'wasm (WebAssembly module)'),
      h('option', { value: 'nodejs:default' }, 'nodejs:default (JavaScript)'),
      h('option', { value: 'nodejs:20' }, 'nodejs:20'),
      h('option', { value: 'nodejs:22' }, 'nodejs:22'),
      h('option', { value: 'sequence' }, 'sequence'));
    file = h('input', { type: 'file', name: 'code', accept: '.wasm,.js,.mjs,.zip,application/wasm,text/javascript,application/zip' });
    main = h('input', { type: 'text', name: 'main', autocomplete: 'off', placeholder: 'main' });
    components = h('input', { type: 'text', name: 'components', autocomplete: 'off', placeholder: '/_/a,/_/b' });
    file.addEventListener('change', () => {
      const f = file.files[0];
      if (!f) return;
      if (/\.wasm$/i.test(f.name)) kind.value = 'wasm';
      else if (/\.(m?js|zip)$/i.test(f.name) && !kind.value.startsWith('nodejs')) kind.value = 'nodejs:default';
      if (!name.value) name.value = f.name.replace(/\.[^.]*$/, '');
    });
    parts.push(field('Kind', kind), field('Code file', file, 'A .wasm module, or JavaScript source (.js) or a zip for the nodejs kinds. Leave empty to keep the code on an update.'),
      field('Entry point (nodejs)', main), field('Sequence components', components, 'Comma-separated, for kind sequence.'));
  }
  if (coll === 'packages') {
    publish = h('input', { type: 'checkbox', name: 'publish' });
    publish.id = uid('pub');
    parts.push(h('div', { class: 'field check' }, publish, h('label', { for: publish.id }, 'Public (other namespaces may use it)')));
  }
  if (coll === 'rules') {
    trigger = h('input', { type: 'text', name: 'trigger', required: true, autocomplete: 'off', placeholder: 'trigger name' });
    action = h('input', { type: 'text', name: 'action', required: true, autocomplete: 'off', placeholder: 'action name' });
    parts.push(field('Trigger', trigger), field('Action', action));
  }
  if (coll !== 'rules') {
    params = h('textarea', { name: 'parameters', rows: 3, spellcheck: 'false', placeholder: '{"name": "value"}' });
    parts.push(field('Default parameters (JSON object)', params));
  }
  body = h('input', { type: 'file', name: 'entity', accept: '.json,application/json' });
  parts.push(field('Or the whole entity from a JSON file', body, 'OpenWhisk\'s PUT body; it replaces the fields above.'));
  const out = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Create or update');
  const form = h('form', { class: 'card', 'aria-label': 'Create or update ' + one }, h('h2', {}, 'Create or update ' + one), parts, submit, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(out);
    submit.disabled = true;
    try {
      let entity;
      if (body.files[0]) {
        entity = parseJSONObject(await readText(body.files[0]), 'The entity file');
      } else {
        entity = {};
        if (params && params.value.trim()) entity.parameters = toKVs(parseJSONObject(params.value, 'The parameters'));
        if (coll === 'actions') {
          if (kind.value === 'sequence') {
            const list = components.value.split(',').map((x) => x.trim()).filter(Boolean);
            if (!list.length) throw new Error('A sequence needs components.');
            entity.exec = { kind: 'sequence', components: list };
          } else if (file.files[0]) {
            const f = file.files[0];
            const binary = kind.value === 'wasm' || /\.zip$/i.test(f.name);
            entity.exec = { kind: kind.value, code: binary ? await readBase64(f) : await readText(f) };
            if (binary && kind.value !== 'wasm') entity.exec.binary = true;
            if (main.value.trim()) entity.exec.main = main.value.trim();
          }
        }
        if (coll === 'packages') entity.publish = publish.checked;
        if (coll === 'rules') {
          entity.trigger = abs(trigger.value.trim());
          entity.action = abs(action.value.trim());
        }
      }
      const n = name.value.trim();
      if (!n) throw new Error('The name is required.');
      await call('PUT', nsPath + '/' + coll + '/' + seg(n) + '?overwrite=true', entity);
      toast('Saved ' + one + ' ' + n + '.');
      out.append(h('p', { class: 'ok' }, 'Saved ', link(coll, n), '.'));
      after();
    } catch (e) {
      out.append(errorBox(e));
    }
    submit.disabled = false;
  });
  return h('details', { class: 'create' }, h('summary', {}, 'Create or update ' + one + '…'), form);
}

function abs(n) { return n.startsWith('/') ? n : '/_/' + n; }

export async function detailView(main, coll, name) {
  const k = kinds[coll];
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '#/' + coll }, k.title), ' / ', name));
  main.append(h('h1', {}, k.one[0].toUpperCase() + k.one.slice(1) + ' ', h('code', {}, name)));
  let e;
  try {
    const q = coll === 'actions' ? '?code=false' : '';
    e = (await call('GET', nsPath + '/' + coll + '/' + seg(name) + q)).data;
  } catch (err) {
    main.append(errorBox(err));
    return;
  }
  const facts = [['Version', e.version], ['Updated', fmtTime(e.updated)]];
  if (coll === 'actions') {
    facts.push(['Kind', e.exec?.kind], ['Code digest', e.exec?.digest ?? '—']);
    if (e.exec?.components) facts.push(['Components', e.exec.components.join(' → ')]);
    if (e.limits) facts.push(['Limits', 'timeout ' + e.limits.timeout + ' ms, memory ' + e.limits.memory + ' MB, logs ' + e.limits.logs + ' MB']);
  }
  if (coll === 'rules') facts.push(['Status', e.status], ['Trigger', ruleRef(e.trigger)], ['Action', ruleRef(e.action)]);
  if (coll === 'packages') facts.push(['Visibility', e.publish ? 'public' : 'private']);
  main.append(h('dl', { class: 'facts' }, facts.map(([a, b]) => [h('dt', {}, a), h('dd', {}, b === undefined ? '—' : String(b))])));
  if (coll === 'actions') main.append(invokePanel(name));
  if (coll === 'triggers') main.append(firePanel(name));
  if (coll === 'rules') main.append(rulePanel(name, e.status));
  main.append(h('h2', {}, 'Parameters'), h('pre', { class: 'json' }, pretty(fromKVs(e.parameters))));
  main.append(h('h2', {}, 'Annotations'), h('pre', { class: 'json' }, pretty(fromKVs(e.annotations))));
  main.append(h('details', {}, h('summary', {}, 'Raw JSON'), h('pre', { class: 'json' }, pretty(e))));
  main.append(h('p', {}, h('button', { type: 'button', class: 'danger', onclick: () => remove(coll, name, () => { location.hash = '#/' + coll; }) }, 'Delete ' + k.one)));
}

function paramEditor(label) {
  const ta = h('textarea', { name: 'params', rows: 6, spellcheck: 'false', class: 'code' });
  ta.value = '{}';
  return { ta, el: field(label, ta, 'A JSON object; Ctrl+Enter submits.') };
}

function invokePanel(name) {
  const { ta, el } = paramEditor('Parameters (JSON)');
  const go = h('button', { type: 'submit' }, 'Invoke');
  const out = h('div', { class: 'invoke-out', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-label': 'Invoke ' + name }, h('h2', {}, 'Invoke'), el, go, out);
  ta.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit(); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(out);
    go.disabled = true;
    try {
      const params = parseJSONObject(ta.value, 'The parameters');
      out.append(h('p', {}, 'Running…'));
      const { status, data } = await call('POST', nsPath + '/actions/' + seg(name) + '?blocking=true', params);
      clear(out);
      if (status === 202 || !data.response) {
        out.append(h('p', {}, 'Still running; activation ', actLink(data.activationId), '.'));
      } else {
        out.append(activationSummary(data));
      }
    } catch (e) {
      clear(out);
      // A failed action answers 502 with its record: show it.
      out.append(e.data && e.data.response ? activationSummary(e.data) : errorBox(e));
    }
    go.disabled = false;
  });
  return form;
}

export function actLink(id) { return h('a', { href: '#/activation/' + id, class: 'mono' }, id); }

// activationSummary shows a full record's status, result and logs.
export function activationSummary(a) {
  return h('div', { class: 'result' },
    h('p', {}, statusBadge(a.response?.statusCode ?? a.statusCode), ' in ', fmtDuration(a.duration), ' — activation ', actLink(a.activationId)),
    h('h3', {}, 'Result'), h('pre', { class: 'json', 'aria-label': 'Result' }, pretty(a.response?.result)),
    h('h3', {}, 'Logs'), h('pre', { class: 'logs', 'aria-label': 'Logs' }, (a.logs || []).join('\n') || '(no logs)'));
}

function firePanel(name) {
  const { ta, el } = paramEditor('Parameters (JSON)');
  const go = h('button', { type: 'submit' }, 'Fire');
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-label': 'Fire ' + name }, h('h2', {}, 'Fire'), el, go, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(out);
    try {
      const { data } = await call('POST', nsPath + '/triggers/' + seg(name), parseJSONObject(ta.value, 'The parameters'));
      out.append(h('p', {}, 'Fired: activation ', data && data.activationId ? actLink(data.activationId) : '(no active rules)', '.'));
    } catch (e) {
      out.append(errorBox(e));
    }
  });
  return form;
}

function rulePanel(name, status) {
  const next = status === 'active' ? 'inactive' : 'active';
  return h('p', {}, h('button', {
    type: 'button', onclick: async () => {
      try {
        await call('POST', nsPath + '/rules/' + seg(name), { status: next });
        toast('Rule ' + name + ' is ' + next + '.');
        window.dispatchEvent(new HashChangeEvent('hashchange'));
      } catch (e) { toast(e.message); }
    },
  }, next === 'active' ? 'Enable rule' : 'Disable rule'));
}
