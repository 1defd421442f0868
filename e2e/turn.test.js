// A meeting where the only way to the media router is a TURN relay over TLS,
// as for people on a network that lets nothing out but TLS to port 443.
// coturn runs on loopback with the TURN REST API (use-auth-secret) and a TLS
// listener; nftables drops every packet to or from the router's media port
// (UDP and TCP) that is not the relay's, so the browsers' own candidates get
// nowhere. The server hands each member its credentials in `joined`; host and
// guest each decode the other's video and the connection details say relay.
//
// The second case is the same meeting with one address for everything: the
// browsers reach coturn at turns:turn.conclave.test:PORT where PORT is
// Conclave's own HTTPS port, and Conclave passes the connections whose
// ClientHello names turn.conclave.test through to coturn's TLS listener
// (--turn-passthrough), serving https://meet.conclave.test:PORT itself.
//
// In the first case `conclave join`, the native client, then joins too,
// behind the same firewall: the server also names coturn's plain port
// (`turn:` over UDP; everyone's tries of it hit the firewall), so the
// client tries UDP, ICE-TCP and TURN over UDP, gets nowhere, and falls
// back to TURN over TLS by itself (trusting the relay's certificate with
// --ca-file); it decrypts the browsers' media and the host plays its video.
// Last, once the firewall lets UDP reach coturn (never the router), a
// second run takes the relay over UDP, which it prefers.
//
// The test needs root in the network namespace e2e/run makes (for nft) and
// coturn's `turnserver`; .ci/run installs coturn and nftables.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { ARTIFACTS, ROOT, eventually, freeTcpPort, hostStartsMeeting, nftTable, openBrowser, received, runTool, screenshot, selectedPair, startNativeJoin, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const SECRET = 'e2e-turn-static-auth-secret';
/** Where clients reach coturn (its TLS listener). */
const TURN_IP = '127.0.0.2';
/** The address coturn relays from: the only one the router may hear from. */
const RELAY_IP = '127.0.0.3';
const firewall = nftTable('conclave_e2e_turn');
const TURNSERVER = process.env.TURNSERVER || '/usr/bin/turnserver';
/** The names of the one-address case; the browsers resolve both to 127.0.0.1. */
const SITE_NAME = 'meet.conclave.test';
const TURN_NAME = 'turn.conclave.test';

/** A self-signed certificate for `name` (and the relay's address), as an operator's would be for its name. */
function makeCertificate(dir, name = TURN_NAME) {
  const cert = path.join(dir, `${name}-cert.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  runTool('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=IP:${TURN_IP},DNS:${name}`,
    // Not a CA: the native client, like any rustls client, takes this
    // certificate as its own trust anchor (--ca-file) but refuses a CA
    // certificate as a server's.
    '-addext', 'basicConstraints=critical,CA:FALSE']);
  return { cert, key };
}

/** Starts coturn with the TURN REST API and a TLS listener; resolves once it accepts TLS connections. */
async function startCoturn(dir, tlsPort) {
  const { cert, key } = makeCertificate(dir);
  const plainPort = await freeTcpPort();
  const conf = path.join(dir, 'turnserver.conf');
  const log = path.join(dir, 'turnserver.log');
  fs.writeFileSync(conf, [
    `listening-ip=${TURN_IP}`,
    `relay-ip=${RELAY_IP}`,
    `listening-port=${plainPort}`,
    `tls-listening-port=${tlsPort}`,
    'min-port=49152',
    'max-port=49999',
    'use-auth-secret',
    `static-auth-secret=${SECRET}`,
    'realm=conclave.test',
    `cert=${cert}`,
    `pkey=${key}`,
    'fingerprint',
    'no-cli',
    'no-dtls',
    'no-multicast-peers',
    // The router is on loopback here; in production it is a public address
    // and private ranges are denied (docs/operations.md).
    'allow-loopback-peers',
    `log-file=${log}`,
    'simple-log',
    'verbose',
    `pidfile=${path.join(dir, 'turnserver.pid')}`,
  ].join('\n') + '\n');
  const proc = spawn(TURNSERVER, ['-c', conf], { stdio: 'ignore' });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  await eventually(() => new Promise((resolve) => {
    if (exited !== null) {
      resolve(`exited ${exited}`);
      return;
    }
    const s = net.connect({ host: TURN_IP, port: tlsPort }, () => { s.destroy(); resolve('up'); });
    s.on('error', () => resolve('down'));
  }), (state) => state !== 'down', { timeout: 15_000, what: 'coturn listens' }).then((state) => {
    if (state !== 'up') throw new Error(`coturn ${state}; see ${log}`);
  });
  return {
    log,
    cert,
    plainPort,
    async stop() {
      if (exited === null) {
        proc.kill('SIGTERM');
        await new Promise((resolve) => {
          const t = setTimeout(() => { proc.kill('SIGKILL'); resolve(); }, 5000);
          proc.on('exit', () => { clearTimeout(t); resolve(); });
        });
      }
    },
  };
}

/**
 * Lets no UDP through but the relay's, and nothing reach the router's media
 * port over TCP (ICE-TCP) or leave it but to the relay: the browsers' host
 * candidates are all on 127.0.0.1, so only TLS to the relay remains, as on
 * a network that lets only TLS to 443 out.
 */
function blockDirectMedia(mediaPort) {
  firewall.apply(`
  chain output {
    type filter hook output priority 0; policy accept;
    meta l4proto udp ip saddr != ${RELAY_IP} ip daddr != ${RELAY_IP} counter drop
    tcp dport ${mediaPort} ip saddr != ${RELAY_IP} counter drop
    tcp sport ${mediaPort} ip daddr != ${RELAY_IP} counter drop
  }
`);
}

/**
 * The meeting, relayed. `oneAddress`: the browsers reach coturn through
 * Conclave's HTTPS port (SNI passthrough) instead of at coturn's own.
 */
function relayedMeeting(title, { prefix, oneAddress }) {
  describe(title, () => {
    let dir;
    let turn;
    let server;
    let host;
    let guest;
    let invite;
    const step = storySteps(prefix, () => [['host', host], ['guest', guest]]);

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-e2e-turn-'));
      const tlsPort = await freeTcpPort();
      turn = await startCoturn(dir, tlsPort);
      // One media worker: one media port for the firewall to close (worker
      // i listens on the port + i, and a meeting's worker is chosen by hash).
      const common = { args: ['--media-workers', '1'], env: { CONCLAVE_TURN_SECRET: SECRET } };
      if (oneAddress) {
        // coturn's TLS listener is only the backend: the browsers are told
        // Conclave's own port, and only the name tells the two apart.
        const port = await freeTcpPort();
        server = await startServer({
          port,
          tls: { name: SITE_NAME, ...makeCertificate(dir, SITE_NAME) },
          args: [...common.args, '--turn-url', `turns:${TURN_NAME}:${port}?transport=tcp`,
            '--turn-passthrough', `${TURN_NAME}=${TURN_IP}:${tlsPort}`],
          // Each passed-through connection is logged, for the step below.
          env: { ...common.env, RUST_LOG: 'info,conclave::tls::passthrough=debug' },
        });
      } else {
        server = await startServer({
          args: [...common.args, '--turn-url', `turns:${TURN_IP}:${tlsPort}?transport=tcp`,
            '--turn-url', `turn:${TURN_IP}:${turn.plainPort}?transport=udp`],
          env: common.env,
        });
      }
      server.createUser(HOST, PASSWORD);
      blockDirectMedia(server.mediaPort);
      // The relay's certificate is self-signed, and Chromium checks a turns:
      // server's certificate like a web site's: without this flag the TLS
      // leg fails and no media arrives (tried). The names of the one-address
      // case resolve to loopback, as DNS would resolve both to the one address.
      const flags = ['--ignore-certificate-errors'];
      if (oneAddress) flags.push(`--host-resolver-rules=MAP ${SITE_NAME} 127.0.0.1, MAP ${TURN_NAME} 127.0.0.1`);
      host = await openBrowser('host', { flags });
      guest = await openBrowser('guest', { flags });
    });

    after(async () => {
      firewall.remove();
      for (const b of [host, guest]) if (b) await b.close();
      if (server) await server.stop(`${prefix}server.log`);
      if (turn) await turn.stop();
      if (dir) {
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        if (fs.existsSync(turn?.log || '')) fs.copyFileSync(turn.log, path.join(ARTIFACTS, `${prefix}turnserver.log`));
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    step('host and guest join; each gets relay credentials of its own on admission only', async () => {
      invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
      const p = guest.page;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Grace');
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await p.getByRole('region', { name: 'Waiting room', exact: true }).waitFor();
      await host.page.getByRole('button', { name: 'Admit', exact: true }).click();
      await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
      const iceServers = (page) => page.evaluate(() => window.__pcs.at(-1)?.getConfiguration().iceServers || null);
      const configs = [];
      for (const [who, b] of [['host', host], ['guest', guest]]) {
        configs.push(await eventually(() => iceServers(b.page), (c) => c !== null, { what: `${who}'s peer connection` }));
      }
      const users = configs.map((c) => {
        assert.equal(c.length, 1, JSON.stringify(c));
        assert.match(c[0].username, /^\d+:\d+-[A-Za-z0-9_-]+$/);
        return c[0].username;
      });
      assert.notEqual(users[0], users[1], 'each member has its own credential');
    });

    step('host and guest each decode the other\'s video, over the relay', async () => {
      for (const [who, b] of [['host', host], ['guest', guest]]) {
        const first = await eventually(() => received(b.page), (r) => r.framesDecoded > 10 && r.audioPackets > 10, { timeout: 30_000, what: `${who} receives media` });
        await eventually(() => received(b.page), (r) => r.framesDecoded > first.framesDecoded + 10, { what: `${who} keeps decoding` });
        const pair = await selectedPair(b.page);
        assert.equal(pair?.local.type, 'relay', `${who}'s media goes through the relay: ${JSON.stringify(pair)}`);
        assert.equal(pair.local.relayProtocol, 'tls', `${who} reaches the relay over TLS: ${JSON.stringify(pair)}`);
      }
      const hostVideo = guest.page.locator(`video[aria-label="${HOST}"]`);
      await eventually(() => hostVideo.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'host video plays at the guest' });
      const guestVideo = host.page.locator('video[aria-label="Grace"]');
      await eventually(() => guestVideo.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'guest video plays at the host' });
    });

    step('the firewall did its part: direct packets to the router were dropped', async () => {
      const rules = firewall.list();
      const dropped = [...rules.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
      assert.ok(dropped.some((n) => n > 0), `the browsers tried the direct path and were stopped:\n${rules}`);
    });

    if (oneAddress) {
      step('the relay connections went through Conclave\'s HTTPS port to coturn', async () => {
        const log = fs.readFileSync(path.join(server.dataDir, 'server.log'), 'utf8');
        const opened = log.split('\n').filter((l) => l.includes('TURN/TLS passthrough opened'));
        assert.ok(opened.length >= 2, `both browsers' relay connections were passed through:\n${log.slice(-3000)}`);
        // And the site itself is still Conclave's, on the same port.
        assert.equal(await host.page.evaluate(() => location.origin), server.url);
      });
    }

    step('the connection details show the relay', async () => {
      for (const [who, b] of [['host', host], ['guest', guest]]) {
        const shown = b.page.locator('.sec-transport');
        await eventually(() => shown.getAttribute('data-transport'), (t) => t === 'relay-tls', { what: `${who}'s connection details` });
        await b.page.getByRole('button', { name: /encrypt/i }).first().click();
        assert.match(await shown.textContent(), /Relayed by a TURN server \(TLS\)/);
        await screenshot(b.page, `${prefix}${who}-details`);
      }
    });

    if (!oneAddress) {
      step('conclave join behind the firewall falls back to the relay over TLS by itself; each side plays the other\'s video', async () => {
        const native = startNativeJoin(invite, 15, [
          '--send-ivf', path.join(ROOT, 'samples/video-320x240.ivf'),
          '--send-ogg', path.join(ROOT, 'samples/audio-440hz.ogg'),
          '--ca-file', turn.cert,
        ]);
        await host.page.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
        const tile = host.page.locator('li.tile').filter({ has: host.page.locator('.tile-name', { hasText: 'Native' }) });
        const played = () => tile.locator('video').evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames).catch(() => 0);
        const first = await eventually(played, (n) => n > 10, { timeout: 30_000, what: 'the native client\'s video plays at the host' });
        await eventually(played, (n) => n > first + 10, { what: 'the native client\'s video keeps playing' });
        const { code, out, err } = await native.done;
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        fs.writeFileSync(path.join(ARTIFACTS, `${prefix}native-tls.log`), `${err}\n${out}`);
        assert.equal(code, 0, `conclave join failed:\n${err}`);
        const stats = JSON.parse(out);
        const video = Object.values(stats.received).filter((t) => t.kind === 'video').reduce((n, t) => n + t.frames, 0);
        assert.ok(video > 30, `the native client decrypted ${video} video frames: ${out}`);
        // UDP first (its checks went into the firewall), then ICE-TCP (its
        // connection never opened), then the relay over UDP (the firewall
        // refuses the datagrams), then over TLS, which carried the media.
        assert.equal(stats.transport, 'turn/tls', out);
        assert.ok(stats.packets_out.udp > 0 && stats.relay_packets_out['turn/tls'] > stats.packets_out.udp, out);
        const tried = [/media over ICE-TCP/, /allocating on the TURN relay.*turn:\S*transport=udp/, /allocating on the TURN relay.*turns:/, /media over the TURN relay.*turn\/tls/]
          .map((re) => err.search(re));
        assert.ok(tried.every((at, i) => at >= 0 && (i === 0 || at > tried[i - 1])), `ICE-TCP, TURN over UDP, then TURN over TLS, in that order:\n${err}`);
        const log = fs.readFileSync(turn.log, 'utf8');
        const session = log.split('\n').find((l) => l.includes(': new, ') && l.includes(`:${stats.participant}-`) && l.includes('method=TLS'));
        assert.ok(session, `coturn served the native client (participant ${stats.participant}) over TLS`);
      });

      step('with UDP to the relay let through, conclave join takes the relay over UDP', async () => {
        // UDP to coturn's plain port (and back) now passes; the router's
        // media port stays closed to all but the relay. Last, so the
        // browsers' relay over TLS above was all they had.
        for (const rule of [`ip daddr ${TURN_IP} udp dport ${turn.plainPort} accept`, `ip saddr ${TURN_IP} udp sport ${turn.plainPort} accept`]) {
          firewall.insert('output', rule);
        }
        const native = startNativeJoin(invite, 10, ['--ca-file', turn.cert]);
        await host.page.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
        const { code, out, err } = await native.done;
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        fs.writeFileSync(path.join(ARTIFACTS, `${prefix}native.log`), `${err}\n${out}`);
        assert.equal(code, 0, `conclave join failed:\n${err}`);
        const stats = JSON.parse(out);
        const frames = Object.values(stats.received).reduce((n, t) => n + t.frames, 0);
        assert.ok(frames > 100, `the native client decrypted ${frames} frames: ${out}`);
        assert.equal(stats.transport, 'turn/udp', out);
        assert.ok(stats.packets_out.udp > 0 && stats.relay_packets_out['turn/udp'] > stats.packets_out.udp, out);
        const log = fs.readFileSync(turn.log, 'utf8');
        const user = log.split('\n').find((l) => l.includes(`user <`) && l.includes(`:${stats.participant}-`) && l.includes('ALLOCATE processed, success'));
        assert.ok(user, `coturn allocated for the native client (participant ${stats.participant})`);
      });
    }
  });
}

relayedMeeting('media through a TURN relay over TLS when nothing else gets through', { prefix: 'turn-', oneAddress: false });
relayedMeeting('media through coturn reached on Conclave\'s HTTPS port (TURN/TLS passthrough by SNI)', { prefix: 'turn-443-', oneAddress: true });
