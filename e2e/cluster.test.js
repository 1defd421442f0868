// Cluster mode (issue 17) without Redis, through Chromium: a node with
// [cluster] and its own redis-server on loopback. The host starts a meeting;
// Redis is killed; a guest who asks to join and a person who signs in are
// both told "temporarily unavailable" in words, while the host's meeting goes
// on. Redis comes back and the guest's next try reaches the waiting room.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { ARTIFACTS, BINARY, ROOT, eventually, freeTcpPort, hostStartsMeeting, openBrowser, received, screenshot, startServer, storySteps, playsVideoOf, securityCode } from './harness.js';
import { startPostgres, startRedis, stopRedis } from './engines.js';

const PASSWORD = 'correct horse battery staple';
const UNAVAILABLE = 'The service is temporarily unavailable. Try again in a moment.';
const NEW_CODE = 'Reconnected — new security code';

/** `conclave join` as `name`, sending the looped VP8 sample, statistics every 0.5 s; its output collected as it comes. */
function startNative(invite, name) {
  const video = path.join(ROOT, 'samples/video-320x240.ivf');
  const child = spawn(BINARY, ['join', invite, '--name', name, '--send-ivf', video, '--patience', '60', '--stats', '--stats-interval', '0.5'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'conclave_client=info' } });
  const native = { child, out: '', err: '' };
  child.stdout.on('data', (d) => { native.out += d; });
  child.stderr.on('data', (d) => { native.err += d; });
  return native;
}

/** The last security code `conclave join` printed ('' before any). */
function nativeCode(native) {
  const codes = native.err.split('\n')
    .map((l) => /^Security code \(epoch \d+, \d+ (?:person|people) in the encrypted group\): ([\d ]+)$/.exec(l))
    .filter(Boolean);
  return codes.length ? codes[codes.length - 1][1] : '';
}

/** Its last statistics line: reconnections and video frames on its current peer connection. */
function nativeStats(native) {
  const line = native.out.split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) return { reconnects: 0, videoFrames: 0 };
  const s = JSON.parse(line);
  const videoFrames = Object.values(s.received || {}).filter((t) => t.kind === 'video').reduce((n, t) => n + t.frames, 0);
  return { reconnects: s.reconnects || 0, videoFrames };
}

describe('a cluster node without Redis', () => {
  let server;
  let redis;
  let redisPort;
  let dir;
  let invite;
  let host;
  const browsers = [];
  const step = storySteps('cluster-', () => browsers.map((b, i) => [`browser-${i}`, b]));

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-cluster-'));
    redisPort = await freeTcpPort();
    redis = await startRedis(redisPort, dir);
    const config = path.join(dir, 'conclave.toml');
    fs.writeFileSync(config, `
[cluster]
redis_url = "redis://127.0.0.1:${redisPort}"
node_id = "node-a"
internal_url = "http://127.0.0.1:1"
lease_ms = 2000
node_ttl_ms = 2000
`);
    server = await startServer({ args: ['--config', config] });
    server.createUser('ada', PASSWORD);
    server.createUser('bob', PASSWORD);
    await eventually(() => fetch(`${server.url}/readyz`).then((r) => r.status), (s) => s === 200, { what: 'ready' });
  });

  after(async () => {
    for (const b of browsers) await b.close();
    if (server) await server.stop('cluster-server.log');
    if (redis) redis.kill('SIGKILL');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function browser(name) {
    const b = await openBrowser(`cluster-${name}`);
    browsers.push(b);
    return b.page;
  }

  step('the host starts a meeting while Redis is up', async () => {
    host = await browser('host');
    invite = await hostStartsMeeting(host, server.url, 'ada', PASSWORD);
  });

  step('Redis goes away: the node says it is not ready', async () => {
    await stopRedis(redis, redisPort);
    redis = null;
    await eventually(() => fetch(`${server.url}/readyz`).then((r) => r.status), (s) => s === 503, { what: '/readyz 503' });
  });

  step('a guest asking to join is told the service is temporarily unavailable', async () => {
    const p = await browser('guest');
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name' }).fill('Grace');
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await p.getByText(UNAVAILABLE).waitFor();
    await screenshot(p, 'cluster-guest-unavailable');
  });

  step('signing in is refused the same way, with a 503', async () => {
    const p = await browser('bob');
    await p.goto(`${server.url}/signin`);
    await p.getByRole('textbox', { name: 'Username', exact: true }).fill('bob');
    await p.getByLabel('Password', { exact: true }).fill(PASSWORD);
    const answer = p.waitForResponse((r) => r.url().endsWith('/api/v1/auth/signin'));
    await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    const r = await answer;
    assert.equal(r.status(), 503);
    assert.equal((await r.json()).error, 'unavailable');
    await p.getByText(UNAVAILABLE).waitFor();
  });

  step('the host is still in the meeting', async () => {
    await host.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    assert.equal(await host.getByText('The meeting has ended').count(), 0);
    assert.equal(await host.getByText('The server is shutting down, so the meeting ended.').count(), 0);
  });

  step('Redis is back: the guest gets into the waiting room', async () => {
    redis = await startRedis(redisPort, dir);
    await eventually(() => fetch(`${server.url}/readyz`).then((r) => r.status), (s) => s === 200, { what: 'ready again' });
    const p = browsers[1].page;
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await p.getByText('Waiting for the host to let you in').waitFor();
  });
});

// Failover (issue 17): two nodes on one PostgreSQL and one Redis. The
// browsers only ever talk to node-b; the meeting runs on node-0, which node-b
// relays them to. node-0 is killed with SIGKILL mid-meeting: both browsers
// reconnect by themselves, node-b takes the meeting over from Redis, they
// take their seats back with their resume tokens, rebuild the MLS group and
// say so, and end with one security code again, a new one. The same story
// with SIGTERM: node-0 drains, handing the meeting over (its state saved,
// its lease given up) instead of dying with it, and exits.
for (const signal of ['SIGKILL', 'SIGTERM']) describe(`a meeting whose node gets ${signal}`, () => {
  const tag = signal === 'SIGKILL' ? 'failover' : 'drain';
  let dir;
  let redis;
  let stopPostgres;
  let doomed;
  let node;
  let host;
  let guest;
  let waiter;
  let native;
  let codeBefore;
  const browsers = [];
  const step = storySteps(`${tag}-`, () => browsers.map((b, i) => [`browser-${i}`, b]));

  async function browser(name) {
    const b = await openBrowser(`${tag}-${name}`);
    browsers.push(b);
    return b.page;
  }

  async function clusterNode(id, port, redisPort, databaseUrl, publicUrl) {
    const config = path.join(dir, `${id}.toml`);
    fs.writeFileSync(config, `
database_url = "${databaseUrl}"
[cluster]
redis_url = "redis://127.0.0.1:${redisPort}"
node_id = "${id}"
internal_url = "http://127.0.0.1:${port}"
secret = "a-cluster-secret-of-at-least-32-characters"
lease_ms = 2000
node_ttl_ms = 1500
`);
    return startServer({ port, publicUrl, args: ['--config', config] });
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `conclave-${tag}-`));
    fs.chmodSync(dir, 0o755); // the postgres user reaches its own directory inside
    const redisPort = await freeTcpPort();
    redis = await startRedis(redisPort, dir);
    const pgPort = await freeTcpPort();
    stopPostgres = startPostgres(path.join(dir, 'pg'), pgPort);
    const databaseUrl = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
    // node-0 sorts first: of two idle nodes, new meetings go to it.
    // One name for both, node-b's, as behind a load balancer: the browsers'
    // Origin is the same whichever node a socket is relayed to.
    const portB = await freeTcpPort();
    const name = `http://127.0.0.1:${portB}`;
    doomed = await clusterNode('node-0', await freeTcpPort(), redisPort, databaseUrl, name);
    node = await clusterNode('node-b', portB, redisPort, databaseUrl, name);
    const made = spawnSync(BINARY, ['admin', 'create-user', 'ada', '--password-stdin', '--database-url', databaseUrl], { input: `${PASSWORD}\n`, encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    for (const n of [doomed, node]) {
      await eventually(() => fetch(`${n.url}/readyz`).then((r) => r.status), (s) => s === 200, { what: 'ready' });
    }
  });

  after(async () => {
    if (native && native.child.exitCode === null) native.child.kill('SIGKILL');
    if (native) {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      fs.writeFileSync(path.join(ARTIFACTS, `${tag}-native.log`), native.err);
    }
    for (const b of browsers) await b.close();
    if (node) await node.stop(`${tag}-node-b.log`);
    if (doomed) await doomed.stop(`${tag}-node-0.log`);
    if (redis) redis.kill('SIGKILL');
    if (stopPostgres) stopPostgres();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  step('a host and an admitted guest meet through node-b, run by node-0, with one security code', async () => {
    host = await browser('host');
    const invite = await hostStartsMeeting(host, node.url, 'ada', PASSWORD);
    guest = await browser('guest');
    await guest.goto(invite);
    await guest.getByRole('textbox', { name: 'Your name', exact: true }).fill('Grace');
    await guest.getByRole('button', { name: 'Join', exact: true }).click();
    await host.getByRole('listitem').filter({ hasText: 'Grace' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await guest.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    // A native member too, `conclave join` through node-b, admitted.
    native = startNative(invite, 'Nat');
    await host.getByRole('listitem').filter({ hasText: 'Nat' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    codeBefore = await eventually(async () => [await securityCode(host), await securityCode(guest), nativeCode(native)],
      ([a, b, c]) => a.length > 0 && a === b && a === c, { what: 'one security code before, the native member\'s too' });
    // Wendy asks to join and waits; the host does not let her in yet.
    waiter = await browser('waiting');
    await waiter.goto(invite);
    await waiter.getByRole('textbox', { name: 'Your name', exact: true }).fill('Wendy');
    await waiter.getByRole('button', { name: 'Join', exact: true }).click();
    await waiter.getByText('Waiting for the host to let you in').waitFor();
    await host.getByRole('listitem').filter({ hasText: 'Wendy' }).getByRole('button', { name: 'Admit', exact: true }).waitFor();
    for (const [who, p] of [['host', host], ['guest', guest]]) {
      await eventually(() => received(p), (r) => r.framesDecoded > 10, { timeout: 25_000, what: `${who} decodes the other's video` });
    }
    // Video both ways with the native member: the host plays its video, and
    // it counts frames of the browsers' video (decrypted) in its statistics.
    await playsVideoOf(host, 'Nat', 'the native member\'s video at the host');
    await eventually(() => nativeStats(native), (st) => st.videoFrames > 10, { timeout: 25_000, what: 'the native member receives video' });
  });

  step(`node-0 gets ${signal}: both reconnect by themselves, are told of the new code once, and agree on it`, async () => {
    // How often each page puts up the notice, however briefly: once, not
    // never and not for every epoch of the new group.
    for (const p of [host, guest]) {
      await p.evaluate((said) => {
        window.__toldNewCode = 0;
        new MutationObserver((records) => {
          for (const r of records) {
            for (const n of r.addedNodes) {
              if (n.classList?.contains('toast') && n.textContent.includes(said)) window.__toldNewCode += 1;
            }
          }
        }).observe(document.body, { childList: true, subtree: true });
      }, NEW_CODE);
    }
    process.kill(doomed.pid, signal);
    const killed = Date.now();
    const [a, b] = await eventually(async () => [await securityCode(host), await securityCode(guest)],
      ([x, y]) => x.length > 0 && x === y && x !== codeBefore[0], { what: 'one new security code', timeout: 20_000 });
    assert.notEqual(a, codeBefore[0]);
    assert.equal(a, b);
    console.log(`${tag}: both back with one new code ${Date.now() - killed} ms after ${signal}`);
    // Drained, node-0 exits by itself.
    await eventually(() => { try { process.kill(doomed.pid, 0); return false; } catch { return true; } },
      (gone) => gone, { what: 'node-0 exits', timeout: 20_000 });
    for (const [who, p] of [['host', host], ['guest', guest]]) {
      // The notice, as a person sees it: it stays until dismissed, whatever
      // notices the new group's forming brings after it.
      const notice = p.getByRole('status').locator('.toast').filter({ hasText: NEW_CODE });
      await notice.waitFor({ timeout: 20_000 });
      assert.equal(await p.evaluate(() => window.__toldNewCode), 1, `${who} is told of the new code exactly once`);
      await screenshot(p, `${tag}-${who}-told`);
      await notice.getByRole('button', { name: 'Dismiss', exact: true }).click();
      await notice.waitFor({ state: 'detached' });
      // Dismissed or missed, the Security panel still says it.
      const region = p.getByRole('region', { name: 'Security', exact: true });
      await region.getByRole('button', { name: /End-to-end encrypted/ }).click();
      await region.getByText(/^Reconnected at .+: the meeting moved to another server and its encryption was set up again, with a new security code\./).waitFor();
      await p.keyboard.press('Escape');
    }
    // The native member came back by itself too, was told, and shows the
    // code the browsers show.
    const shared = await eventually(async () => [await securityCode(host), await securityCode(guest), nativeCode(native)],
      ([x, y, z]) => x.length > 0 && x === y && x === z && x !== codeBefore[0], { what: 'the native member in the new group', timeout: 20_000 });
    console.log(`${tag}: the native member shows the new code ${Date.now() - killed} ms after ${signal}`);
    assert.match(native.err, /^Reconnected — new security code: [\d ]+\. /m, native.err);
    assert.notEqual(shared[2], codeBefore[0]);
    // Still in the meeting, with the host's controls.
    await host.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    assert.equal(await host.getByText('Your seat in the meeting has expired').count(), 0);
    await screenshot(host, `${tag}-host-after`);
  });

  step('Wendy is still waiting, listed to the host again, and gets in only when admitted', async () => {
    await host.getByRole('listitem').filter({ hasText: 'Wendy' }).getByRole('button', { name: 'Admit', exact: true }).waitFor({ timeout: 20_000 });
    await waiter.getByText('Waiting for the host to let you in').waitFor();
    assert.equal(await waiter.getByRole('toolbar', { name: 'Meeting controls' }).count(), 0, 'not let in by the move');
    await host.getByRole('listitem').filter({ hasText: 'Wendy' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await waiter.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    await eventually(async () => [await securityCode(host), await securityCode(waiter)],
      ([a, b]) => a.length > 0 && a === b, { what: 'Wendy in the new group' });
  });

  step('media flows again, through node-b, encrypted under the new group', async () => {
    // The old peer connections closed with the old node; these are new.
    for (const [who, p] of [['host', host], ['guest', guest]]) {
      const first = await eventually(() => received(p), (r) => r.framesDecoded > 10, { timeout: 25_000, what: `${who} decodes video again` });
      await eventually(() => received(p), (r) => r.framesDecoded > first.framesDecoded + 10, { what: `${who} keeps decoding` });
    }
    // The native member receives video again on its new peer connection
    // (its counts start afresh there), decrypted under the new group.
    const got = await eventually(() => nativeStats(native), (st) => st.reconnects >= 1 && st.videoFrames > 10,
      { timeout: 25_000, what: 'the native member receives video again' });
    assert.ok(got.reconnects >= 1);
    // And its video, sent on its new peer connection, plays at the host again.
    await playsVideoOf(host, 'Nat', 'the native member\'s video at the host after the move');
  });
});
