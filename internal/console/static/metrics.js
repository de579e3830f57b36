// Metrics of the last hour, computed in the browser from the activation
// list (at most maxRecords records): invocations per minute, error rate
// and p50/p99 duration per action, drawn as small SVG charts.
import { call, nsPath } from './api.js';
import { h, s, clear, table, errorBox, fmtDuration, uid } from './ui.js';

const hourMs = 60 * 60 * 1000;
const pageSize = 200;
const maxRecords = 2000;

export async function fetchLastHour(now) {
  const since = now - hourMs;
  const out = [];
  for (let skip = 0; skip < maxRecords; skip += pageSize) {
    const q = new URLSearchParams({ limit: String(pageSize), skip: String(skip), since: String(since) });
    const { data } = await call('GET', nsPath + '/activations?' + q);
    out.push(...data);
    if (data.length < pageSize) break;
  }
  return out.filter((a) => a.start >= since);
}

export function quantile(sorted, q) {
  if (!sorted.length) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

// summarize groups activations per action: per-minute counts (60 bins
// ending at now), errors, and duration quantiles of the completed ones.
export function summarize(acts, now) {
  const by = new Map();
  const all = { name: 'all actions', bins: new Array(60).fill(0), errBins: new Array(60).fill(0), durations: [], count: 0, errors: 0 };
  for (const a of acts) {
    let m = by.get(a.name);
    if (!m) by.set(a.name, m = { name: a.name, bins: new Array(60).fill(0), errBins: new Array(60).fill(0), durations: [], count: 0, errors: 0 });
    const bin = 59 - Math.min(59, Math.floor((now - a.start) / 60000));
    for (const t of [m, all]) {
      t.count++;
      t.bins[bin]++;
      if (a.end) {
        t.durations.push(a.duration);
        if (a.statusCode !== 0) { t.errors++; t.errBins[bin]++; }
      }
    }
  }
  const fin = (m) => {
    m.durations.sort((x, y) => x - y);
    m.p50 = quantile(m.durations, 0.5);
    m.p99 = quantile(m.durations, 0.99);
    m.errorRate = m.durations.length ? m.errors / m.durations.length : 0;
    return m;
  };
  return { all: fin(all), actions: [...by.values()].map(fin).sort((x, y) => y.count - x.count) };
}

function spark(m, w, hgt, label) {
  const max = Math.max(1, ...m.bins);
  const bw = w / 60;
  const id = uid('spark');
  const svg = s('svg', { viewBox: '0 0 ' + w + ' ' + hgt, width: w, height: hgt, class: 'spark', role: 'img', 'aria-labelledby': id });
  svg.append(s('title', { id }, label + ': ' + m.count + ' invocations in the last hour, ' + m.errors + ' errors; peak ' + max + ' per minute'));
  svg.append(s('line', { x1: 0, x2: w, y1: hgt - 0.5, y2: hgt - 0.5, class: 'tick' }));
  m.bins.forEach((n, i) => {
    if (!n) return;
    const bh = (n / max) * (hgt - 2);
    svg.append(s('rect', { x: i * bw, y: hgt - bh, width: Math.max(bw - 0.5, 0.5), height: bh, class: 'bar-ok' }));
    const e = m.errBins[i];
    if (e) {
      const eh = (e / max) * (hgt - 2);
      svg.append(s('rect', { x: i * bw, y: hgt - eh, width: Math.max(bw - 0.5, 0.5), height: eh, class: 'bar-err' }));
    }
  });
  return svg;
}

function latency(m, scale) {
  const w = 140, id = uid('lat');
  const svg = s('svg', { viewBox: '0 0 ' + w + ' 22', width: w, height: 22, class: 'spark', role: 'img', 'aria-labelledby': id });
  svg.append(s('title', { id }, 'p50 ' + m.p50 + ' ms, p99 ' + m.p99 + ' ms'));
  svg.append(s('rect', { x: 0, y: 2, width: Math.max(1, (m.p50 / scale) * w), height: 8, class: 'bar-p50' }));
  svg.append(s('rect', { x: 0, y: 12, width: Math.max(1, (m.p99 / scale) * w), height: 8, class: 'bar-p99' }));
  return svg;
}

export async function metricsView(main, signal) {
  main.append(h('h1', {}, 'Metrics, last hour'));
  const body = h('div', { id: 'metrics-body' }, 'Loading…');
  main.append(h('p', { class: 'hint' }, 'Computed in the browser from this namespace\'s activation records of the last hour (up to ' + maxRecords + '), component activations of sequences included. Refreshes every 10 s.'), body);
  let timer;
  const load = async () => {
    if (signal.aborted) return;
    const now = Date.now();
    try {
      const sum = summarize(await fetchLastHour(now), now);
      if (signal.aborted) return;
      clear(body);
      const a = sum.all;
      body.append(h('section', { class: 'card', 'aria-labelledby': 'm-all' },
        h('h2', { id: 'm-all' }, 'All actions'),
        h('p', {}, a.count + ' invocations, error rate ' + (a.errorRate * 100).toFixed(1) + ' %, p50 ' + fmtDuration(a.p50) + ', p99 ' + fmtDuration(a.p99) + '.'),
        spark(a, 600, 60, 'Invocations per minute, all actions'),
        h('ul', { class: 'legend' }, h('li', {}, h('span', { class: 'swatch bar-ok', 'aria-hidden': 'true' }), 'invocations per minute'),
          h('li', {}, h('span', { class: 'swatch bar-err', 'aria-hidden': 'true' }), 'errors per minute'),
          h('li', {}, h('span', { class: 'swatch bar-p50', 'aria-hidden': 'true' }), 'p50'),
          h('li', {}, h('span', { class: 'swatch bar-p99', 'aria-hidden': 'true' }), 'p99'))));
      const scale = Math.max(1, ...sum.actions.map((m) => m.p99));
      body.append(table('Per action', ['Action', 'Invocations', 'Per minute (60 min)', 'Error rate', 'p50', 'p99', 'Duration'],
        sum.actions.map((m) => [m.name, String(m.count), spark(m, 180, 30, m.name), (m.errorRate * 100).toFixed(1) + ' %',
          fmtDuration(m.p50), fmtDuration(m.p99), latency(m, scale)])));
    } catch (e) {
      clear(body);
      body.append(errorBox(e));
    }
    if (!signal.aborted) timer = setTimeout(load, 10000);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  await load();
}
