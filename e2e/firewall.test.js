// A meeting behind a firewall that drops UDP: nftables drops every UDP
// packet to or from the router's media port, so the browsers' only way to
// the router is ICE-TCP (RFC 6544): they connect to the passive TCP
// candidate the router announces on the same port number and carry DTLS and
// SRTP in RFC 4571 frames. Host and guest each decode the other's video, and
// the connection details say TCP. Then `conclave join`, the native client,
// tries UDP, gets nowhere, falls back to TCP by itself and decrypts what the
// browsers send.
//
// The nft table is this file's own: created before the meeting, deleted
// after it, so the other tests in the namespace e2e/run makes never see it.
// Needs root in that namespace (e2e/run is unshare -n) and nft; .ci/run
// installs nftables.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { eventually, hostStartsMeeting, nftTable, openBrowser, received, screenshot, selectedPair, startNativeJoin, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const firewall = nftTable('conclave_e2e_firewall');

/**
 * The router's media ports: worker i listens on the first port + i (one
 * worker per core), and a meeting's worker is a hash of its ID.
 */
const WORKER_PORTS = 256;

/** Drops all UDP to and from the router's media ports, both ways; TCP passes. */
function blockUdp(mediaPort) {
  const ports = `${mediaPort}-${mediaPort + WORKER_PORTS - 1}`;
  firewall.apply(`
  chain output {
    type filter hook output priority 0; policy accept;
    udp dport ${ports} counter drop
    udp sport ${ports} counter drop
  }
`);
}

describe('media over ICE-TCP when the network drops UDP', () => {
  let server;
  let host;
  let guest;
  let invite;
  const step = storySteps('firewall-', () => [['host', host], ['guest', guest]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    blockUdp(server.mediaPort);
    host = await openBrowser('host');
    guest = await openBrowser('guest');
  });

  after(async () => {
    firewall.remove();
    for (const b of [host, guest]) if (b) await b.close();
    if (server) await server.stop('firewall-server.log');
  });

  step('host and guest join', async () => {
    invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    const p = guest.page;
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Grace');
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await p.getByRole('region', { name: 'Waiting room', exact: true }).waitFor();
    await host.page.getByRole('button', { name: 'Admit', exact: true }).click();
    await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
  });

  step('host and guest each decode the other\'s video, over TCP', async () => {
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const first = await eventually(() => received(b.page), (r) => r.framesDecoded > 10 && r.audioPackets > 10, { timeout: 30_000, what: `${who} receives media` });
      await eventually(() => received(b.page), (r) => r.framesDecoded > first.framesDecoded + 10, { what: `${who} keeps decoding` });
      const pair = await selectedPair(b.page);
      assert.equal(pair?.local.protocol, 'tcp', `${who}'s media goes over TCP: ${JSON.stringify(pair)}`);
      // An active TCP candidate's port is only known once connected: the
      // browser reports it as peer-reflexive. Not a relay either way.
      assert.ok(['host', 'prflx'].includes(pair.local.type), `${who} connects straight to the router: ${JSON.stringify(pair)}`);
      assert.equal(pair.remote.tcpType, 'passive', `the router's candidate is passive: ${JSON.stringify(pair)}`);
      const port = pair.remote.port - server.mediaPort;
      assert.ok(port >= 0 && port < WORKER_PORTS, `the router's TCP port is a worker's UDP port number: ${JSON.stringify(pair)}`);
    }
    const hostVideo = guest.page.locator(`video[aria-label="${HOST}"]`);
    await eventually(() => hostVideo.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'host video plays at the guest' });
    const guestVideo = host.page.locator('video[aria-label="Grace"]');
    await eventually(() => guestVideo.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'guest video plays at the host' });
  });

  step('the firewall did its part: UDP to the router was dropped', async () => {
    const rules = firewall.list();
    const dropped = [...rules.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(dropped.some((n) => n > 0), `the browsers tried UDP first and were stopped:\n${rules}`);
  });

  step('the connection details show TCP', async () => {
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const shown = b.page.locator('.sec-transport');
      await eventually(() => shown.getAttribute('data-transport'), (t) => t === 'direct-tcp', { what: `${who}'s connection details` });
      await b.page.getByRole('button', { name: /encrypt/i }).first().click();
      assert.match(await shown.textContent(), /Direct to the server \(TCP\)/);
      await screenshot(b.page, `firewall-${who}-details`);
    }
  });

  step('conclave join falls back to TCP by itself and decrypts the browsers\' media', async () => {
    // Receives only; stays 8 s once admitted; --stats prints what it got.
    const native = startNativeJoin(invite, 8);
    await host.page.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    const { code, out, err } = await native.done;
    assert.equal(code, 0, `conclave join failed:\n${err}`);
    const stats = JSON.parse(out);
    const frames = Object.values(stats.received).reduce((n, t) => n + t.frames, 0);
    assert.ok(frames > 100, `the native client decrypted ${frames} frames: ${out}`);
    // It tried UDP first (its checks went into the firewall), then TCP.
    assert.ok(stats.packets_out.udp > 0 && stats.packets_out.tcp > 0, JSON.stringify(stats.packets_out));
    assert.match(err, /media over ICE-TCP/);
  });
});
