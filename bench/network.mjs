// The network bench: a meeting of three in Chromium (the web client, E2EE on)
// through Conclave, every packet impaired by bench/impair on an NFQUEUE, leg after leg in one run. See bench/network, which runs this in a
// loopback-only network namespace, and docs/benchmarks.md.
//
// node bench/network.mjs [--legs clean,loss3] [--variants red,nored,direct,janus,red-b]
//   [--seconds 60] [--warmup 15] [--repeats 1] [--glass-to-glass] [--json FILE]
//
// Every UDP packet is impaired once (the output hook on loopback), so
// a packet through the server crosses two impaired hops, as in the issue's
// measurements. For each variant three fresh browsers meet; `nored` strips
// RED from their SDP (so they send and receive plain Opus), `red` leaves the
// browsers as they are. `direct` is a call of two browsers without the
// server: one RTCPeerConnection each, Chromium's defaults (Opus first, so no
// RED; no E2EE transform, DTLS-SRTP only), one impaired hop. `janus` is a
// meeting of three through Janus 1.1.2's videoroom (bench/janus's
// configuration, on the veth pair bench/netns.sh makes): each browser
// publishes one VP8 stream and plain Opus and receives the two others, two
// impaired hops as through Conclave. `red-b` is `red` on a second server
// build (CONCLAVE_BIN_B), for a before/after in one run. `--repeats N` runs
// every variant's legs N times, interleaved, and ends with min / median /
// max per leg and variant. Per leg and variant it reports, averaged over every
// received stream: received video fps, freezes and frozen seconds a minute
// (Chromium's freezeCount / totalFreezesDuration), dropped frames a minute,
// and the share of audio samples concealed. A benchmark: it asserts nothing
// about the figures. `--glass-to-glass` replaces every browser's camera with
// a canvas stamping each frame with the time it is drawn and reads the stamps
// back from the videos each member receives (bench/network-page.js), so each
// row gets glass-to-glass latency too (p50/p95 ms, every variant); off by
// default, since the canvas is not the fake camera the other figures were
// measured with.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, eventually, hostStartsMeeting, localUdpPorts, openBrowser as openChromium, startImpair, startServer, toneWav } from '../e2e/harness.js';

const { values: opts } = parseArgs({
  options: {
    legs: { type: 'string', default: 'clean,loss3' },
    variants: { type: 'string', default: 'red,nored' },
    seconds: { type: 'string', default: '60' },
    warmup: { type: 'string', default: '15' },
    repeats: { type: 'string', default: '1' },
    trace: { type: 'string' },
    'glass-to-glass': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const repeats = Number(opts.repeats);
const seconds = Number(opts.seconds);
const warmup = Number(opts.warmup);

/** The legs of the issue (per hop): arguments for bench/impair. */
const LEGS = {
  clean: [],
  jitter: ['--delay-ms', '40', '--jitter-ms', '10'],
  loss3: ['--delay-ms', '40', '--jitter-ms', '10', '--loss', '0.03'],
  loss10: ['--delay-ms', '40', '--jitter-ms', '10', '--loss', '0.10'],
  // Gilbert–Elliott, about 3 % lost on average in bursts of two on average.
  burst: ['--delay-ms', '40', '--jitter-ms', '10', '--burst', '0.02,0.3,0,0.5'],
  // One receiver (the last member) behind a 300 kbit/s bottleneck with a
  // 250 ms buffer, besides 40 ± 10 ms on every hop; its port is added at
  // run time (localUdpPorts: all its local UDP ports).
  capped: ['--delay-ms', '40', '--jitter-ms', '10', '--cap-kbps', '300'],
};
const legs = opts.legs.split(',');
for (const l of legs) if (!(l in LEGS)) throw new Error(`unknown leg ${l} (${Object.keys(LEGS)})`);
const variants = opts.variants.split(',');
for (const v of variants) if (!['red', 'nored', 'direct', 'janus', 'red-b'].includes(v)) throw new Error(`unknown variant ${v}`);
/** Janus 1.1.2 (the `janus` variant): its HTTP API on the veth end bench/netns.sh made. */
const JANUS_BIN = process.env.JANUS_BIN || '/usr/bin/janus';
const JANUS_API = 'http://10.77.0.1:8088/janus';

const USER = 'bench';
const PASSWORD = 'network bench password';

const glassToGlass = opts['glass-to-glass'];

/** With --glass-to-glass, the page's camera is bench/network-page.js's stamped canvas (init script, runs in the page). */
function stampedCamera() {
  const devices = navigator.mediaDevices;
  if (!devices?.getUserMedia) return;
  const original = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (c) => (await import('/bench/network-page.js')).getUserMedia(original, c);
}

/** A fresh browser (e2e/harness.js), with the stamped camera under --glass-to-glass. */
async function openBrowser(name, options) {
  const b = await openChromium(name, options);
  if (glassToGlass) {
    for (const file of ['network-page.js', 'frame-stamp.js']) {
      const body = fs.readFileSync(path.join(ROOT, 'bench', file), 'utf8');
      await b.context.route(`**/bench/${file}`, (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body }));
    }
    await b.context.addInitScript(stampedCamera);
  }
  return b;
}

/** The frames each page read back since the last call: latencies (ms) pooled over its received videos. */
async function glassToGlassSamples(pages) {
  const got = await Promise.all(pages.map((p) => p.evaluate(() => window.__glassToGlass?.take() ?? null)));
  const sorted = (xs) => xs.filter((x) => x !== null).sort((a, b) => a - b);
  const q = (v, p) => (v.length ? v[Math.min(v.length - 1, Math.ceil(p * v.length) - 1)] : NaN);
  const display = sorted(got.flatMap((g) => g?.samples.map((x) => x[0]) ?? []));
  const receive = sorted(got.flatMap((g) => g?.samples.map((x) => x[1]) ?? []));
  return {
    g2g_frames: display.length,
    g2g_p50_ms: q(display, 0.5),
    g2g_p95_ms: q(display, 0.95),
    g2g_receive_p50_ms: q(receive, 0.5),
    g2g_unreadable: got.reduce((a, g) => a + (g?.unreadable ?? 0), 0),
    g2g_early: got.reduce((a, g) => a + (g?.early ?? 0), 0),
  };
}

/** Leaves RED out of every description the page makes (init script, runs in the page). */
function withoutRed() {
  const strip = (d) => {
    if (!d || !d.sdp) return d;
    let sdp = d.sdp;
    for (const [, pt] of sdp.matchAll(/a=rtpmap:(\d+) red\//g)) {
      sdp = sdp.split('\r\n')
        .filter((l) => !l.startsWith(`a=rtpmap:${pt} `) && !l.startsWith(`a=fmtp:${pt} `))
        .map((l) => (l.startsWith('m=audio') ? l.split(' ').filter((x, i) => i < 3 || x !== pt).join(' ') : l))
        .join('\r\n');
    }
    return { type: d.type, sdp };
  };
  const proto = RTCPeerConnection.prototype;
  const offer = proto.createOffer;
  proto.createOffer = async function createOffer(...a) { return strip(await offer.apply(this, a)); };
  const answer = proto.createAnswer;
  proto.createAnswer = async function createAnswer(...a) { return strip(await answer.apply(this, a)); };
}

/** Sums of the page's inbound counters, and how many video and audio streams it receives. */
function inbound(page) {
  return page.evaluate(async () => {
    const o = { playoutExt: false, jbDelay: 0, jbEmitted: 0, jbMinimum: 0, jbTarget: 0, video: 0, audio: 0, frames: 0, freezes: 0, frozen: 0, dropped: 0, samples: 0, concealed: 0, lost: 0, packets: 0, red: false, vpackets: 0, vlost: 0, nacks: 0, plis: 0, rtx: 0, keyframes: 0, width: 0, encoded: {}, sentNacks: 0, resent: 0, cpuLimited: 0, bwLimited: 0, outbound: 0, availOut: 0, pairs: 0, target: {}, modes: {}, abytes: 0, vbytes: 0, apackets: 0 };
    for (const pc of (window.__pcs || []).filter((p) => p.connectionState !== 'closed')) {
      // Chromium sends RED when the answer lists it before Opus.
      const sdp = pc.currentRemoteDescription?.sdp || '';
      const names = new Map([...sdp.matchAll(/a=rtpmap:(\d+) ([^/\r\n]+)/g)].map((m) => [m[1], m[2].toLowerCase()]));
      const audio = sdp.split('\r\n').find((l) => l.startsWith('m=audio') && !l.startsWith('m=audio 0'));
      o.red ||= names.get(audio?.split(' ')[3]) === 'red';
      // The playout-delay header extension negotiated (the server asks
      // for a minimum delay with it while repairs come late).
      o.playoutExt ||= sdp.includes('rtp-hdrext/playout-delay');
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) {
          o.availOut += s.availableOutgoingBitrate;
          o.pairs += 1;
        }
        if (s.type === 'outbound-rtp' && s.kind === 'video') {
          o.target[s.rid || '-'] = (o.target[s.rid || '-'] || 0) + (s.targetBitrate || 0);
          if (s.scalabilityMode) o.modes[s.rid || '-'] = s.scalabilityMode;
          // What this member's camera sent, per simulcast layer: a frame
          // rate short of 20 here is the sender's (CPU, bandwidth), not loss.
          const layer = s.rid || '-';
          o.encoded[layer] = (o.encoded[layer] || 0) + (s.framesSent || 0);
          o.outbound += 1;
          o.sentNacks += s.nackCount || 0;
          o.resent += s.retransmittedPacketsSent || 0;
          o.cpuLimited += s.qualityLimitationDurations?.cpu || 0;
          o.bwLimited += s.qualityLimitationDurations?.bandwidth || 0;
        }
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') {
          o.video += 1;
          o.frames += s.framesDecoded || 0;
          o.freezes += s.freezeCount || 0;
          o.frozen += s.totalFreezesDuration || 0;
          o.dropped += s.framesDropped || 0;
          o.vpackets += s.packetsReceived || 0;
          o.vlost += s.packetsLost || 0;
          o.nacks += s.nackCount || 0;
          o.plis += s.pliCount || 0;
          o.rtx += s.retransmittedPacketsReceived || 0;
          o.keyframes += s.keyFramesDecoded || 0;
          o.width += s.frameWidth || 0;
          // Seconds summed over frames leaving the jitter buffer, and how
          // many: the mean delay a frame waited there, and what Chromium
          // aimed at (its target, and the minimum it was asked for).
          o.jbDelay += s.jitterBufferDelay || 0;
          o.jbEmitted += s.jitterBufferEmittedCount || 0;
          o.jbMinimum += s.jitterBufferMinimumDelay || 0;
          o.jbTarget += s.jitterBufferTargetDelay || 0;
        } else {
          o.audio += 1;
          o.samples += s.totalSamplesReceived || 0;
          o.concealed += s.concealedSamples || 0;
        }
        o.lost += s.packetsLost || 0;
        o.packets += s.packetsReceived || 0;
        // RTP bytes received (payload and header), per kind: what each
        // takes of a capped member's link (IP, UDP and SRTP add 38 bytes a
        // packet on the wire).
        const bytes = (s.bytesReceived || 0) + (s.headerBytesReceived || 0);
        if (s.kind === 'video') o.vbytes += bytes;
        else {
          o.abytes += bytes;
          o.apackets += s.packetsReceived || 0;
        }
      });
    }
    return o;
  });
}

/** Each received video stream's counters (for --trace). */
function videoStreams(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of (window.__pcs || []).filter((p) => p.connectionState !== 'closed')) {
      (await pc.getStats()).forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        out.push([s.ssrc, s.framesDecoded || 0, s.freezeCount || 0, s.totalFreezesDuration || 0, s.nackCount || 0, s.pliCount || 0,
          s.keyFramesDecoded || 0, s.frameWidth || 0, s.packetsLost || 0, s.packetsReceived || 0, s.framesDropped || 0,
          s.jitterBufferDelay || 0, s.jitterBufferEmittedCount || 0, s.jitterBufferTargetDelay || 0, s.jitterBufferMinimumDelay || 0,
          s.framesReceived || 0, s.retransmittedPacketsReceived || 0, s.totalInterFrameDelay || 0]);
      });
    }
    return out;
  });
}

/**
 * The transport and local port of the page's selected candidate pair now
 * (`udp:40123`): the capped leg's cap holds only while it is one of the
 * ports capped (ICE-TCP, which bench/impair does not see, would escape it
 * too).
 */
function selectedPair(page) {
  return page.evaluate(async () => {
    for (const pc of (window.__pcs || [window.directCall]).filter((p) => p && p.connectionState !== 'closed')) {
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const chosen = stats.get(s.selectedCandidatePairId);
          const local = chosen && stats.get(chosen.localCandidateId);
          if (local) pair = `${local.protocol}:${local.port}`;
        }
      });
      if (pair) return pair;
    }
    return 'none';
  });
}

/** Three fresh browsers in a Conclave meeting with E2EE; resolves once everyone decodes two videos. */
async function meetingOfThree(variant, flags, server) {
  const host = await openBrowser(`network-${variant}-host`, { flags });
  const guests = [await openBrowser(`network-${variant}-g1`, { flags }), await openBrowser(`network-${variant}-g2`, { flags })];
  const all = [host, ...guests];
  try {
    if (variant === 'nored') for (const b of all) await b.context.addInitScript(withoutRed);
    const invite = await hostStartsMeeting(host.page, server.url, USER, PASSWORD);
    for (const [i, g] of guests.entries()) {
      const name = `Guest ${i + 1}`;
      await g.page.goto(invite);
      await g.page.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await g.page.getByRole('button', { name: 'Join', exact: true }).click();
      await host.page.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 30_000 });
      await g.page.getByRole('toolbar', { name: 'Meeting controls' }).waitFor({ timeout: 30_000 });
    }
    for (const b of all) {
      await eventually(() => inbound(b.page), (s) => s.video >= 2 && s.frames > 40, { timeout: 60_000, what: 'every member decodes two videos' });
    }
  } catch (e) {
    // A meeting that did not come together: its browsers would otherwise
    // stay in the meeting (loading the machine during the next windows)
    // and keep node from exiting at the end of the run.
    for (const b of all) await b.close().catch(() => {});
    throw e;
  }
  return all;
}

/** Two fresh browsers in a direct call (no server in the media path); resolves once both decode video. */
async function directCall(flags, server) {
  const all = [await openBrowser('network-direct-a', { flags }), await openBrowser('network-direct-b', { flags })];
  for (const b of all) {
    // Any page of a trustworthy origin will do for getUserMedia.
    await b.page.goto(`${server.url}/`);
    await b.page.evaluate(async () => {
      const pc = new RTCPeerConnection();
      window.directCall = pc;
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      for (const t of stream.getTracks()) pc.addTrack(t, stream);
      pc.ontrack = (e) => {
        const el = document.createElement(e.track.kind);
        el.autoplay = true;
        el.srcObject = e.streams[0] || new MediaStream([e.track]);
        document.body.append(el);
      };
    });
  }
  // Whole descriptions, candidates included (no trickling to relay).
  const describe = (page, remote) => page.evaluate(async (r) => {
    const pc = window.directCall;
    if (r) await pc.setRemoteDescription(r);
    await pc.setLocalDescription();
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((done) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && done()));
    }
    return pc.localDescription.toJSON();
  }, remote);
  const offer = await describe(all[0].page, null);
  const answer = await describe(all[1].page, offer);
  await all[0].page.evaluate((a) => window.directCall.setRemoteDescription(a), answer);
  for (const b of all) {
    await eventually(() => inbound(b.page), (s) => s.video >= 1 && s.frames > 40, { timeout: 60_000, what: 'both ends decode video' });
  }
  return all;
}

/**
 * Janus 1.1.2 in the foreground with bench/janus's configuration (HTTP API
 * and videoroom only, media on 10.77.0.1); resolves once its API answers.
 */
async function startJanus() {
  const dir = path.join(ROOT, 'bench/janus');
  const log = fs.openSync(path.join(os.tmpdir(), 'conclave-network-janus.log'), 'w');
  const proc = spawn(JANUS_BIN, ['-F', dir, '-C', path.join(dir, 'janus.jcfg')], { stdio: ['ignore', log, log] });
  await eventually(() => fetch(`${JANUS_API}/info`).then((r) => r.ok).catch(() => false), (ok) => ok || proc.exitCode !== null, { what: 'janus answers' });
  if (proc.exitCode !== null) throw new Error(`janus exited (${proc.exitCode}); see ${os.tmpdir()}/conclave-network-janus.log`);
  return {
    stop() {
      proc.kill('SIGTERM');
      return new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r))).finally(() => fs.closeSync(log));
    },
  };
}

let janusTransaction = 0;
async function janusPost(url, body) {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify({ ...body, transaction: `t${++janusTransaction}` }) });
  const v = await r.json();
  if (v.janus === 'error') throw new Error(`janus: ${JSON.stringify(v.error)}`);
  return v;
}

/** One Janus session with handles on the videoroom plugin; events come by long poll. */
async function janusSession() {
  const session = (await janusPost(JANUS_API, { janus: 'create' })).data.id;
  const events = [];
  let open = true;
  (async () => {
    while (open) {
      try {
        const r = await fetch(`${JANUS_API}/${session}?maxev=10&rid=${Date.now()}`);
        const v = await r.json();
        events.push(...(Array.isArray(v) ? v : [v]));
      } catch {
        if (open) await new Promise((res) => setTimeout(res, 200));
      }
    }
  })();
  return {
    async attach() {
      const handle = (await janusPost(`${JANUS_API}/${session}`, { janus: 'attach', plugin: 'janus.plugin.videoroom' })).data.id;
      const url = `${JANUS_API}/${session}/${handle}`;
      return {
        /** A plugin request; for an asynchronous one, waits for its event: [data, jsep]. */
        async message(body, jsep) {
          const v = await janusPost(url, { janus: 'message', body, ...(jsep ? { jsep } : {}) });
          if (v.janus === 'success') return [v.plugindata.data, null];
          const e = await eventually(() => events.findIndex((x) => x.janus === 'event' && x.sender === handle), (i) => i >= 0, { timeout: 30_000, what: `janus answers ${body.request}` });
          const [ev] = events.splice(e, 1);
          if (ev.plugindata?.data?.error) throw new Error(`videoroom: ${ev.plugindata.data.error}`);
          return [ev.plugindata.data, ev.jsep || null];
        },
        trickleDone() { return janusPost(url, { janus: 'trickle', candidate: { completed: true } }); },
      };
    },
    close() {
      open = false;
      return janusPost(`${JANUS_API}/${session}`, { janus: 'destroy' }).catch(() => {});
    },
  };
}

/** The page's local description once ICE gathering is complete (Janus half-trickles: candidates in the SDP). */
function gathered(page, remote, pcName) {
  return page.evaluate(async ([r, name]) => {
    const pc = window[name];
    if (r) await pc.setRemoteDescription(r);
    await pc.setLocalDescription();
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((done) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && done()));
    }
    return pc.localDescription.toJSON();
  }, [remote, pcName]);
}

/**
 * Three fresh browsers in a Janus videoroom (as the first measurement:
 * each publishes one 640×360 camera and the tone on one PeerConnection and
 * receives the two others on another, Chromium's defaults: plain Opus, one VP8
 * stream, no E2EE); resolves once everyone decodes two videos.
 */
async function janusMeeting(flags, server) {
  const room = 1000 + Math.floor(Math.random() * 1e6);
  const admin = await janusSession();
  await (await admin.attach()).message({ request: 'create', room, publishers: 3, bitrate: 0, audiocodec: 'opus', videocodec: 'vp8' });
  const all = [];
  const sessions = [admin];
  const feeds = [];
  for (const i of [0, 1, 2]) {
    const b = await openBrowser(`network-janus-${i}`, { flags });
    all.push(b);
    await b.page.goto(`${server.url}/`);
    await b.page.evaluate(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      const pub = new RTCPeerConnection();
      for (const t of stream.getTracks()) pub.addTransceiver(t, { direction: 'sendonly', streams: [stream] });
      window.janusPub = pub;
      const sub = new RTCPeerConnection();
      sub.ontrack = (e) => {
        const el = document.createElement(e.track.kind);
        el.autoplay = true;
        el.srcObject = new MediaStream([e.track]);
        document.body.append(el);
      };
      window.janusSub = sub;
    });
    const s = await janusSession();
    sessions.push(s);
    const h = await s.attach();
    const offer = await gathered(b.page, null, 'janusPub');
    const [data, answer] = await h.message({ request: 'joinandconfigure', ptype: 'publisher', room, display: `member ${i}`, audio: true, video: true }, offer);
    await b.page.evaluate((a) => window.janusPub.setRemoteDescription(a), answer);
    await h.trickleDone();
    feeds.push(data.id);
  }
  // Janus offers a feed to subscribers only once its PeerConnection is up.
  for (const b of all) {
    await eventually(() => b.page.evaluate(() => window.janusPub.connectionState), (st) => st === 'connected', { timeout: 30_000, what: 'publisher connected to janus' });
  }
  for (const [i, b] of all.entries()) {
    const h = await sessions[i + 1].attach();
    const streams = feeds.filter((_, j) => j !== i).map((feed) => ({ feed }));
    const [, offer] = await h.message({ request: 'join', ptype: 'subscriber', room, streams });
    const answer = await gathered(b.page, offer, 'janusSub');
    await h.message({ request: 'start' }, answer);
    await h.trickleDone();
  }
  for (const b of all) {
    await eventually(() => inbound(b.page), (s) => s.video >= 2 && s.frames > 40, { timeout: 60_000, what: 'every member decodes two videos (janus)' });
  }
  const close = all.map((b) => b.close.bind(b));
  for (const [i, b] of all.entries()) {
    b.close = async () => {
      await close[i]();
      if (i === all.length - 1) for (const s of sessions) await s.close();
    };
  }
  return all;
}

/**
 * The Conclave servers: `red-b` runs CONCLAVE_BIN_B (e.g. the build before a
 * change) beside CONCLAVE_BIN, so two builds meet the same legs in one run.
 */
const SERVER_LOG = { RUST_LOG: process.env.RUST_LOG || 'info,conclave_media::peer_stats=debug' };
const servers = { a: await startServer({ env: SERVER_LOG }) };
if (variants.includes('red-b')) {
  if (!process.env.CONCLAVE_BIN_B) throw new Error('the red-b variant needs CONCLAVE_BIN_B');
  servers.b = await startServer({ binary: process.env.CONCLAVE_BIN_B, env: SERVER_LOG });
}
/**
 * The router's per-session counters of one meeting, summed over its members
 * (`peer counters at its end`, logged as each member's session is dropped,
 * some 15–30 s after its browser closed). The meeting's members are the peers
 * `media connected` in the server's log since `from` (the log's length when
 * the meeting began); only their lines count, so a late line of an earlier
 * meeting is never added to the next one.
 */
function peerCounters(srv, from) {
  // tracing colours its fields; without the escapes, `peer=peer 3`.
  const text = fs.readFileSync(path.join(srv.dataDir, 'server.log')).subarray(from).toString('utf8').replace(/\x1b\[[0-9;]*m/g, '');
  const members = new Set([...text.matchAll(/media connected peer=(peer \d+)/g)].map((m) => m[1]));
  const lines = text.split('\n').filter((l) => l.includes('peer counters at its end') && members.has(l.match(/peer=(peer \d+)/)?.[1]));
  const sum = { members: members.size, sessions: lines.length };
  for (const l of lines) for (const [, k, v] of l.matchAll(/(\w+): (\d+)/g)) sum[k] = (sum[k] || 0) + Number(v);
  return sum;
}
/** The length of a server's log now: where the next meeting's lines begin. */
const logLength = (srv) => fs.statSync(path.join(srv.dataDir, 'server.log')).size;
for (const s of Object.values(servers)) s.createUser(USER, PASSWORD);
const server = servers.a;
const janus = variants.includes('janus') ? await startJanus() : null;
const tone = toneWav('conclave-network-');
const flags = [`--use-file-for-fake-audio-capture=${tone}`];
const results = [];
try {
  for (let repeat = 1; repeat <= repeats; repeat += 1) for (const variant of variants) {
    const srv = variant === 'red-b' ? servers.b : variant.startsWith('red') || variant === 'nored' ? server : null;
    const logFrom = srv ? logLength(srv) : 0;
    let all;
    try {
      all = await (variant === 'direct' ? directCall(flags, server)
        : variant === 'janus' ? janusMeeting(flags, server)
          : meetingOfThree(variant, flags, variant === 'red-b' ? servers.b : server));
    } catch (e) {
      // A meeting that did not come together (a starved machine) costs
      // this repeat of this variant, not the run.
      console.log(JSON.stringify({ variant, repeat, setup_failed: String(e).split('\n')[0] }));
      continue;
    }
    try {
      for (const leg of legs) {
        const capped = leg === 'capped' ? await localUdpPorts(all.at(-1).page) : null;
        // Every UDP packet through impair (e2e/harness.js: the NFQUEUE rule
        // comes and goes with it).
        const impair = await startImpair(capped ? [...LEGS[leg], ...capped.flatMap((p) => ['--cap-port', String(p)])] : LEGS[leg], { reportSecs: 5 });
        // The capped member's selected pair, sampled about once a second
        // through warm-up and window: samples on each.
        const cappedPairs = {};
        let sampling = capped !== null;
        const sampler = (async () => {
          while (sampling) {
            const p = await selectedPair(all.at(-1).page).catch(() => 'none');
            cappedPairs[p] = (cappedPairs[p] || 0) + 1;
            await new Promise((r) => setTimeout(r, 1000));
          }
        })();
        try {
          await new Promise((r) => setTimeout(r, warmup * 1000));
          const before = await Promise.all(all.map((b) => inbound(b.page)));
          if (glassToGlass) await glassToGlassSamples(all.map((b) => b.page)); // forgets the warm-up's frames
          const t0 = Date.now();
          if (opts.trace) {
            // Every received video stream's counters every 250 ms, to tell
            // what happened around each freeze (--trace FILE, JSON lines).
            while (Date.now() - t0 < seconds * 1000) {
              const at = Date.now() - t0;
              const streams = await Promise.all(all.map((b) => videoStreams(b.page)));
              fs.appendFileSync(opts.trace, `${JSON.stringify({ variant, leg, repeat, at, streams })}\n`);
              await new Promise((r) => setTimeout(r, Math.max(0, 250 - (Date.now() - t0 - at))));
            }
          } else {
            await new Promise((r) => setTimeout(r, seconds * 1000));
          }
          const after = await Promise.all(all.map((b) => inbound(b.page)));
          sampling = false;
          await sampler;
          const g2g = glassToGlass ? await glassToGlassSamples(all.map((b) => b.page)) : {};
          const secs = (Date.now() - t0) / 1000;
          const sum = (k) => after.reduce((a, s, i) => a + s[k] - before[i][k], 0);
          const videos = after.reduce((a, s) => a + s.video, 0);
          const mins = secs / 60;
          const lastReport = impair.reports.at(-1) || {};
          const row = {
            variant,
            leg,
            repeat,
            at: new Date(t0).toISOString(),
            load: os.loadavg().map((x) => Number(x.toFixed(2))),
            seconds: Math.round(secs),
            red: after.every((s) => s.red),
            fps: sum('frames') / videos / secs,
            freezes_per_min: sum('freezes') / videos / mins,
            frozen_s_per_min: sum('frozen') / videos / mins,
            dropped_per_min: sum('dropped') / videos / mins,
            audio_concealed_pct: (100 * sum('concealed')) / Math.max(1, sum('samples')),
            packets_lost_pct: (100 * sum('lost')) / Math.max(1, sum('lost') + sum('packets')),
            // Video repair as the receivers saw it: NACKs and PLIs they sent,
            // retransmissions they got (share of video packets), key frames
            // decoded, a minute, per stream; and the mean width they decode.
            video_lost_pct: (100 * sum('vlost')) / Math.max(1, sum('vlost') + sum('vpackets')),
            nacks_per_min: sum('nacks') / videos / mins,
            plis_per_min: sum('plis') / videos / mins,
            rtx_pct: (100 * sum('rtx')) / Math.max(1, sum('vpackets')),
            keyframes_per_min: sum('keyframes') / videos / mins,
            width: after.reduce((a, s) => a + s.width, 0) / videos,
            // Per member, in join order (the capped leg caps the last): the
            // mean width it decodes and its received frame rate.
            member_width: after.map((s) => s.width / Math.max(1, s.video)),
            member_fps: after.map((s, i) => (s.frames - before[i].frames) / Math.max(1, s.video) / secs),
            // What each member received, kbit/s of RTP (payload and header):
            // all its audio streams, all its videos, and its audio packets a
            // second.
            member_rx_kbps: after.map((s, i) => ({
              audio: Math.round(((s.abytes - before[i].abytes) * 8) / secs / 1000),
              video: Math.round(((s.vbytes - before[i].vbytes) * 8) / secs / 1000),
              audio_pps: Math.round((s.apackets - before[i].apackets) / secs),
            })),
            playout_ext: after.map((s) => s.playoutExt),
            // Mean ms a video frame waited in the receivers' jitter buffers,
            // and the mean target and minimum delay Chromium reported.
            jitter_buffer_ms: (1000 * sum('jbDelay')) / Math.max(1, sum('jbEmitted')),
            jitter_target_ms: (1000 * sum('jbTarget')) / Math.max(1, sum('jbEmitted')),
            jitter_minimum_ms: (1000 * sum('jbMinimum')) / Math.max(1, sum('jbEmitted')),
            // The senders' side: frames sent a second per layer (mean over
            // senders), NACKs they got and packets they sent again a minute,
            // and the share of the time their encoder was held back by CPU
            // or by bandwidth (Chromium's qualityLimitationDurations).
            sent_fps: Object.fromEntries(
              [...new Set(after.flatMap((s) => Object.keys(s.encoded)))].map((l) => {
                const senders = after.filter((s) => l in s.encoded).length;
                const n = after.reduce((a, s, i) => a + (s.encoded[l] || 0) - (before[i].encoded[l] || 0), 0);
                return [l, n / Math.max(1, senders) / secs];
              }),
            ),
            // The senders' own estimate of their uplink at the end (kbit/s,
            // mean over members) and what their encoders aimed at per layer.
            avail_out_kbps: after.reduce((a, s) => a + s.availOut, 0) / Math.max(1, after.reduce((a, s) => a + s.pairs, 0)) / 1000,
            target_kbps: Object.fromEntries(
              [...new Set(after.flatMap((s) => Object.keys(s.target)))].map((l) => [l, after.reduce((a, s) => a + (s.target[l] || 0), 0) / all.length / 1000]),
            ),
            scalability: Object.assign({}, ...after.map((s) => s.modes)),
            sender_nacks_per_min: sum('sentNacks') / all.length / mins,
            sender_resent_per_min: sum('resent') / all.length / mins,
            cpu_limited_pct: (100 * sum('cpuLimited')) / Math.max(1, after.reduce((a, s) => a + s.outbound, 0)) / secs,
            bw_limited_pct: (100 * sum('bwLimited')) / Math.max(1, after.reduce((a, s) => a + s.outbound, 0)) / secs,
            impair: lastReport,
            // The capped leg: the ports capped, and how many samples (about
            // one a second) found the capped member's ICE on each pair.
            ...(capped !== null ? { capped_ports: capped, capped_pairs: cappedPairs } : {}),
            // Display time − the time the sender drew the frame, over every
            // frame read back (--glass-to-glass); receive − send splits off the
            // receiver's jitter buffer, decoding and compositing.
            ...g2g,
          };
          results.push(row);
          console.log(JSON.stringify(row));
        } finally {
          sampling = false;
          await impair.stop();
        }
      }
    } finally {
      for (const b of all) await b.close();
    }
    // The router's counters of this meeting's sessions (summed over its
    // members, all legs of the meeting together): logged as each leaves,
    // after the server gave up on its media (ICE) and its session.
    if (srv) {
      const done = (c) => c.members > 0 && c.sessions >= c.members;
      const counters = await eventually(() => peerCounters(srv, logFrom), done, { timeout: 90_000, what: 'the members\' counters in the server log' })
        .catch(() => peerCounters(srv, logFrom));
      for (const r of results.filter((x) => x.variant === variant && x.repeat === repeat)) r.server = counters;
      console.log(JSON.stringify({ variant, repeat, server: counters }));
    }
  }
} finally {
  fs.rmSync(path.dirname(tone), { recursive: true, force: true });
  await servers.a.stop('network-bench-server.log');
  if (servers.b) await servers.b.stop('network-bench-server-b.log');
  if (janus) await janus.stop();
}

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
console.log('\n| leg (per hop) | variant | repeat | received fps | freezes / min | frozen s / min | dropped frames / min | audio concealed | packets lost after repair (2 hops) |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.leg} | ${r.variant} | ${r.repeat} | ${f(r.fps)} | ${f(r.freezes_per_min)} | ${f(r.frozen_s_per_min)} | ${f(r.dropped_per_min)} | ${f(r.audio_concealed_pct, 2)} % | ${f(r.packets_lost_pct, 2)} % |`);
}

// Per leg and variant over the repeats: min / median / max (judge on the median).
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const spread = (xs, d = 1) => `${f(median(xs), d)} (${f(Math.min(...xs), d)}–${f(Math.max(...xs), d)})`;
console.log(`\n${repeats} repeat(s) of ${seconds} s windows; each cell: median (min–max)`);
const g2gHead = glassToGlass ? ' glass-to-glass p50 ms | glass-to-glass p95 ms |' : '';
console.log(`| leg (per hop) | variant | runs | received fps | freezes / min | frozen s / min | dropped frames / min | audio concealed % | NACKs / min | PLIs / min | key frames / min | jitter buffer ms |${g2gHead}`);
console.log(`|---|---|---|---|---|---|---|---|---|---|---|---|${glassToGlass ? '---|---|' : ''}`);
for (const leg of legs) {
  for (const variant of variants) {
    const rs = results.filter((r) => r.leg === leg && r.variant === variant);
    if (!rs.length) continue;
    const col = (k, d) => spread(rs.map((r) => r[k]), d);
    const g2g = glassToGlass ? ` ${col('g2g_p50_ms', 0)} | ${col('g2g_p95_ms', 0)} |` : '';
    console.log(`| ${leg} | ${variant} | ${rs.length} | ${col('fps')} | ${col('freezes_per_min')} | ${col('frozen_s_per_min')} | ${col('dropped_per_min', 0)} | ${col('audio_concealed_pct', 2)} | ${col('nacks_per_min', 0)} | ${col('plis_per_min')} | ${col('keyframes_per_min')} | ${col('jitter_buffer_ms', 0)} |${g2g}`);
  }
}
if (opts.json) fs.writeFileSync(opts.json, JSON.stringify(results, null, 2));
