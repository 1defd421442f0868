// Cluster mode (issue 17) without Redis, through Chromium: a node with
// [cluster] and its own redis-server on loopback. The host starts a meeting;
// Redis is killed; a guest who asks to join and a person who signs in are
// both told "temporarily unavailable" in words, while the host's meeting goes
// on. Redis comes back and the guest's next try reaches the waiting room.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { eventually, freeTcpPort, hostStartsMeeting, openBrowser, screenshot, startServer, storySteps } from './harness.js';

const PASSWORD = 'correct horse battery staple';
const UNAVAILABLE = 'The service is temporarily unavailable. Try again in a moment.';

/** Whether a Redis on `port` answers PING. */
function pong(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(500, () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
  });
}

/** A redis-server of the test's own on `port`, no persistence. */
async function startRedis(port, dir) {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await eventually(() => pong(port), (ok) => ok, { what: 'redis-server answers', timeout: 10_000 });
  return proc;
}

async function stopRedis(proc, port) {
  proc.kill('SIGKILL');
  await eventually(() => pong(port), (ok) => !ok, { what: 'redis-server gone', timeout: 10_000 });
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
