// The trust panel, from GET /api/v1/clemmys/attestation: the TEE, the
// KMS's signing key, the namespace's policy, and the runtimes that hold
// the namespace's keys with the KMS's certificates of them. The browser
// checks what it can on its own: each certificate's ed25519 signature
// under the KMS key (WebCrypto), that it names this namespace, and that
// its measurement is in the current policy. The TEE evidence of the KMS
// and the gateway is not verified here: this page is served by the very
// gateway it would check; `clemmys attest` verifies it independently.
import { call } from './api.js';
import { h, pretty, table, errorBox, fmtTime } from './ui.js';
import { decode, fromBase64, fromHex, toHex } from './cbor.js';

const certContext = new TextEncoder().encode('clemmys/v1 runtime certificate\0');

export async function trustView(main) {
  main.append(h('h1', {}, 'Trust'));
  let att;
  try {
    att = (await call('GET', '/api/v1/clemmys/attestation')).data;
  } catch (e) {
    main.append(errorBox(e));
    return;
  }
  const tee = att.tee || 'unknown';
  if (att.simulated) {
    main.append(h('div', { class: 'banner sim', role: 'alert', id: 'simulated-banner' },
      h('strong', {}, 'Simulated TEE. '),
      'This deployment runs on "sim": a software simulation with no hardware protection. The host can read every function\'s code, data and keys. The evidence and verdicts below check the protocol only.'));
  } else {
    main.append(h('div', { class: 'banner hw' }, h('strong', {}, 'Hardware TEE: ' + tee + '. '),
      'The KMS releases keys only to runtimes whose evidence verifies against the vendor\'s roots and this namespace\'s policy.'));
  }
  const checks = await Promise.all((att.runtimes || []).map((r) => checkRuntime(r, att)));
  main.append(h('dl', { class: 'facts', id: 'trust-facts' },
    h('dt', {}, 'TEE type'), h('dd', { id: 'trust-tee' }, tee + (att.simulated ? ' (simulated)' : '')),
    h('dt', {}, 'Namespace'), h('dd', {}, att.namespace || '—'),
    h('dt', {}, 'Verdict'), h('dd', { id: 'trust-verdict' }, verdict(att, checks)),
    h('dt', {}, 'KMS signing key'), h('dd', {}, h('code', { class: 'measurement' }, att.kms?.signKey || '—')),
    h('dt', {}, 'Gateway TLS key'), h('dd', {}, h('code', { class: 'measurement' }, att.gateway?.tlsKeyDigest || '—'))));
  main.append(h('p', { class: 'hint' }, 'The browser checked the certificates below. The TEE evidence of the KMS and of the gateway (',
    String(byteLen(att.kms?.evidence)), ' and ', String(byteLen(att.gateway?.evidence)),
    ' bytes) is not verified in this page, which the gateway itself serves: run ', h('code', {}, 'clemmys attest'),
    ' on a machine you trust for a verification that does not rely on this gateway (docs/verify.md).'));

  main.append(h('h2', {}, 'Runtimes holding this namespace\'s keys'));
  main.append(table('Runtimes and the KMS\'s certificates of them', ['Runtime', 'TEE', 'Measurement', 'Security version', 'Certified', 'Last key release', 'Verdict'],
    (att.runtimes || []).map((r, i) => [
      h('span', { class: 'mono', title: r.runtimeId }, short(r.runtimeId)),
      String(r.platform) + (r.platform === 'sim' ? ' (simulated)' : '') + (r.debug ? ', debug' : ''),
      h('code', { class: 'measurement' }, r.measurement || '—'),
      String(r.securityVersion ?? 0),
      fmtTime(r.issued),
      fmtTime(r.lastRelease) + (r.releases ? ' (' + r.releases + ' releases)' : ''),
      verdictCell(checks[i]),
    ])));

  main.append(h('h2', {}, 'Namespace policy'));
  const p = att.policy || {};
  const ms = policyMeasurements(p);
  main.append(h('p', {}, ms.length ? 'Keys are released only to runtimes with one of these measurements:' : 'The policy pins no measurement.'));
  if (ms.length) main.append(h('ul', { class: 'mono', id: 'policy-measurements' }, ms.map((m) => h('li', {}, h('code', {}, m)))));
  main.append(h('p', {}, 'Debug runtimes: ' + (p.allowDebug ? 'allowed' : 'refused') + '; minimum security version ' + (p.minSecurityVersion ?? 0) + '.'));
  main.append(h('details', {}, h('summary', {}, 'The whole policy'), h('pre', { class: 'json', id: 'trust-policy' }, pretty(p))));
  main.append(h('details', {}, h('summary', {}, 'The attestation document'), h('pre', { class: 'json' }, pretty(att))));
}

function byteLen(b64) { return typeof b64 === 'string' ? Math.floor(b64.length * 3 / 4) : 0; }

function short(id) { return typeof id === 'string' && id.length > 20 ? id.slice(0, 20) + '…' : String(id ?? ''); }

function policyMeasurements(p) {
  return [...(p.measurements || []), ...(p.snp?.measurements || []), ...(p.tdx?.mrtd || [])];
}

// checkRuntime verifies a runtime's certificate: {ok, problems[]}.
async function checkRuntime(r, att) {
  const problems = [];
  try {
    const signed = decode(fromBase64(r.cert));
    const cert = signed.get(1), sig = signed.get(2);
    if (!(cert instanceof Uint8Array) || !(sig instanceof Uint8Array)) throw new Error('malformed certificate');
    const key = await crypto.subtle.importKey('raw', fromHex(att.kms.signKey), { name: 'Ed25519' }, false, ['verify']);
    const msg = new Uint8Array(certContext.length + cert.length);
    msg.set(certContext);
    msg.set(cert, certContext.length);
    if (!(await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, msg))) problems.push('the KMS signature does not verify');
    const c = decode(cert);
    if (c.get(3) !== att.namespace) problems.push('certified for another namespace');
    const m = c.get(5) instanceof Uint8Array ? toHex(c.get(5)) : '';
    if (m !== r.measurement) problems.push('the listed measurement is not the certified one');
    if (c.get(4) !== r.platform) problems.push('the listed TEE is not the certified one');
    const pol = att.policy || {};
    const allowed = policyMeasurements(pol);
    if (allowed.length && !allowed.includes(m)) problems.push('measurement not in the current policy');
    if (c.get(7) === true && !pol.allowDebug) problems.push('a debug runtime, which the policy refuses');
    if ((c.get(6) ?? 0) < (pol.minSecurityVersion ?? 0)) problems.push('security version below the policy\'s minimum');
  } catch (e) {
    problems.push('cannot check the certificate: ' + e.message);
  }
  return { ok: problems.length === 0, problems };
}

function verdictCell(ch) {
  if (ch.ok) return h('span', { class: 'status status-0 runtime-verdict' }, 'certificate verified');
  return h('span', { class: 'status status-3 runtime-verdict' }, ch.problems.join('; '));
}

function verdict(att, checks) {
  let text;
  if (!checks.length) text = 'no runtime holds this namespace\'s keys yet (they are released at the first invocation)';
  else if (checks.every((c) => c.ok)) text = 'all ' + checks.length + ' runtime certificate' + (checks.length > 1 ? 's' : '') + ' verified under the KMS key, in policy';
  else text = 'PROBLEM: ' + checks.filter((c) => !c.ok).length + ' of ' + checks.length + ' runtime certificates do not check out';
  return att.simulated ? text + ' — simulated TEE: no hardware protection' : text;
}
