// Redundant audio (RED, RFC 2198) through the server with end-to-end
// encryption on: a host and a guest in Chromium, each sending Opus wrapped in
// RED, the E2EE transform encrypting each RED block on its own. Then the
// server drops every tenth packet it sends (nftables, on loopback): the
// guest still hears the host, because each lost packet's audio came again
// in the next one, and it decrypts all of it.
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { eventually, hostStartsMeeting, nftTable, openBrowser, received, selectedPair, startServer, storySteps, toneWav } from './harness.js';

const HOST = 'grace';
const PASSWORD = 'correct horse battery staple';

/** The page's received audio, summed over its inbound audio streams (getStats). */
function audioIn(page) {
  return page.evaluate(async () => {
    const out = { packets: 0, lost: 0, discarded: 0, samples: 0, concealed: 0, silent: 0, events: 0 };
    for (const pc of (window.__pcs || []).filter((p) => p.connectionState !== 'closed')) {
      (await pc.getStats()).forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
        out.packets += s.packetsReceived || 0;
        out.lost += s.packetsLost || 0;
        out.discarded += s.packetsDiscarded || 0;
        out.samples += s.totalSamplesReceived || 0;
        out.concealed += s.concealedSamples || 0;
        out.silent += s.silentConcealedSamples || 0;
        out.events += s.concealmentEvents || 0;
      });
    }
    return out;
  });
}

/** The audio payload types the server answered the page's offer with, in its order. */
function answeredAudioCodecs(page) {
  return page.evaluate(() => {
    const pc = window.__pcs.filter((p) => p.connectionState !== 'closed').at(-1);
    const sdp = pc?.currentRemoteDescription?.sdp || '';
    const names = new Map([...sdp.matchAll(/a=rtpmap:(\d+) ([^/\r\n]+)/g)].map((m) => [m[1], m[2].toLowerCase()]));
    const line = sdp.split('\r\n').find((l) => l.startsWith('m=audio') && !l.startsWith('m=audio 0')) || '';
    return line.split(' ').slice(3).map((pt) => names.get(pt));
  });
}

describe('redundant audio with end-to-end encryption', () => {
  let server;
  let host;
  let guest;
  let tone;
  const firewall = nftTable('conclave_red_test');
  const step = storySteps('red-', () => [['host', host], ['guest', guest]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    tone = toneWav('conclave-red-');
    const flags = [`--use-file-for-fake-audio-capture=${tone}`];
    host = await openBrowser('red-host', { flags });
    guest = await openBrowser('red-guest', { flags });
  });

  after(async () => {
    firewall.remove();
    for (const b of [host, guest]) if (b) await b.close();
    if (server) await server.stop('red-server.log');
    if (tone) fs.rmSync(path.dirname(tone), { recursive: true, force: true });
  });

  step('host and guest meet with E2EE and send RED', async () => {
    const invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    const g = guest.page;
    await g.goto(invite);
    await g.getByRole('textbox', { name: 'Your name', exact: true }).fill('Lin');
    await g.getByRole('button', { name: 'Join', exact: true }).click();
    await g.getByRole('region', { name: 'Waiting room', exact: true }).waitFor();
    await host.page.getByRole('button', { name: 'Admit', exact: true }).click();
    await g.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      await eventually(() => received(b.page), (r) => r.framesDecoded > 10 && r.audioPackets > 50, { timeout: 25_000, what: `${who} decodes media` });
      // RED ahead of Opus in the answer is what makes Chromium send RED.
      const codecs = await answeredAudioCodecs(b.page);
      assert.deepEqual(codecs.slice(0, 2), ['red', 'opus'], `${who}: the server answered RED before Opus (${codecs})`);
    }
    // The redundant copies arrive and decrypt: the guest's jitter buffer
    // discards the copies of packets it already has.
    await eventually(() => audioIn(guest.page), (a) => a.discarded > 50, { what: 'redundant copies at the guest' });
  });

  step('with every tenth packet from the server lost, the guest still hears the host', async () => {
    // The server's media workers each have a port: the one the guest's
    // connection uses is what it sends the guest from.
    const { remote } = await selectedPair(guest.page);
    firewall.apply(`chain out {
      type filter hook output priority 0; policy accept;
      udp sport ${remote.port} numgen inc mod 10 == 0 counter drop
    }`);
    const before = await audioIn(guest.page);
    const now = await eventually(() => audioIn(guest.page), (a) => a.lost - before.lost > 100, { timeout: 60_000, what: 'a hundred audio packets lost on the way to the guest' });
    firewall.remove();
    const samples = now.samples - before.samples;
    const concealed = now.concealed - before.concealed;
    const lost = now.lost - before.lost;
    const packets = now.packets - before.packets;
    console.log(`guest audio while impaired: ${packets} packets received, ${lost} lost, ${samples} samples played, ${concealed} concealed, ${now.silent - before.silent} of them silent, ${now.events - before.events} events`);
    assert.ok(lost * 20 > packets, `the loss was real: ${lost} lost of ${packets + lost}`);
    // Without redundancy each lost 20 ms frame (960 samples) would be
    // concealed, mostly one concealment event each; with RED most come back
    // from the next packet.
    const events = now.events - before.events;
    assert.ok(events * 4 < lost, `most lost packets were not heard: ${events} concealment events for ${lost} lost packets`);
    assert.ok(concealed < lost * 960, `less audio concealed (${concealed} samples) than the lost packets carried (${lost * 960})`);
    // Still decrypting: audio keeps arriving once the loss is gone.
    await eventually(() => audioIn(guest.page), (a) => a.samples > now.samples + 48_000, { what: 'the host\'s audio keeps playing' });
  });
});
