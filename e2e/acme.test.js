// A meeting at https://meet.conclave.test, served with a certificate the
// server got by itself from an ACME CA (`conclave serve --domain`): pebble,
// Let's Encrypt's test CA, on loopback, whose validation really fetches the
// HTTP-01 answer from the server's plain-HTTP port (pebble-challtestsrv's DNS
// says every name is 127.0.0.1). Chromium reaches the name through
// --host-resolver-rules and accepts pebble's chain only
// (--ignore-certificate-errors-spki-list with pebble's intermediate); a
// host and a guest decode each other's video over it.
//
// Needs Debian's pebble package (pebble, pebble-challtestsrv); .ci/run
// installs it.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { ARTIFACTS, BINARY, eventually, freePorts, freeTcpPort, hostStartsMeeting, openBrowser, received, screenshot, storySteps } from './harness.js';

const DOMAIN = 'meet.conclave.test';
const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const PEBBLE = process.env.PEBBLE || '/usr/bin/pebble';
const CHALLTESTSRV = process.env.PEBBLE_CHALLTESTSRV || '/usr/bin/pebble-challtestsrv';

function run(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

/** pebble's own HTTPS certificate (API and management), for 127.0.0.1, from a CA of the test's. */
function pebbleApiCertificate(dir) {
  const f = (name) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('openssl', ['req', '-x509', ...ec, '-keyout', f('api-ca.key'), '-out', f('api-ca.pem'), '-days', '2', '-subj', '/CN=e2e pebble API CA']);
  run('openssl', ['req', ...ec, '-keyout', f('api.key'), '-out', f('api.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(f('api.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  run('openssl', ['x509', '-req', '-in', f('api.csr'), '-CA', f('api-ca.pem'), '-CAkey', f('api-ca.key'), '-CAcreateserial',
    '-out', f('api.pem'), '-days', '2', '-extfile', f('api.ext')]);
  return { root: f('api-ca.pem'), cert: f('api.pem'), key: f('api.key') };
}

/** A child process, and a way to stop it. */
function start(cmd, args, env, logFile) {
  const log = fs.openSync(logFile, 'a');
  const proc = spawn(cmd, args, { stdio: ['ignore', log, log], env: { ...process.env, ...env } });
  const state = { exited: null };
  proc.on('exit', (code) => { state.exited = code; });
  return {
    state,
    async stop() {
      if (state.exited === null) {
        proc.kill('SIGTERM');
        await new Promise((resolve) => {
          const t = setTimeout(() => { proc.kill('SIGKILL'); resolve(); }, 5000);
          proc.on('exit', () => { clearTimeout(t); resolve(); });
        });
      }
      fs.closeSync(log);
    },
  };
}

/** GET over HTTPS trusting `ca` only, as `servername`: {status, headers, body}. */
function httpsGet({ port, path: p, ca, servername }) {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: p, ca, servername, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, peer: res.socket.getPeerCertificate?.() }));
    });
    req.on('error', reject);
  });
}

/** Waits until `f()` resolves instead of throwing; fails early if `proc` exits. */
async function until(f, proc, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (proc.state.exited !== null) throw new Error(`${what}: the process exited (${proc.state.exited})`);
    try {
      return await f();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function spkiHash(pem) {
  const der = new crypto.X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

describe('a meeting over HTTPS with a certificate from an ACME CA', () => {
  let dir;
  let dns;
  let pebble;
  let server;
  let host;
  let guest;
  let root; // pebble's issuing root (PEM)
  let site;
  let httpPort;
  let httpsPort;
  const started = {};
  const step = storySteps('acme-', () => [['host', host], ['guest', guest]]);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-e2e-acme-'));
    const api = pebbleApiCertificate(dir);
    httpPort = await freeTcpPort();
    httpsPort = await freeTcpPort();
    const [listen, management, dnsPort, dnsManagement] = [await freeTcpPort(), await freeTcpPort(), await freePorts(1), await freeTcpPort()];
    fs.writeFileSync(path.join(dir, 'pebble.json'), JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listen}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: api.cert,
        privateKey: api.key,
        httpPort,
        tlsPort: await freeTcpPort(),
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }));
    dns = start(CHALLTESTSRV, ['-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${dnsManagement}`,
      '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''], {}, path.join(dir, 'challtestsrv.log'));
    // Validation at once instead of after a random sleep; no random nonce refusals.
    pebble = start(PEBBLE, ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`],
      { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' }, path.join(dir, 'pebble.log'));
    const apiCa = fs.readFileSync(api.root);
    await until(() => httpsGet({ port: listen, path: '/dir', ca: apiCa }), pebble, 'pebble answers');
    root = (await httpsGet({ port: management, path: '/roots/0', ca: apiCa })).body;
    const intermediate = (await httpsGet({ port: management, path: '/intermediates/0', ca: apiCa })).body;

    const data = path.join(dir, 'data');
    run(BINARY, ['admin', 'create-user', HOST, '--password-stdin', '--data-dir', data], `${PASSWORD}\n`);
    started.at = Date.now();
    server = start(BINARY, ['serve', '--domain', DOMAIN, '--acme-directory', `https://127.0.0.1:${listen}/dir`,
      '--acme-ca-root', api.root, '--acme-contact', 'ops@conclave.test',
      '--listen', `127.0.0.1:${httpsPort}`, '--http-redirect', `127.0.0.1:${httpPort}`,
      '--media-port', String(await freePorts(Math.max(os.availableParallelism(), 2))), '--public-ip', '127.0.0.1', '--data-dir', data],
    { RUST_LOG: process.env.RUST_LOG || 'info' }, path.join(dir, 'server.log'));
    await until(() => httpsGet({ port: httpsPort, path: '/healthz', ca: root, servername: DOMAIN }), server, 'the server answers over HTTPS');
    started.ms = Date.now() - started.at;
    site = `https://${DOMAIN}:${httpsPort}`;
    const flags = [`--host-resolver-rules=MAP ${DOMAIN} 127.0.0.1`, `--ignore-certificate-errors-spki-list=${spkiHash(intermediate)}`];
    host = await openBrowser('host', { flags });
    guest = await openBrowser('guest', { flags });
  });

  after(async () => {
    for (const b of [host, guest]) if (b) await b.close();
    for (const p of [server, pebble, dns]) if (p) await p.stop();
    if (dir) {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      for (const [from, to] of [['server.log', 'acme-server.log'], ['pebble.log', 'acme-pebble.log']]) {
        if (fs.existsSync(path.join(dir, from))) fs.copyFileSync(path.join(dir, from), path.join(ARTIFACTS, to));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  step('the server got a certificate from pebble for the name, and serves its chain', async () => {
    console.log(`ACME e2e: server start to serving HTTPS with pebble's certificate: ${started.ms} ms`);
    // Node checks the chain against pebble's root alone.
    const r = await httpsGet({ port: httpsPort, path: '/healthz', ca: root, servername: DOMAIN });
    assert.equal(r.status, 200);
    assert.equal(r.headers['strict-transport-security'], 'max-age=31536000');
    assert.match(r.peer.subjectaltname, new RegExp(`DNS:${DOMAIN.replaceAll('.', '\\.')}`));
  });

  step('plain http:// on the port-80 listener goes to the https:// site', async () => {
    const r = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: httpPort, path: '/signin', headers: { host: DOMAIN } }, resolve).on('error', reject);
    });
    assert.equal(r.statusCode, 308);
    assert.equal(r.headers.location, `${site}/signin`);
    r.resume();
  });

  step('a browser that does not accept pebble\'s chain is refused: the flag is what lets the others in', async () => {
    const stranger = await openBrowser('stranger', { flags: [`--host-resolver-rules=MAP ${DOMAIN} 127.0.0.1`] });
    try {
      await assert.rejects(stranger.page.goto(`${site}/`), /ERR_CERT_AUTHORITY_INVALID/);
    } finally {
      await stranger.close();
    }
  });

  step('host and guest meet at https://meet.conclave.test', async () => {
    const invite = await hostStartsMeeting(host.page, site, HOST, PASSWORD);
    assert.ok(invite.startsWith(`${site}/j/`), invite);
    assert.equal(await host.page.evaluate(() => window.isSecureContext && location.protocol), 'https:');
    const p = guest.page;
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Grace');
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await p.getByRole('region', { name: 'Waiting room', exact: true }).waitFor();
    await host.page.getByRole('button', { name: 'Admit', exact: true }).click();
    await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
  });

  step('host and guest each decode the other\'s video', async () => {
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const first = await eventually(() => received(b.page), (r) => r.framesDecoded > 10 && r.audioPackets > 10, { timeout: 30_000, what: `${who} receives media` });
      await eventually(() => received(b.page), (r) => r.framesDecoded > first.framesDecoded + 10, { what: `${who} keeps decoding` });
    }
    const hostVideo = guest.page.locator(`video[aria-label="${HOST}"]`);
    await eventually(() => hostVideo.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'host video plays at the guest' });
    await screenshot(guest.page, 'acme-guest');
  });
});
