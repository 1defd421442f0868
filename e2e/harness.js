// What the browser tests share: a Conclave server of their own (the debug
// binary, free ports, a temporary data directory), browsers with fake camera
// and microphone, and ways to read what a page's peer connection received.

import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
export const BINARY = process.env.CONCLAVE_BIN || path.join(TARGET, 'debug/conclave');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'e2e/artifacts');

const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

/**
 * Ports the tests hand to servers they start come from below Linux's
 * ephemeral range (32768-60999), where no outgoing connection of a browser
 * or another server can take one between our check and the server's bind.
 */
const PORT_LOW = 20_000;
const PORT_HIGH = 32_000;

/** Whether `port` on 127.0.0.1 can be bound now, for TCP and for UDP. */
async function portFree(port) {
  const tcp = await new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
  if (!tcp) return false;
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', () => { sock.close(); resolve(false); });
    sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
  });
}

/** Ports this process handed out already: free now, but meant for a server still starting. */
const handedOut = new Set();

/** The first of `count` consecutive ports free for both TCP and UDP, never handed out before. */
export async function freePorts(count = 1) {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const base = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW - count));
    const run = Array.from({ length: count }, (_, i) => base + i);
    if (run.some((p) => handedOut.has(p))) continue;
    let ok = true;
    for (const p of run) ok = ok && await portFree(p);
    if (ok) {
      for (const p of run) handedOut.add(p);
      return base;
    }
  }
  throw new Error(`no ${count} consecutive free ports in ${PORT_LOW}-${PORT_HIGH}`);
}

export async function freeTcpPort() {
  return freePorts(1);
}

/** Whether an HTTPS server on 127.0.0.1:`port` answers /healthz for `name` (any certificate). */
function httpsUp(port, name) {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/healthz', servername: name, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
  });
}

/**
 * Starts a server; resolves to {url, dataDir, mediaPort, createUser(name, password), stop()}.
 * `args` and `env` are added to the server's command line and environment; `binary`
 * is another server build to run (a benchmark comparing two).
 * `port` is the port to listen on (default: a free one). With `tls` ({name,
 * cert, key}) it serves HTTPS with those files at https://NAME:PORT (the
 * browsers map NAME to 127.0.0.1). `publicUrl`: the name the browsers use
 * when it is another's (cluster nodes behind one name share it).
 */
export async function startServer({ args = [], env = {}, port: wanted = null, tls = null, publicUrl = null, binary = BINARY } = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-e2e-'));
  const port = wanted || await freeTcpPort();
  // A worker per core binds UDP and TCP on consecutive ports from here.
  const mediaPort = await freePorts(Math.max(os.availableParallelism(), 2));
  const url = tls ? `https://${tls.name}:${port}` : `http://127.0.0.1:${port}`;
  const tlsArgs = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [];
  const up = tls ? () => httpsUp(port, tls.name) : () => fetch(`${url}/`).then((r) => r.ok);
  const log = fs.openSync(path.join(dataDir, 'server.log'), 'a');
  const proc = spawn(binary, ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--media-port', String(mediaPort), '--public-url', publicUrl || url, ...tlsArgs, ...args], {
    stdio: ['ignore', log, log],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...env },
  });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited !== null) {
      const said = fs.readFileSync(path.join(dataDir, 'server.log'), 'utf8').trim().split('\n').slice(-5).join('\n');
      throw new Error(`server exited (${exited}) while starting; its last words:\n${said}`);
    }
    try {
      if (await up()) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('server did not start in 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    dataDir,
    mediaPort,
    /** The server's process id, for a test that kills it without warning. */
    pid: proc.pid,
    createUser(name, password) {
      const r = spawnSync(binary, ['admin', 'create-user', name, '--password-stdin', '--data-dir', dataDir], { input: `${password}\n`, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`create-user failed: ${r.stderr}`);
    },
    /** Stops the server and keeps its log as e2e/artifacts/`logName`. */
    async stop(logName = 'server.log') {
      if (exited === null) {
        proc.kill('SIGTERM');
        await new Promise((resolve) => {
          const t = setTimeout(() => { proc.kill('SIGKILL'); resolve(); }, 5000);
          proc.on('exit', () => { clearTimeout(t); resolve(); });
        });
      }
      fs.closeSync(log);
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      fs.copyFileSync(path.join(dataDir, 'server.log'), path.join(ARTIFACTS, logName));
      if (!process.env.KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Records every RTCPeerConnection and WebSocket a page makes, for the helpers below. */
function recordPeerConnections() {
  const OriginalSocket = window.WebSocket;
  window.__sockets = [];
  window.__sent = []; // the messages the page sent, parsed
  window.WebSocket = class extends OriginalSocket {
    constructor(...args) {
      super(...args);
      window.__sockets.push(this);
    }

    send(data) {
      try {
        window.__sent.push(JSON.parse(data));
      } catch {
        // not JSON: not ours to record
      }
      return super.send(data);
    }
  };
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
}

/**
 * A browser of its own (fresh profile) with one page; `alerts` collects any
 * dialog a page opened (there must be none: markup from others is text).
 * `device` emulates a phone or another screen (e2e/phone.test.js).
 */
export async function openBrowser(name, { denyMedia = false, flags = [], device = {} } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), `conclave-e2e-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // --headless=new is among the flags
    // Without the fake UI, the prompt for camera and microphone is refused.
    args: [...(denyMedia ? [...CHROMIUM_FLAGS.filter((f) => f !== '--use-fake-ui-for-media-stream'), '--deny-permission-prompts'] : CHROMIUM_FLAGS), ...flags],
    viewport: { width: 1280, height: 800 },
    // A device to emulate (viewport, isMobile, hasTouch, deviceScaleFactor, userAgent).
    ...device,
  });
  await context.addInitScript(recordPeerConnections);
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10_000);
  const alerts = [];
  page.on('dialog', (d) => {
    alerts.push(d.message());
    d.dismiss().catch(() => {});
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return {
    context,
    page,
    alerts,
    errors,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Drops the page's meeting socket as a network failure would (the client resumes). */
export function dropSocket(page) {
  return page.evaluate(() => {
    const ws = window.__sockets.filter((s) => s.readyState === WebSocket.OPEN).at(-1);
    ws.close();
    return window.__pcs.length;
  });
}

/**
 * What the page's live peer connections have received: {framesDecoded,
 * audioPackets}, and the same per inbound stream (`streams`, by stats id) for
 * `gained`.
 */
export function received(page) {
  return page.evaluate(async () => {
    const pcs = (window.__pcs || []).filter((pc) => pc.connectionState !== 'closed');
    const out = { framesDecoded: 0, audioPackets: 0, connection: pcs.map((pc) => pc.connectionState).join(','), streams: {} };
    for (const pc of pcs) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const count = s.kind === 'video' ? s.framesDecoded || 0 : s.packetsReceived || 0;
        if (s.kind === 'video') out.framesDecoded += count;
        if (s.kind === 'audio') out.audioPackets += count;
        out.streams[s.id] = { kind: s.kind, count };
      });
    }
    return out;
  });
}

/**
 * What was received between two `received` results: {framesDecoded,
 * audioPackets}. Counted per stream, so a stream that went away in between
 * (a renegotiation drops a departed sender's) does not make it look as if
 * less arrived.
 */
export function gained(before, now) {
  const out = { framesDecoded: 0, audioPackets: 0 };
  for (const [id, s] of Object.entries(now.streams)) {
    const was = before.streams[id]?.count || 0;
    if (s.kind === 'video') out.framesDecoded += s.count - was;
    if (s.kind === 'audio') out.audioPackets += s.count - was;
  }
  return out;
}

/** Waits until `check(value)` holds for `await probe()`, or throws with the last value. */
export async function eventually(probe, check, { timeout = 15_000, every = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (check(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what} not met in ${timeout} ms; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Saves a screenshot to e2e/artifacts/NAME.png. */
export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/**
 * The steps of one story, each needing the ones before it: after a failure
 * the rest are skipped (not failed again), and the failing step saves a
 * screenshot of every page `pages()` names ([['host', browser], ...]) as
 * `<prefix>failed-<name>.png`.
 */
export function storySteps(prefix, pages) {
  let failed = false;
  return (name, fn) => it(name, async (t) => {
    if (failed) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await fn(t);
    } catch (err) {
      failed = true;
      await Promise.all(pages().map(([who, b]) => b && screenshot(b.page, `${prefix}failed-${who}`).catch(() => {})));
      throw err;
    }
  });
}

/**
 * What a host does first, by the buttons a person clicks: signs in as
 * `user`, makes a meeting with the default settings, starts it, and waits
 * for the meeting controls. Returns the invite link the dashboard shows.
 */
export async function hostStartsMeeting(page, serverUrl, user, password) {
  await page.goto(`${serverUrl}/signin`);
  await page.getByRole('textbox', { name: 'Username', exact: true }).fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('button', { name: 'New meeting', exact: true }).click();
  await page.getByRole('button', { name: 'Create meeting', exact: true }).click();
  const invite = (await page.getByLabel('Invite link', { exact: true }).first().textContent()).trim();
  await page.getByRole('button', { name: 'Start', exact: true }).first().click();
  await page.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
  return invite;
}

/** Runs a command to its end; its output, or an error with what it said. */
export function runTool(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

const NFT = process.env.NFT || '/usr/sbin/nft';

/**
 * A firewall of the test's own: one nftables table, so removing it leaves
 * every other rule in the namespace alone.
 */
export function nftTable(name) {
  return {
    /** Replaces the table with `body` (chains in nft syntax). */
    apply(body) {
      this.remove();
      runTool(NFT, ['-f', '-'], `table inet ${name} {\n${body}\n}\n`);
    },
    /** Puts `rule` first in `chain`. */
    insert(chain, rule) {
      runTool(NFT, ['insert', 'rule', 'inet', name, chain, ...rule.split(' ')]);
    },
    /** The table with its counters, as nft lists it. */
    list() {
      return runTool(NFT, ['list', 'table', 'inet', name]);
    },
    remove() {
      spawnSync(NFT, ['delete', 'table', 'inet', name], { encoding: 'utf8' });
    },
  };
}

/** The page's live peer connection's selected candidate pair: each side's type, protocol and address. */
export function selectedPair(page) {
  return page.evaluate(async () => {
    const pc = (window.__pcs || []).filter((p) => p.connectionState !== 'closed').at(-1);
    if (!pc) return null;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const side = (c) => ({
      type: c?.candidateType, protocol: c?.protocol, relayProtocol: c?.relayProtocol,
      tcpType: c?.tcpType, address: c?.address, port: c?.port,
    });
    return { local: side(stats.get(pair.localCandidateId)), remote: side(stats.get(pair.remoteCandidateId)) };
  });
}

/**
 * The local UDP ports of the page's candidates: where the server's media may
 * reach it. All of them, not only the selected pair's: with one port capped,
 * Chromium's ICE moved to another of its local candidates while the capped
 * one was congested (bench/network: 44 of 74 s on a second port), so a cap
 * on one port held only part of the time.
 */
export function localUdpPorts(page) {
  return page.evaluate(async () => {
    for (const pc of (window.__pcs || []).filter((p) => p.connectionState !== 'closed')) {
      const stats = await pc.getStats();
      const ports = new Set();
      stats.forEach((s) => {
        if (s.type === 'local-candidate' && s.protocol === 'udp' && s.port) ports.add(s.port);
      });
      if (ports.size) return [...ports];
    }
    throw new Error('no local UDP candidate');
  });
}

/** bench/impair, built by scripts/build-server (cargo build -p conclave-impair). */
export const IMPAIR = process.env.IMPAIR_BIN || path.join(TARGET, 'debug/impair');
const IPTABLES = process.env.IPTABLES || '/usr/sbin/iptables';

/**
 * The OUTPUT rules that hand UDP packets to NFQUEUE 0, where impair reads
 * them: every UDP packet, or with `ports` only those to these destination
 * ports. The kernel has no nftables `queue` expression, but iptables' NFQUEUE
 * target (nft_compat). Without `--queue-bypass` a packet is dropped while no
 * program is bound to the queue, so a leftover rule would cut every later
 * test's media; with it a leftover rule is harmless, but a dead impair lets
 * packets through unimpaired, which is why the tests check it is alive.
 */
function queueRules(ports) {
  const target = ['-j', 'NFQUEUE', '--queue-num', '0', '--queue-bypass'];
  if (!ports) return [['OUTPUT', '-p', 'udp', ...target]];
  return ports.map((p) => ['OUTPUT', '-p', 'udp', '--dport', String(p), ...target]);
}

/** The NFQUEUE rules in the namespace now, as `iptables -S` prints them. */
export function nfqueueRules() {
  const r = spawnSync(IPTABLES, ['-S'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`iptables -S: ${r.stderr || r.error}`);
  return r.stdout.split('\n').filter((l) => l.includes('NFQUEUE'));
}

/**
 * Starts bench/impair on queue 0 with `args` (its flags: delay, loss, cap),
 * then the rules that feed it (every UDP packet, or with `ports` only those
 * to these ports). Its JSON reports (every `reportSecs`) collect in
 * `reports`; `stop()` removes the rules and ends impair (safe twice).
 */
export async function startImpair(args, { ports = null, reportSecs = 2 } = {}) {
  if (!fs.existsSync(IMPAIR)) throw new Error(`${IMPAIR} is missing: scripts/build-server builds it (cargo build -p conclave-impair)`);
  const proc = spawn(IMPAIR, ['--queue', '0', '--report-secs', String(reportSecs), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const reports = [];
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
    const lines = out.split('\n');
    out = lines.pop();
    for (const l of lines.filter(Boolean)) reports.push(JSON.parse(l));
  });
  let said = '';
  proc.stderr.on('data', (d) => { said += d; });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const rules = queueRules(ports);
  const stop = async () => {
    for (const rule of rules) {
      for (let i = 0; i < 10 && spawnSync(IPTABLES, ['-C', ...rule]).status === 0; i += 1) spawnSync(IPTABLES, ['-D', ...rule]);
    }
    if (alive()) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  await eventually(() => said, (s) => s.includes('impair:') || !alive(), { what: 'impair bound to its queue' });
  if (!alive()) throw new Error(`impair exited (${proc.exitCode ?? proc.signalCode}): ${said}`);
  for (const rule of rules) {
    const r = spawnSync(IPTABLES, ['-I', ...rule], { encoding: 'utf8' });
    if (r.status !== 0) {
      await stop();
      throw new Error(`iptables -I ${rule.join(' ')}: ${r.stderr || r.error}`);
    }
  }
  return { proc, reports, said: () => said, alive, stop };
}

/**
 * Starts `conclave join` on `invite` as "Native", staying `seconds` once
 * admitted, with `args` besides; `done` resolves to its exit code, stdout
 * (--stats JSON) and log.
 */
export function startNativeJoin(invite, seconds, args = []) {
  const native = spawn(BINARY, ['join', invite, '--name', 'Native', '--duration', String(seconds), '--patience', '30', '--stats', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'conclave_client=info' },
  });
  let out = '';
  let err = '';
  native.stdout.on('data', (d) => { out += d; });
  native.stderr.on('data', (d) => { err += d; });
  const done = new Promise((resolve) => native.on('exit', (code) => resolve({ code, out, err })));
  return { done };
}

/**
 * A WAV file of a steady 440 Hz tone for Chromium's fake microphone: its
 * default one beeps once a second, and the server drops the silence between
 * beeps, which the receiver plays as concealment too. In a new temporary
 * directory named from `prefix`; the caller removes it.
 */
export function toneWav(prefix) {
  const rate = 48_000;
  const samples = rate * 2;
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) wav.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), prefix)), 'tone.wav');
  fs.writeFileSync(file, wav);
  return file;
}

/** The security code a page shows (read from the security panel, open or not). */
export function securityCode(page) {
  return page.getByRole('region', { name: 'Security', exact: true }).locator('[aria-label="Security code"]')
    .evaluate((el) => el.dataset.code || '');
}

/** Video frames the page has played in the tile whose name starts with `name` (0 before it has a video). */
export function tileFrames(page, name) {
  return page.locator('li.tile').filter({ has: page.locator('.tile-name', { hasText: new RegExp(`^${name}`) }) }).locator('video')
    .evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames).catch(() => 0);
}

/** Waits until `page` plays `name`'s video and goes on playing it. */
export async function playsVideoOf(page, name, what) {
  const first = await eventually(() => tileFrames(page, name), (n) => n > 10, { timeout: 30_000, what: `${what} plays` });
  await eventually(() => tileFrames(page, name), (n) => n > first + 10, { timeout: 15_000, what: `${what} keeps playing` });
}
