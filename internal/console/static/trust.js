// The trust panel: the TEE of the runtimes that hold this namespace's
// keys, their measurements, the namespace's policy and the verdict of
// verifying the evidence, from GET /api/v1/clemmys/attestation. On a
// gateway without that endpoint it shows what /api/v1 and the policy say.
import { call, nsPath } from './api.js';
import { h, pretty, table, errorBox } from './ui.js';

export async function trustView(main) {
  main.append(h('h1', {}, 'Trust'));
  let att = null, fallback = false;
  try {
    att = (await call('GET', '/api/v1/clemmys/attestation')).data;
  } catch (e) {
    if (e.status !== 404 && e.status !== 405) {
      main.append(errorBox(e));
      return;
    }
    fallback = true;
  }
  if (fallback) {
    try {
      const [info, policy] = await Promise.all([call('GET', '/api/v1'), call('GET', nsPath + '/policy')]);
      att = { tee: info.data.tee, simulated: info.data.tee === 'sim', warning: info.data.warning, policy: policy.data, runtimes: null };
    } catch (e) {
      main.append(errorBox(e));
      return;
    }
  }
  const tee = att.tee || 'unknown';
  if (att.simulated) {
    main.append(h('div', { class: 'banner sim', role: 'alert', id: 'simulated-banner' },
      h('strong', {}, 'Simulated TEE. '),
      'This deployment runs on "sim": a software simulation with no hardware protection. The host can read every function\'s code, data and keys. Attestation verdicts below check the protocol only.'));
  } else {
    main.append(h('div', { class: 'banner hw' }, h('strong', {}, 'Hardware TEE: ' + tee + '. '), 'Runtimes are admitted only with evidence that verifies against the vendor\'s roots and this namespace\'s policy.'));
  }
  main.append(h('dl', { class: 'facts', id: 'trust-facts' },
    h('dt', {}, 'TEE type'), h('dd', { id: 'trust-tee' }, tee + (att.simulated ? ' (simulated)' : '')),
    h('dt', {}, 'Verdict'), h('dd', { id: 'trust-verdict' }, verdict(att))));

  main.append(h('h2', {}, 'Runtimes holding this namespace\'s keys'));
  if (att.runtimes === null) {
    main.append(h('p', {}, 'This gateway does not offer the attestation API (GET /api/v1/clemmys/attestation), so the runtimes and their verdicts cannot be listed here. ',
      'Use ', h('code', {}, 'clemmys measure'), ' for the local runtime\'s measurement.'));
  } else {
    const rts = att.runtimes || [];
    main.append(table('Runtimes and their evidence', ['Runtime', 'TEE', 'Measurement', 'Verdict', 'Details'],
      rts.map((r) => [
        h('span', { class: 'mono' }, short(r.id ?? r.runtime ?? r.key ?? '')),
        String(r.tee ?? r.platform ?? tee) + (r.simulated ?? att.simulated ? ' (simulated)' : ''),
        h('code', { class: 'measurement' }, r.measurement ?? '—'),
        runtimeVerdict(r),
        h('details', {}, h('summary', {}, 'Evidence claims'), h('pre', { class: 'json' }, pretty(r))),
      ])));
  }
  if (att.kms) {
    main.append(h('h2', {}, 'Key management service'), h('pre', { class: 'json', id: 'trust-kms' }, pretty(att.kms)));
  }
  main.append(h('h2', {}, 'Namespace policy'));
  const p = att.policy || {};
  const ms = p.measurements || [];
  main.append(h('p', {}, ms.length ? 'Keys are released only to runtimes with one of these measurements:' : 'The policy pins no measurement.'));
  if (ms.length) main.append(h('ul', { class: 'mono', id: 'policy-measurements' }, ms.map((m) => h('li', {}, h('code', {}, m)))));
  main.append(h('details', {}, h('summary', {}, 'The whole policy'), h('pre', { class: 'json', id: 'trust-policy' }, pretty(p))));
}

function short(id) { return typeof id === 'string' && id.length > 24 ? id.slice(0, 24) + '…' : String(id); }

function runtimeVerdict(r) {
  const v = r.verdict ?? r.verified ?? r.status;
  if (v === true) return h('span', { class: 'status status-0' }, 'verified');
  if (v === false) return h('span', { class: 'status status-3' }, 'not verified' + (r.reason ? ': ' + r.reason : ''));
  if (v === undefined) return '—';
  const ok = /^(ok|verified|pass|valid|trusted)/i.test(String(v));
  return h('span', { class: 'status ' + (ok ? 'status-0' : 'status-3') }, String(v) + (r.reason ? ': ' + r.reason : ''));
}

function verdict(att) {
  if (att.runtimes === null) return att.simulated ? 'simulated; not verifiable from this gateway' : 'not available from this gateway';
  const v = att.verdict ?? att.verified;
  let text;
  if (v !== undefined) text = typeof v === 'boolean' ? (v ? 'verified' : 'not verified') : String(v);
  else if (!(att.runtimes || []).length) text = 'no runtime holds this namespace\'s keys yet';
  else text = att.runtimes.every((r) => /^(ok|verified|pass|valid|true)/i.test(String(r.verdict ?? r.verified ?? r.status))) ? 'verified' : 'see the runtimes below';
  return att.simulated ? text + ' (simulated evidence)' : text;
}
