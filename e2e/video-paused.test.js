// What a member behind a slow downlink sees (issue 21 item 4): a host and two
// guests in Chromium, end-to-end encryption on, each sending its fake camera
// and microphone, on a server that holds back what a congested member's link
// cannot carry (`media_congestion_hold_back = true`, from a config file).
// Then one guest's downlink, and only that member's, goes through a
// drop-tail bottleneck (bench/impair's cap on every local UDP port of that
// browser, fed by an NFQUEUE rule for those ports alone) too narrow for both
// videos' smallest layers beside the audio. Within a minute that guest's
// page shows one tile saying "Video paused: your connection is too slow"
// while the other tile goes on playing and the audio still comes; the two
// others, whose links are fine, go on playing both videos and see no such
// notice. Then the link recovers (the cap and its rule go): the notice goes
// and both videos play again, and nothing of the cap is left behind.
// e2e/artifacts/video-paused-capped.png is the capped member's page while
// a video is paused.
// Functional, not timed: it asserts what a person sees, with generous
// waits for the server's hold-back ladder (video_pause.rs: a pause after
// 10 s of shortfall, a resume after probes prove the rate for 6 s).
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import {
  eventually, hostStartsMeeting, localUdpPorts, nfqueueRules, openBrowser, received, screenshot, selectedPair, startImpair, startServer, storySteps, tileFrames,
} from './harness.js';

const HOST = 'ada';
const GUESTS = ['Grace', 'Linus'];
/** The guest behind the slow downlink. */
const CAPPED = 'Linus';
const PASSWORD = 'correct horse battery staple';
const PAUSED = 'Video paused: your connection is too slow';
/**
 * The capped member's downlink, kbit/s, and its drop-tail buffer, ms: the
 * network bench's capped leg (docs/benchmarks.md, "The capped member"). Two
 * videos' smallest layers (~150 kbit/s each) and two Opus streams (~90
 * kbit/s stripped of RED, ~200 with it) do not fit; one video and the audio
 * do, so the server pauses exactly one video and keeps the other.
 */
const CAP_KBPS = 300;
const CAP_QUEUE_MS = 250;
/** How long the server may take to pause a video once the link is capped. */
const PAUSE_WITHIN_MS = 60_000;
/** How long it may take to resume it once the link recovers. */
const RESUME_WITHIN_MS = 90_000;

/** The tiles of the page's video grid, as a person finds them. */
const tiles = (page) => page.getByRole('list', { name: 'Video tiles', exact: true }).getByRole('listitem');

/**
 * The names on the page's tiles that say their video is paused (visible
 * text, role status), read in one go: a notice that goes between finding
 * the tiles and reading their names must not leave a locator waiting for it.
 */
async function pausedTiles(page) {
  const paused = tiles(page).filter({ has: page.getByRole('status').filter({ hasText: PAUSED }) });
  return (await paused.locator('.tile-name').allInnerTexts()).map((n) => n.trim());
}

/** How many of the page's inbound streams of `kind` grew by more than `min` from `before` to `now` (`received` results). */
const streamsGrowing = (before, now, kind, min) => Object.entries(now.streams)
  .filter(([id, s]) => s.kind === kind && s.count - (before.streams[id]?.count || 0) > min).length;

describe('a member behind a slow downlink', () => {
  let server;
  let configDir;
  const browsers = {};
  let impair = null;
  let capped = [];
  const names = [HOST, ...GUESTS];
  const step = storySteps('video-paused-', () => Object.entries(browsers));
  const page = (name) => browsers[name].page;
  const others = (name) => names.filter((n) => n !== name);

  /** Waits until `viewer` plays `name`'s video on: its tile's frames grow by more than 10. */
  async function goesOnPlaying(viewer, name, what, timeout = 15_000) {
    const frames = await tileFrames(page(viewer), name);
    await eventually(() => tileFrames(page(viewer), name), (n) => n > frames + 10, { timeout, what: `${name}'s tile goes on playing at ${viewer} ${what}` });
  }

  before(async () => {
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-e2e-video-paused-'));
    const config = path.join(configDir, 'conclave.toml');
    fs.writeFileSync(config, 'media_congestion_hold_back = true\n');
    // The router's pause and resume decisions, in the log kept as an artifact.
    const log = 'info,conclave_media::router::simulcast=debug,conclave_media::video_pause=debug';
    server = await startServer({ args: ['--config', config], env: { RUST_LOG: process.env.RUST_LOG || log } });
    server.createUser(HOST, PASSWORD);
    for (const n of names) browsers[n] = await openBrowser(`video-paused-${n}`);
  });

  after(async () => {
    // A failed step must not leave the queue rule or impair behind for the
    // tests that run after this one in the same namespace.
    await impair?.stop();
    for (const b of Object.values(browsers)) await b.close();
    if (server) await server.stop('video-paused-server.log');
    if (configDir) fs.rmSync(configDir, { recursive: true, force: true });
  });

  step('a host and two guests meet with E2EE, and each plays both others\' videos', async () => {
    const invite = await hostStartsMeeting(page(HOST), server.url, HOST, PASSWORD);
    for (const name of GUESTS) {
      const p = page(name);
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await page(HOST).getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor({ timeout: 20_000 });
    }
    for (const viewer of names) {
      await page(viewer).getByRole('region', { name: 'Security', exact: true }).getByRole('button', { name: /End-to-end encrypted/ }).waitFor({ timeout: 20_000 });
      for (const other of others(viewer)) {
        await eventually(() => tileFrames(page(viewer), other), (n) => n > 10, { timeout: 30_000, what: `${other}'s video plays at ${viewer}` });
        await goesOnPlaying(viewer, other, 'before the cap');
      }
      assert.deepEqual(await pausedTiles(page(viewer)), [], `no tile says its video is paused at ${viewer}`);
    }
  });

  step(`behind a ${CAP_KBPS} kbit/s downlink, ${CAPPED} sees one video paused with a notice and the other playing; the others see no change`, async () => {
    const started = Date.now();
    // Every local UDP port of the capped browser, behind one bottleneck: its
    // ICE may move to another of them while one is congested.
    capped = await localUdpPorts(page(CAPPED));
    impair = await startImpair(['--cap-kbps', String(CAP_KBPS), '--cap-queue-ms', String(CAP_QUEUE_MS), ...capped.flatMap((p) => ['--cap-port', String(p)])], { ports: capped });
    assert.equal(nfqueueRules().length, capped.length, `one queue rule per capped port (${capped}): ${nfqueueRules()}`);

    const paused = await eventually(() => pausedTiles(page(CAPPED)), (ns) => ns.length > 0, { timeout: PAUSE_WITHIN_MS, what: `a tile says "${PAUSED}" at ${CAPPED}` });
    const pausedAfter = Date.now() - started;
    assert.equal(paused.length, 1, `exactly one tile says its video is paused at ${CAPPED}: ${paused}`);
    const [held] = paused;
    const kept = others(CAPPED).find((n) => n !== held);
    assert.ok(others(CAPPED).includes(held), `the paused tile is another member's (${held})`);

    // Still capped: impair is alive and the capped member's media crosses
    // the cap (its selected pair is on one of the capped ports).
    assert.ok(impair.alive(), `impair is still running: ${impair.said()}`);
    const report = await eventually(() => impair.reports.at(-1), (r) => r && r.cap_passed > 200, { what: 'the cap has passed the capped member\'s packets' });
    const pair = await selectedPair(page(CAPPED));
    assert.equal(pair?.local.protocol, 'udp', `${CAPPED}'s media goes over UDP: ${JSON.stringify(pair)}`);
    assert.ok(capped.includes(pair.local.port), `${CAPPED}'s selected port ${pair.local.port} is capped (${capped})`);

    // What the capped member sees: the kept video plays on while the paused
    // one stands still, and both others' audio still arrives.
    // (Frames already on their way when the notice came, through the cap's
    // queue and the jitter buffer, may still be shown: a still tile is one
    // that showed none over a second in which the other played on.)
    let previous = null;
    await eventually(async () => {
      const now = { held: await tileFrames(page(CAPPED), held), kept: await tileFrames(page(CAPPED), kept) };
      const seen = previous && { held: now.held - previous.held, kept: now.kept - previous.kept };
      previous = now;
      return seen;
    }, (d) => d && d.held === 0 && d.kept > 5, { timeout: 20_000, every: 1000, what: `${held}'s paused tile stands still at ${CAPPED} while ${kept}'s plays` });
    assert.deepEqual(await pausedTiles(page(CAPPED)), [held], `still one paused tile at ${CAPPED}`);
    // What the capped member sees, for a person to look at.
    await screenshot(page(CAPPED), 'video-paused-capped');
    const first = await received(page(CAPPED));
    const audio = await eventually(() => received(page(CAPPED)), (r) => streamsGrowing(first, r, 'audio', 50) >= 2,
      { timeout: 20_000, what: `${CAPPED} goes on receiving both others' audio` });

    // Nobody else is held back: the two uncapped members play both videos.
    for (const viewer of others(CAPPED)) {
      for (const other of others(viewer)) await goesOnPlaying(viewer, other, `while ${CAPPED} is capped`);
      assert.deepEqual(await pausedTiles(page(viewer)), [], `no tile says its video is paused at ${viewer}`);
    }
    const last = impair.reports.at(-1) || report;
    console.log(`video paused: ${CAPPED} capped at ${CAP_KBPS} kbit/s (ports ${capped}); ${held}'s video paused ${pausedAfter} ms after the cap, ${kept}'s kept; `
      + `audio packets ${audio.audioPackets - first.audioPackets} in the check; cap passed ${last.cap_passed}, dropped ${last.cap_dropped}`);
  });

  step(`when the link recovers, ${CAPPED}'s notice goes and both videos play again`, async () => {
    const started = Date.now();
    const { proc } = impair;
    await impair.stop();
    assert.deepEqual(nfqueueRules(), [], 'no NFQUEUE rule left');
    assert.ok(proc.exitCode !== null || proc.signalCode !== null, 'impair ended');
    await eventually(() => pausedTiles(page(CAPPED)), (ns) => ns.length === 0, { timeout: RESUME_WITHIN_MS, what: `no tile says "${PAUSED}" at ${CAPPED}` });
    const resumedAfter = Date.now() - started;
    for (const viewer of names) {
      for (const other of others(viewer)) await goesOnPlaying(viewer, other, 'after the link recovered', 30_000);
      assert.deepEqual(await pausedTiles(page(viewer)), [], `no tile says its video is paused at ${viewer}`);
    }
    console.log(`video paused: resumed ${resumedAfter} ms after the cap went`);
  });

  step('nothing of the cap is left behind: no queue rule, no impair process', async () => {
    const { proc } = impair;
    assert.deepEqual(nfqueueRules(), [], 'no NFQUEUE rule left');
    assert.throws(() => process.kill(proc.pid, 0), { code: 'ESRCH' }, 'no impair process left');
  });
});
