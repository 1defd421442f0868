// Glass-to-glass video latency through Conclave's SFU, with the E2EE
// transform and without it, alternating legs in one run (see
// bench/glass-to-glass, which runs this inside a loopback-only network
// namespace, and docs/benchmarks.md for what is measured).
//
// node bench/glass-to-glass.mjs [--rounds N] [--seconds S] [--warmup S] [--fps F] [--json FILE]
// Defaults: 6 rounds, each one E2EE leg and one plain leg of 10 s after a 3 s
// warm-up, 30 frames/s. The report goes to stdout (JSON, then a table).

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BINARY, ROOT, openBrowser, startServer } from '../e2e/harness.js';

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    fps: { type: 'string', default: '30' },
    json: { type: 'string' },
  },
});
const rounds = Number(opts.rounds);
const seconds = Number(opts.seconds);
const warmupSeconds = Number(opts.warmup);
const fps = Number(opts.fps);
for (const [k, v] of Object.entries({ rounds, seconds, warmupSeconds, fps })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k} must be a positive number`);
}
/** A leg that reads back fewer frames than this is a broken pipeline, not a fast one. */
const MIN_FRAMES = Math.max(10, Math.floor(seconds * fps * 0.25));

const USER = 'bench';
const PASSWORD = 'glass to glass bench';
/** The page modules, served from the server's origin by the browser (page.route), not by the server. */
const PAGE_MODULES = ['glass-to-glass-page.js', 'frame-stamp.js'];

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function summary(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  const r = (x) => Math.round(x * 10) / 10;
  return {
    frames: v.length,
    p50: r(quantile(v, 0.5)),
    p95: r(quantile(v, 0.95)),
    p99: r(quantile(v, 0.99)),
    mean: r(v.reduce((a, b) => a + b, 0) / (v.length || 1)),
  };
}

const server = await startServer();
let browser;
let failure = null;
const legs = [];
try {
  server.createUser(USER, PASSWORD);
  browser = await openBrowser('glass-to-glass');
  const { page } = browser;
  page.setDefaultTimeout((seconds + warmupSeconds + 60) * 1000);
  for (const name of PAGE_MODULES) {
    const body = fs.readFileSync(path.join(ROOT, 'bench', name), 'utf8');
    await page.route(`${server.url}/bench/${name}`, (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body }));
  }
  // A document the server served (its health check), rewritten in place: a
  // document that page.route made up would not be in the loopback address
  // space, and Chromium's local network access checks would refuse its
  // WebSocket to 127.0.0.1.
  await page.goto(`${server.url}/healthz`);
  await page.setContent('<!doctype html><meta charset="utf-8"><title>glass-to-glass</title>'
    + '<body><script type="module" src="/bench/glass-to-glass-page.js"></script></body>');
  await page.waitForFunction(() => window.bench !== undefined);
  await page.evaluate(([u, p]) => window.bench.signIn(u, p), [USER, PASSWORD]);
  const version = browser.context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent));
  console.error(`server ${BINARY}, Chromium ${version}; ${rounds} round(s) alternating E2EE and plain (A B B A …), ${seconds} s each after ${warmupSeconds} s warm-up, ${fps} fps`);
  for (let round = 1; round <= rounds; round += 1) {
    // E2EE first in odd rounds, last in even ones (A B B A ...), so a load
    // that rises or falls through the run weighs on both legs alike.
    for (const e2ee of round % 2 ? [true, false] : [false, true]) {
      const r = await page.evaluate((a) => window.bench.leg(a), { e2ee, seconds, warmupSeconds, fps });
      const name = `${e2ee ? 'e2ee' : 'plain'}#${round}`;
      const s = summary(r.samples.map(([display]) => display));
      console.error(`${name}: ${s.frames} frames read back, p50 ${s.p50} ms, p95 ${s.p95} ms, p99 ${s.p99} ms; `
        + `decoded ${r.decoded}, ${r.size}, ${Math.round(r.bytesPerFrame)} B/frame, unreadable ${r.unreadable}, errors ${r.errors.length}`);
      legs.push({ name, ...r });
      if (r.errors.length) throw new Error(`${name}: ${r.errors.join('; ')}`);
      if (s.frames < MIN_FRAMES) {
        throw new Error(`${name}: only ${s.frames} frames read back (decoded ${r.decoded}, presented ${r.presented}, drawn ${r.drawn}); the pipeline is broken, no latency to report`);
      }
      if (e2ee) {
        // The frames went through the real worker: it encrypted and decrypted them.
        const w = r.worker;
        if (!(w?.sender?.sent > 0 && w?.receiver?.received > 0)) {
          throw new Error(`${name}: the E2EE worker did not process frames: ${JSON.stringify(w)}`);
        }
      }
    }
  }
} catch (err) {
  failure = err;
} finally {
  if (browser) await browser.close();
  await server.stop('glass-to-glass-server.log');
}
if (failure) {
  console.error(`glass-to-glass: FAILED: ${failure.message}`);
  process.exit(1);
}

const pick = (e2ee) => legs.filter((l) => l.e2ee === e2ee);
const all = (e2ee, i) => pick(e2ee).flatMap((l) => l.samples.map((s) => s[i]));
const mean = (xs) => {
  const v = xs.filter((x) => x !== null && Number.isFinite(x));
  return v.length ? Math.round((v.reduce((a, b) => a + b, 0) / v.length) * 100) / 100 : null;
};
const per = (e2ee) => ({
  display: summary(all(e2ee, 0)),
  receive: summary(all(e2ee, 1)),
  unreadable: pick(e2ee).reduce((a, l) => a + l.unreadable, 0),
  decoded: pick(e2ee).reduce((a, l) => a + l.decoded, 0),
  dropped: pick(e2ee).reduce((a, l) => a + l.dropped, 0),
  bytesPerFrame: Math.round(mean(pick(e2ee).map((l) => l.bytesPerFrame))),
  encodeMsPerFrame: mean(pick(e2ee).map((l) => l.encodeMsPerFrame)),
  jitterBufferMs: mean(pick(e2ee).map((l) => l.jitterBufferMs)),
  sizes: [...new Set(pick(e2ee).map((l) => l.size))],
  legP50: pick(e2ee).map((l) => summary(l.samples.map((s) => s[0])).p50),
});
const e = per(true);
const p = per(false);
const diff = (k) => Math.round((e.display[k] - p.display[k]) * 10) / 10;
// Each round's E2EE leg against the plain leg right after it: drift in the
// machine's load over the run cancels out of these more than out of the pooled figures.
const pairs = pick(true).map((l, i) => {
  const a = summary(l.samples.map((x) => x[0]));
  const b = summary(pick(false)[i].samples.map((x) => x[0]));
  return Math.round((a.p50 - b.p50) * 10) / 10;
});
const sortedPairs = [...pairs].sort((x, y) => x - y);
const mid = sortedPairs.length >> 1;
const pairMedian = sortedPairs.length % 2 ? sortedPairs[mid] : Math.round(((sortedPairs[mid - 1] + sortedPairs[mid]) / 2) * 10) / 10;
const report = {
  what: 'glass-to-glass: canvas draw + requestFrame (send) to the frame\'s expectedDisplayTime at the receiver, through the SFU; ms',
  config: { rounds, seconds, warmupSeconds, fps, order: 'e2ee, plain in odd rounds; plain, e2ee in even ones', server: BINARY },
  e2ee: e,
  plain: p,
  difference: { p50: diff('p50'), p95: diff('p95'), p99: diff('p99'), mean: diff('mean') },
  pairedP50Differences: pairs,
  pairedP50DifferenceMedian: pairMedian,
  legs: legs.map((l) => ({ name: l.name, ...summary(l.samples.map((s) => s[0])), decoded: l.decoded, unreadable: l.unreadable, worker: l.worker })),
};
console.log(JSON.stringify(report, null, 2));
if (opts.json) fs.writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
const row = (name, s, x) => `| ${name} | ${s.frames} | ${s.p50} | ${s.p95} | ${s.p99} | ${s.mean} | ${x.jitterBufferMs} | ${x.bytesPerFrame} |`;
console.log(['',
  '| leg | frames | p50 ms | p95 ms | p99 ms | mean ms | jitter buffer ms | bytes/frame |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  row('E2EE (SFrame transform)', e.display, e),
  row('no transform', p.display, p),
  `| difference | | ${diff('p50')} | ${diff('p95')} | ${diff('p99')} | ${diff('mean')} | | |`,
  '',
  `p50 per leg (ms), E2EE: ${e.legP50.join(', ')}; no transform: ${p.legP50.join(', ')}`,
  `E2EE − no transform, p50 per round (ms): ${pairs.join(', ')}; median ${pairMedian}`,
  `receive time − send time p50 (ms): E2EE ${e.receive.p50}, no transform ${p.receive.p50}`,
  `picture size: E2EE ${e.sizes.join(', ')}; no transform ${p.sizes.join(', ')}`,
].join('\n'));
