// Cascading a meeting's media over two nodes (issue 23 item 3), through
// Chromium: two `conclave serve` nodes on one PostgreSQL and one Redis, with
// `cascade_meetings_from = 2` and a media link between them. The browsers
// all reach the meeting through node-b (the front); node-a holds its lease.
// Three people meet with end-to-end encryption: one guest's media is
// placed on node-b (the least-loaded node once the meeting has two
// members), the others' on node-a, so video crosses the nodes' media link
// both ways. Each page decodes both others' video, and all three show one
// security code. That a member's media is served by node-b is read from the
// servers (node-b's record in Redis, both nodes' logs), not guessed.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, eventually, freePorts, freeTcpPort, hostStartsMeeting, openBrowser, screenshot, selectedPair, startServer, storySteps, playsVideoOf, securityCode } from './harness.js';
import { redis, startPostgres, startRedis } from './engines.js';

const PASSWORD = 'correct horse battery staple';
const SECRET = 'a-cluster-secret-of-at-least-32-characters';

describe('a meeting cascaded over two nodes', () => {
  let dir;
  let redisPort;
  let redisProc;
  let stopPostgres;
  let nodeA;
  let nodeB;
  const logs = {};
  const pages = {};
  const browsers = [];
  const step = storySteps('cascade-', () => browsers.map((b, i) => [`browser-${i}`, b]));

  async function browser(name) {
    const b = await openBrowser(`cascade-${name}`);
    browsers.push(b);
    return b.page;
  }

  async function clusterNode(id, port, databaseUrl, publicUrl) {
    const link = await freePorts(1);
    const config = path.join(dir, `${id}.toml`);
    fs.writeFileSync(config, `
database_url = "${databaseUrl}"
cascade_meetings_from = 2
[cluster]
redis_url = "redis://127.0.0.1:${redisPort}"
node_id = "${id}"
internal_url = "http://127.0.0.1:${port}"
secret = "${SECRET}"
lease_ms = 2000
node_ttl_ms = 1500
media_link_addr = "127.0.0.1:${link}"
`);
    const node = await startServer({ port, publicUrl, args: ['--config', config] });
    logs[id] = path.join(node.dataDir, 'server.log');
    return node;
  }

  const log = (id) => fs.readFileSync(logs[id], 'utf8');

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-cascade-'));
    fs.chmodSync(dir, 0o755); // the postgres user reaches its own directory inside
    redisPort = await freeTcpPort();
    redisProc = await startRedis(redisPort, dir);
    const pgPort = await freeTcpPort();
    stopPostgres = startPostgres(path.join(dir, 'pg'), pgPort);
    const databaseUrl = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
    // node-a sorts first: of two idle nodes, the new meeting goes to it.
    // One name for both, node-b's, as behind a load balancer.
    const portB = await freeTcpPort();
    const name = `http://127.0.0.1:${portB}`;
    nodeA = await clusterNode('node-a', await freeTcpPort(), databaseUrl, name);
    nodeB = await clusterNode('node-b', portB, databaseUrl, name);
    const made = spawnSync(BINARY, ['admin', 'create-user', 'ada', '--password-stdin', '--database-url', databaseUrl], { input: `${PASSWORD}\n`, encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    for (const n of [nodeA, nodeB]) {
      await eventually(() => fetch(`${n.url}/readyz`).then((r) => r.status), (s) => s === 200, { what: 'ready' });
    }
    // Placement reads the node records every 0.5 s: both nodes listed first.
    await eventually(() => Promise.all(['node-a', 'node-b'].map((id) => redis(redisPort, 'GET', `conclave:node:${id}`))),
      (rs) => rs.every(Boolean), { what: 'both node records in Redis' });
  });

  after(async () => {
    for (const b of browsers) await b.close();
    if (nodeB) await nodeB.stop('cascade-node-b.log');
    if (nodeA) await nodeA.stop('cascade-node-a.log');
    if (redisProc) redisProc.kill('SIGKILL');
    if (stopPostgres) stopPostgres();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  step('three people meet through node-b; node-a holds the meeting and the second one\'s media goes to node-b', async () => {
    const started = Date.now();
    pages.ada = await browser('host');
    const invite = await hostStartsMeeting(pages.ada, nodeB.url, 'ada', PASSWORD);
    for (const name of ['Grace', 'Linus']) {
      const p = await browser(name);
      pages[name] = p;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await pages.ada.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    }
    // From the servers: node-a holds the lease and sent the meeting to
    // node-b, which serves one member's media for it while running no
    // meeting of its own.
    await eventually(() => [log('node-a'), log('node-b')],
      ([a, b]) => /meeting cascades to another node.*node-b/.test(a) && /serving a cascaded meeting's shard/.test(b),
      { what: 'node-a cascades to node-b and node-b serves a shard', timeout: 20_000 });
    const record = await eventually(async () => JSON.parse(await redis(redisPort, 'GET', 'conclave:node:node-b') || '{}'),
      (r) => r.participants === 1 && r.meetings === 0, { what: 'node-b\'s record: one member served, no meeting held', timeout: 10_000 });
    const recordA = JSON.parse(await redis(redisPort, 'GET', 'conclave:node:node-a'));
    assert.equal(recordA.meetings, 1, 'node-a holds the meeting');
    assert.equal(record.meetings, 0);
    // And which one: the page whose connected candidate pair is on node-b's
    // media ports: exactly one of the three, the one node-b's record counts.
    // (Which one depends on when node-a's record last counted its own: a
    // tie keeps a member on the holder.)
    const workers = Math.max(os.availableParallelism(), 2);
    const onB = (pair) => pair && pair.remote.port >= nodeB.mediaPort && pair.remote.port < nodeB.mediaPort + workers;
    const pairs = await eventually(async () => Object.fromEntries(await Promise.all(Object.entries(pages).map(async ([n, p]) => [n, await selectedPair(p)]))),
      (ps) => Object.values(ps).every(Boolean), { what: 'every page connected', timeout: 25_000 });
    const served = Object.keys(pairs).filter((n) => onB(pairs[n]));
    assert.equal(served.length, 1, JSON.stringify(pairs));
    assert.notEqual(served[0], 'ada', 'the first member stays on the holder');
    console.log(`cascade: three in, ${served[0]}'s media on node-b, ${Date.now() - started} ms`);
  });

  step('each page decodes both others\' video across the nodes, and all show one security code', async () => {
    const started = Date.now();
    const names = Object.keys(pages);
    await Promise.all(names.flatMap((viewer) => names.filter((n) => n !== viewer)
      .map((other) => playsVideoOf(pages[viewer], other, `${other}'s video at ${viewer}`))));
    const codes = await eventually(() => Promise.all(names.map((n) => securityCode(pages[n]))),
      (cs) => cs[0].length > 0 && cs.every((c) => c === cs[0]), { what: 'one security code on all three pages' });
    assert.match(codes[0], /^[\d ]+$/);
    for (const n of names) await screenshot(pages[n], `cascade-${n}`);
    // node-b's member saw node-a's two, and they it: that media crossed
    // the nodes' media link, which node-b set up to node-a; the holder was
    // never refused its control channel.
    assert.match(log('node-b'), /media link to a node.*node-a/);
    assert.doesNotMatch(log('node-a'), /cascade control channel (refused|not accepted)/);
    console.log(`cascade: six videos playing and one code ${Date.now() - started} ms later`);
  });
});
