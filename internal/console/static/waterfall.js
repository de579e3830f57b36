// The waterfall of a sequence activation: one row per component, its
// time split into queue wait, runtime start-up (cold) or warm reuse,
// execution and sealing, from what each component's record carries:
// start and end (the controller's clock), waitTime (from the controller
// taking the step to the runtime starting it, start-up included),
// initTime (loading the function: a cold start; absent when warm) and
// sealTimeUs (the runtime sealing the result, logs and receipt, in µs;
// absent from older records, whose sealing counts as execution).
import { call, nsPath, seg } from './api.js';
import { h, s, clear, fmtDuration, table, statusBadge, ann, uid } from './ui.js';
import { actLink } from './entities.js';

const phases = [
  { key: 'queue', label: 'Queue wait' },
  { key: 'init', label: 'Cold start' },
  { key: 'warm', label: 'Warm reuse' },
  { key: 'exec', label: 'Execution' },
  { key: 'seal', label: 'Sealing' },
];

// fmtMs shows milliseconds, with three decimals below 10 ms (sealing
// takes microseconds).
function fmtMs(v) { return v < 10 && !Number.isInteger(v) ? v.toFixed(3) : String(Math.round(v)); }

function axisLabel(v) { return v < 10 && !Number.isInteger(v) ? v.toFixed(1) + ' ms' : fmtDuration(Math.round(v)); }

export function phasesOf(c) {
  const total = Math.max((c.end || c.start) - c.start, 0);
  const wait = Math.min(Math.max(Number(ann(c, 'waitTime') || 0), 0), total);
  const init = Math.min(Math.max(Number(ann(c, 'initTime') || 0), 0), wait);
  const seal = Math.max(Number(ann(c, 'sealTimeUs') || 0) / 1000, 0); // the controller bounds it by the step's time
  return { total, queue: wait - init, init, warm: init === 0, exec: Math.max(total - wait - seal, 0), seal };
}

export async function waterfall(section, seq) {
  const ids = (seq.logs || []).filter((x) => /^[0-9a-f]{32}$/.test(x));
  const comps = await Promise.all(ids.map((id) => call('GET', nsPath + '/activations/' + seg(id)).then((r) => r.data)));
  clear(section);
  section.append(h('h2', { id: 'wf-title' }, 'Chain waterfall'));
  if (!comps.length) {
    section.append(h('p', {}, 'This sequence ran no components.'));
    return;
  }
  const t0 = Math.min(seq.start, ...comps.map((c) => c.start));
  const t1 = Math.max(seq.end || 0, ...comps.map((c) => c.end || c.start));
  const span = Math.max(t1 - t0, 1);
  const W = 720, label = 150, rowH = 30, barH = 18, top = 24;
  const x = (t) => label + ((t - t0) / span) * (W - label - 24);
  const desc = uid('wf-desc');
  const svg = s('svg', {
    viewBox: '0 0 ' + W + ' ' + (top + rowH * comps.length + 10), class: 'waterfall', role: 'img',
    'aria-labelledby': 'wf-title ' + desc,
  });
  svg.append(s('desc', { id: desc }, comps.map((c, i) => {
    const p = phasesOf(c);
    return 'step ' + (i + 1) + ' ' + c.name + ': queue ' + p.queue + ' ms, ' + (p.warm ? 'warm' : 'cold start ' + p.init + ' ms') + ', execution ' + fmtMs(p.exec) + ' ms, sealing ' + fmtMs(p.seal) + ' ms';
  }).join('; ')));
  // Axis: 0 and the span, with a tick at the middle.
  for (const f of [0, 0.5, 1]) {
    const xx = label + f * (W - label - 24);
    svg.append(s('line', { x1: xx, x2: xx, y1: top - 6, y2: top + rowH * comps.length, class: 'tick' }));
    svg.append(s('text', { x: xx, y: 12, class: 'axis', 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' }, axisLabel(f * span)));
  }
  comps.forEach((c, i) => {
    const p = phasesOf(c);
    const y = top + i * rowH;
    const g = s('g', { class: 'row', 'data-step': i + 1 });
    g.append(s('text', { x: 0, y: y + barH - 4, class: 'name' }, (i + 1) + '. ' + c.name));
    // Segments follow each other: a phase shorter than a pixel still
    // shows (a few pixels wide) without hiding the next one.
    let at = c.start, px = x(c.start);
    for (const ph of [['queue', p.queue], [p.warm ? 'warm' : 'init', p.warm ? 0 : p.init], ['exec', p.exec], ['seal', p.seal]]) {
      const [key, ms] = ph;
      const from = Math.max(x(at), px);
      const w = Math.max(x(at + ms) - from, key === 'warm' || key === 'exec' ? 3 : ms > 0 ? 2 : 0);
      if (w > 0) {
        px = from + w;
        const r = s('rect', { x: from, y, width: w, height: barH, class: 'seg seg-' + key, 'data-phase': key });
        r.append(s('title', {}, c.name + ': ' + phases.find((q) => q.key === key).label + (key === 'warm' ? '' : ' ' + fmtMs(ms) + ' ms')));
        g.append(r);
      }
      at += ms;
    }
    svg.append(g);
  });
  section.append(h('ul', { class: 'legend', 'aria-label': 'Legend' },
    phases.map((p) => h('li', {}, h('span', { class: 'swatch seg-' + p.key, 'aria-hidden': 'true' }), p.label))));
  section.append(h('div', { class: 'wf-wrap' }, svg));
  section.append(table('Component timings (ms)', ['Step', 'Activation', 'Status', 'Queue wait', 'Start-up', 'Execution', 'Sealing', 'Total'],
    comps.map((c, i) => {
      const p = phasesOf(c);
      return [String(i + 1) + '. ' + c.name, actLink(c.activationId), statusBadge(c.statusCode, !c.end), String(p.queue),
        p.warm ? 'warm' : 'cold ' + p.init, fmtMs(p.exec), ann(c, 'sealTimeUs') === undefined ? '—' : fmtMs(p.seal), String(p.total)];
    })));
}
