// End-to-end encryption in real browsers: two browsers form the meeting's MLS
// group, decode each other's SFrame-encrypted video, show the same security
// code and the E2EE badge, and chat through MLS application messages that the
// server sees only as ciphertext. Then a native `conclave join` client, with
// the same crate built natively, and a browser receive each other's media.
// Members that hang (a committer, a creator) are passed over.
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, ROOT, dropSocket, eventually, openBrowser, received, screenshot, hostStartsMeeting, startServer, storySteps, securityCode } from './harness.js';

const HOST = 'grace';
/** Hosts a meeting of her own in the step where the creator hangs. */
const SLOW_HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const MARKUP = '<img src=x onerror=alert(1)>';
/** How long the native client stays in the meeting, in seconds. */
const NATIVE_SECS = 25;
/** How long `conclave record` records, in seconds. */
const RECORD_SECS = 12;

/** Frames ffprobe decodes in a file (it reads every packet). */
function ffprobeFrames(file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', '0',
    '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file]).toString().trim();
  return Number.parseInt(out, 10);
}

/** `page` asks to join by `link` as `name`, and `hostPage` admits them from the participants panel. */
async function joinAndGetAdmitted(page, link, name, hostPage) {
  await page.goto(link);
  await page.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await hostPage.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
}

/** The security code a page shows: twelve groups of five digits. */
/**
 * Whether an `mls_message` (base64) is a commit: a PublicMessage (RFC 9420 §6) whose sender is a
 * member. The server's proposals come from its external sender. Read from the clear framing:
 * version and wire format (2 bytes each), group id (QUIC-style varint length), epoch (8 bytes),
 * then the sender type (1 member, 2 external).
 */
function isCommit(b64) {
  const bytes = Buffer.from(b64, 'base64');
  let i = 4;
  const width = 1 << (bytes[i] >> 6);
  let len = bytes[i] & 0x3f;
  for (let k = 1; k < width; k += 1) len = len * 256 + bytes[i + k];
  i += width + len + 8;
  return bytes[i] === 1;
}

describe('end-to-end encryption in the browser', () => {
  let server;
  let host;
  let guest;
  let invite;
  const step = storySteps('e2ee-', () => [['host', host], ['guest', guest]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    server.createUser(SLOW_HOST, PASSWORD);
    host = await openBrowser('e2ee-host');
    guest = await openBrowser('e2ee-guest');
  });

  after(async () => {
    for (const b of [host, guest]) if (b) await b.close();
    if (server) await server.stop('e2ee-server.log');
  });

  const tileOf = (page, name) => page.locator('li.tile').filter({ has: page.locator('.tile-name', { hasText: name }) });

  step('host starts a meeting and a guest is admitted', async () => {
    const p = host.page;
    invite = await hostStartsMeeting(p, server.url, HOST, PASSWORD);
    // Alone in the meeting, the host made the group: the code is there already.
    await eventually(() => securityCode(p), (c) => c.length > 0, { what: 'the host\'s first security code' });

    const g = guest.page;
    await g.goto(invite);
    await g.getByRole('textbox', { name: 'Your name', exact: true }).fill('Lin');
    await g.getByRole('button', { name: 'Join', exact: true }).click();
    await g.getByRole('region', { name: 'Waiting room', exact: true }).waitFor();
    await p.getByRole('button', { name: 'Admit', exact: true }).click();
    await g.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
  });

  step('both decode each other\'s encrypted video and show the same security code', async () => {
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const first = await eventually(() => received(b.page), (r) => r.framesDecoded > 10 && r.audioPackets > 10, { timeout: 25_000, what: `${who} decodes media` });
      await eventually(() => received(b.page), (r) => r.framesDecoded > first.framesDecoded + 10, { what: `${who} keeps decoding` });
    }
    await eventually(() => tileOf(host.page, 'Lin').locator('video').evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'the guest\'s video plays at the host' });
    // Every frame went through the transform: the senders' frames were encrypted.
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const transforms = await b.page.evaluate(() => window.__pcs.at(-1).getSenders().filter((s) => s.track).map((s) => !!s.transform));
      assert.ok(transforms.length > 0 && transforms.every(Boolean), `${who}: every sender has the E2EE transform (${transforms})`);
    }
    const codes = await eventually(async () => [await securityCode(host.page), await securityCode(guest.page)],
      ([a, b]) => a.length > 0 && a === b, { what: 'equal security codes' });
    assert.match(codes[0], /^\d{5}( \d{5}){11}$/, 'twelve groups of five digits');
    for (const b of [host, guest]) {
      const region = b.page.getByRole('region', { name: 'Security', exact: true });
      await region.getByText('End-to-end encrypted', { exact: true }).waitFor();
      assert.ok(await region.getByText('End-to-end encrypted', { exact: true }).isVisible(), 'the E2EE badge is visible');
    }
    // Both members are in the group, as each participants panel shows.
    await host.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true }).nth(1).waitFor();
    assert.equal(await host.page.getByRole('img', { name: 'Not in the encrypted group' }).count(), 0);
    await host.page.getByRole('button', { name: /End-to-end encrypted/ }).click();
    await host.page.locator('#security-details').waitFor();
    await screenshot(host.page, 'e2ee-host-security-code');
    await host.page.keyboard.press('Escape');
    await screenshot(guest.page, 'e2ee-guest-meeting');
  });

  step('chat is encrypted on the wire and still rendered as text', async () => {
    const send = async (page, text) => {
      await page.getByRole('textbox', { name: 'Message', exact: true }).fill(text);
      await page.getByRole('button', { name: 'Send', exact: true }).click();
    };
    await send(guest.page, MARKUP);
    await host.page.getByRole('log', { name: 'Chat history' }).getByText(MARKUP, { exact: true }).waitFor();
    await send(host.page, `reply ${MARKUP}`);
    await guest.page.getByRole('log', { name: 'Chat history' }).getByText(`reply ${MARKUP}`, { exact: true }).waitFor();
    // The sender sees its own line too (kept as text: MLS does not open one's own message).
    await guest.page.getByRole('log', { name: 'Chat history' }).getByText(MARKUP, { exact: true }).waitFor();
    const sent = await guest.page.evaluate(() => window.__sent.filter((m) => m.type === 'chat'));
    assert.equal(sent.length, 1);
    assert.ok(!sent[0].payload.includes('onerror') && !atob(sent[0].payload).includes('onerror'), 'the chat payload is ciphertext');
    assert.equal(await host.page.locator('.chat-log img').count(), 0);
    assert.equal(await guest.page.locator('.chat-log img').count(), 0);
    assert.deepEqual([...host.alerts, ...guest.alerts], []);
  });

  step('a native client and the browsers receive each other\'s media', async () => {
    const codeBefore = await securityCode(host.page);
    const out = [];
    const err = [];
    const native = spawn(BINARY, ['join', invite, '--name', 'Native',
      '--send-ivf', path.join(ROOT, 'samples/video-320x240.ivf'),
      '--send-ogg', path.join(ROOT, 'samples/audio-440hz.ogg'),
      '--duration', String(NATIVE_SECS), '--stats'], { stdio: ['ignore', 'pipe', 'pipe'] });
    native.stdout.on('data', (d) => out.push(d));
    native.stderr.on('data', (d) => err.push(d));
    const exited = new Promise((resolve) => native.on('exit', (code) => resolve(code)));
    try {
      await host.page.getByRole('listitem').filter({ hasText: 'Native' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      // The browser decodes the native client's video.
      const tile = tileOf(host.page, 'Native');
      await eventually(() => tile.locator('video').evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames).catch(() => 0),
        (n) => n > 10, { timeout: 25_000, what: 'the native client\'s video plays at the host' });
      const first = await tile.locator('video').evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames);
      await eventually(() => tile.locator('video').evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames),
        (n) => n > first + 10, { what: 'the native client\'s video keeps playing' });
      // A new member: a new epoch, a new code, the same on both browsers.
      await eventually(async () => [await securityCode(host.page), await securityCode(guest.page)],
        ([a, b]) => a.length > 0 && a === b && a !== codeBefore, { what: 'a new common security code' });
      await screenshot(host.page, 'e2ee-host-with-native');
    } finally {
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), (NATIVE_SECS + 30) * 1000))]);
      if (code === 'timeout') native.kill('SIGKILL');
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (code !== 0) assert.fail(`conclave join exited ${code}: ${stderr.slice(-2000)}`);
      const stats = JSON.parse(stdout.slice(stdout.indexOf('{')));
      const video = Object.values(stats.received).filter((t) => t.kind === 'video');
      const audio = Object.values(stats.received).filter((t) => t.kind === 'audio');
      console.log(`native client: sent ${JSON.stringify(stats.sent_frames)}, received ${JSON.stringify(stats.received)}`);
      assert.ok(video.some((t) => t.frames > 30), `the native client received browser video frames: ${JSON.stringify(video)}`);
      assert.ok(audio.some((t) => t.frames > 30), `the native client received browser audio frames: ${JSON.stringify(audio)}`);
    }
    assert.deepEqual([...host.errors, ...guest.errors], []);
  });

  step('conclave record decrypts what the browsers send into files ffprobe reads', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-record-'));
    const out = [];
    const err = [];
    const rec = spawn(BINARY, ['record', invite, '--out', dir, '--duration', String(RECORD_SECS)],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    rec.stdout.on('data', (d) => out.push(d));
    rec.stderr.on('data', (d) => err.push(d));
    const exited = new Promise((resolve) => rec.on('exit', (code) => resolve(code)));
    try {
      // The host sees who asks to come in: a recorder, marked as such.
      const row = host.page.getByRole('listitem').filter({ hasText: 'Records the meeting' });
      await row.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await eventually(() => tileOf(host.page, 'Recorder').count(), (n) => n > 0,
        { what: 'the recorder shows in the grid' });
    } finally {
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), (RECORD_SECS + 40) * 1000))]);
      if (code === 'timeout') rec.kill('SIGKILL');
      if (code !== 0) assert.fail(`conclave record exited ${code}: ${Buffer.concat(err).toString().slice(-2000)}`);
    }
    const files = fs.readdirSync(dir).map((f) => path.join(dir, f));
    console.log(`recorded: ${Buffer.concat(out).toString().trim()}`);
    const videos = files.filter((f) => f.endsWith('.ivf')).map((f) => [f, ffprobeFrames(f)]);
    const audios = files.filter((f) => f.endsWith('.ogg')).map((f) => [f, ffprobeFrames(f)]);
    console.log(`ffprobe counts: ${JSON.stringify([...videos, ...audios])}`);
    // Two browsers send video and audio for most of the recording.
    assert.ok(videos.filter(([, n]) => n >= 50).length >= 2, `two browsers' video decoded from the recording: ${JSON.stringify(videos)}`);
    assert.ok(audios.filter(([, n]) => n >= 100).length >= 2, `two browsers' audio in the recording: ${JSON.stringify(audios)}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  step('a commit a modified server relays as chat changes nothing; the same commit through the delivery path does', async () => {
    // A member whose WebSocket passes through the test, standing in for a
    // server that relays the next commit as a chat message first.
    const target = await openBrowser('e2ee-chat-target');
    let other;
    try {
      const t = target.page;
      const refusals = [];
      t.on('console', (m) => { if (m.text().includes('chat message could not be opened')) refusals.push(m.text()); });
      let divert = false;
      let diverted = null;
      // What the server sends after the diverted commit (any later commit among it) is
      // held until the commit is delivered, as a client cannot apply later epochs first.
      let held = null;
      let deliver;
      // If the server asks Tess for an update commit (only when hers would fill the
      // tree: not in a group this small, protocol.md `mls_update_request`), that commit
      // and its echo come before the step starts, so that they do not move her group
      // during it.
      let asked = false;
      let sentCommit = false;
      let updated = false;
      await t.routeWebSocket(() => true, (ws) => {
        const real = ws.connectToServer();
        ws.onMessage((m) => {
          if (JSON.parse(m).type === 'mls_commit') sentCommit = true;
          real.send(m);
        });
        real.onMessage((m) => {
          if (held) { held.push(m); return; }
          const msg = JSON.parse(m);
          if (msg.type === 'mls_update_request') asked = true;
          if (sentCommit && msg.type === 'mls_message' && isCommit(msg.message)) updated = true;
          if (divert && !diverted && msg.type === 'mls_message' && isCommit(msg.message)) {
            diverted = m;
            held = [];
            ws.send(JSON.stringify({ type: 'chat', from: 1, payload: msg.message }));
            return;
          }
          ws.send(m);
        });
        deliver = () => {
          ws.send(diverted);
          for (const m of held) ws.send(m);
          held = null;
        };
      });
      await joinAndGetAdmitted(t, invite, 'Tess', host.page);
      const settled = () => eventually(async () => [await securityCode(host.page), await securityCode(t), !asked || updated],
        ([a, b, u]) => u && a.length > 0 && a === b, { timeout: 25_000, what: 'Tess in the group, any update asked of her made' });
      await settled();
      // A request sent just after the codes agreed is waited for too.
      await new Promise((r) => setTimeout(r, 1_500));
      const before = await settled();
      const chatLines = () => t.getByRole('log', { name: 'Chat history' }).locator('li').count();
      const linesBefore = await chatLines();
      divert = true;
      other = spawn(BINARY, ['join', invite, '--name', 'Otto', '--duration', '40'], { stdio: 'ignore' });
      await host.page.getByRole('listitem').filter({ hasText: 'Otto' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await eventually(() => securityCode(host.page), (c) => c.length > 0 && c !== before[0],
        { timeout: 20_000, what: 'Otto in the host\'s group' });
      await eventually(async () => refusals.length, (n) => n > 0, { what: 'Tess refused the commit sent as chat' });
      assert.equal(await securityCode(t), before[1], 'the commit as chat did not move Tess\'s group');
      assert.equal(await chatLines(), linesBefore, 'nothing shown in the chat');
      // Delivered as what it is, the same commit (and what followed it) takes Tess to the
      // host's epoch.
      deliver();
      await eventually(async () => [await securityCode(t), await securityCode(host.page)], ([a, b]) => a === b,
        { what: 'Tess in the host\'s epoch after the real delivery' });
    } finally {
      if (other) other.kill('SIGKILL');
      await target.close();
    }
  });

  step('a tampered server is flagged: an announced stranger outside the group, a group member never announced', async () => {
    // A third member whose WebSocket passes through the test, standing in for
    // a server that lies to it: it announces "Mallory", who never joined the
    // group, and hides "Ghost", whom the group does contain.
    const watcher = await openBrowser('e2ee-watcher');
    let ghost;
    try {
      const w = watcher.page;
      await w.routeWebSocket(() => true, (ws) => {
        const real = ws.connectToServer();
        ws.onMessage((m) => real.send(m));
        real.onMessage((m) => {
          const msg = JSON.parse(m);
          if (msg.type === 'participant_joined' && msg.participant.name === 'Ghost') return;
          if (msg.type === 'joined') msg.participants = msg.participants.filter((p) => p.name !== 'Ghost');
          ws.send(JSON.stringify(msg));
          if (msg.type === 'joined') {
            ws.send(JSON.stringify({ type: 'participant_joined', participant: {
              id: 9999, name: 'Mallory', role: 'participant', signed_in: false,
              audio: false, video: false, screen: false, presence: 'connected', recording: false } }));
          }
        });
      });
      await joinAndGetAdmitted(w, invite, 'Watcher', host.page);
      await w.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
      ghost = spawn(BINARY, ['join', invite, '--name', 'Ghost', '--duration', '30'], { stdio: 'ignore' });
      await host.page.getByRole('listitem').filter({ hasText: 'Ghost' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      const warnings = w.locator('[aria-label="Encryption warnings"] li');
      const texts = await eventually(() => warnings.allTextContents(),
        (t) => t.some((l) => l.includes('Mallory')) && t.some((l) => l.includes('did not announce')),
        { timeout: 25_000, what: 'both lies flagged in the watcher\'s Security panel' });
      console.log(`watcher's warnings: ${JSON.stringify(texts)}`);
      // The untampered members see no warning.
      assert.equal(await host.page.locator('[aria-label="Encryption warnings"] li').count(), 0);
      await screenshot(w, 'e2ee-tampered-server-flagged');
    } finally {
      if (ghost) ghost.kill('SIGKILL');
      await watcher.close();
    }
  });

  step('a committer that hangs is passed over: the next member commits in its place', async () => {
    const kim = await openBrowser('e2ee-kim');
    try {
      const k = kim.page;
      await joinAndGetAdmitted(k, invite, 'Kim', host.page);
      await k.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
      const [withKim] = await eventually(async () => [await securityCode(host.page), await securityCode(guest.page), await securityCode(k)],
        ([a, b, c]) => a.length > 0 && a === b && b === c, { timeout: 25_000, what: 'Kim in the group, one code for all' });
      // The host, in the meeting longest and so the one named to commit,
      // hangs: its page runs no script for 12 s, as a frozen tab would.
      const frozen = host.page.evaluate(() => { const end = Date.now() + 12_000; while (Date.now() < end); return Date.now(); });
      await k.getByRole('button', { name: 'Leave', exact: true }).click();
      // The server names the guest after 3 s; the guest commits Kim's removal.
      await eventually(() => securityCode(guest.page), (c) => c.length > 0 && c !== withKim,
        { timeout: 10_000, what: 'a new epoch at the guest while the host hangs' });
      const changedAt = Date.now();
      const thawedAt = await frozen;
      assert.ok(changedAt < thawedAt, 'the guest committed while the host still hung');
      // The host catches up from the messages it was sent meanwhile, to the
      // guest's epoch, which may be a later one than the first change: the
      // Ghost killed in the step before leaves the group when its 30 s
      // resume window ends, which can be about now.
      await eventually(async () => [await securityCode(host.page), await securityCode(guest.page)],
        ([a, b]) => a.length > 0 && a === b && a !== withKim, { what: 'the host reaches the guest\'s epoch' });
      assert.deepEqual([...host.errors, ...guest.errors], []);
    } finally {
      await kim.close();
    }
  });

  step('a member whose socket drops while the group changes catches up when it resumes', async () => {
    // The guest's socket drops, and its reconnects are turned away until
    // the test lets them through; meanwhile Kim is admitted: a new epoch.
    const g = guest.page;
    let letThrough = false;
    await g.routeWebSocket(() => true, (ws) => {
      if (!letThrough) {
        ws.close();
        return;
      }
      const real = ws.connectToServer();
      ws.onMessage((m) => real.send(m));
      real.onMessage((m) => ws.send(m));
    });
    const before = await securityCode(g);
    const pcsBefore = await dropSocket(g);
    await g.getByText(/Reconnecting/).first().waitFor();
    const kim = await openBrowser('e2ee-kim-again');
    try {
      const k = kim.page;
      await joinAndGetAdmitted(k, invite, 'Kim', host.page);
      const withKim = await eventually(async () => [await securityCode(host.page), await securityCode(k)],
        ([a, b]) => a.length > 0 && a === b && a !== before, { timeout: 25_000, what: 'Kim in the group' });
      assert.equal(await securityCode(g), before, 'the guest, away, is still in the old epoch');
      // The guest gets back in: the MLS messages it missed come again.
      letThrough = true;
      await eventually(async () => [await securityCode(g), await securityCode(host.page)],
        ([a, b]) => a === b && a !== before, { timeout: 25_000, what: `the guest in the host's epoch (${withKim[0].slice(0, 11)}... with Kim)` });
      // Media comes back on a new peer connection, under the new epoch's keys.
      const newest = () => g.evaluate(async () => {
        let frames = 0;
        (await window.__pcs.at(-1).getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
        return frames;
      });
      await eventually(() => g.evaluate(() => window.__pcs.length), (n) => n > pcsBefore, { what: 'a new peer connection' });
      const first = await eventually(newest, (n) => n > 0, { timeout: 20_000, what: 'the guest decodes video after the resume' });
      await eventually(newest, (n) => n > first + 10, { what: 'the guest keeps decoding' });
      assert.deepEqual([...host.errors, ...guest.errors], []);
    } finally {
      await kim.close();
    }
  });

  step('the wasm module passes RFC 9605\'s test vector and its frame cost is measured in Chromium', async () => {
    const vector = JSON.parse(fs.readFileSync(path.join(ROOT, 'crates/conclave-e2ee/tests/vectors/rfc9605_aes_128_gcm_sha256_128.json'), 'utf8'));
    const result = await host.page.evaluate(async (v) => {
      const m = await import('/e2ee/conclave_e2ee.js');
      await m.default();
      const hex = (s) => new Uint8Array(s.match(/../g).map((b) => Number.parseInt(b, 16)));
      const toHex = (a) => [...a].map((b) => b.toString(16).padStart(2, '0')).join('');
      const ct = toHex(m.sframeEncryptRaw(hex(v.base_key), v.kid, v.ctr, hex(v.metadata), hex(v.pt)));
      // Cost per frame, the worker's path: FrameCrypto.encrypt and decrypt.
      const fc = new m.FrameCrypto();
      fc.setEpoch({ epoch: 1, senderKid: 1, keys: [{ kid: 1, key: new Uint8Array(16).fill(7) }] }, 0);
      const frame = (n, key) => { const f = new Uint8Array(n).fill(0x5a); f[0] = key ? 0x10 : 0x11; return f; };
      const cost = {};
      for (const [name, kind, bytes, key] of [['vp8_key_60k', 'vp8', 60000, true], ['vp8_delta_8k', 'vp8', 8000, false], ['opus_100', 'audio', 100, false]]) {
        const f = frame(bytes, key);
        const iters = bytes > 10000 ? 200 : 2000;
        let sealed;
        let t0 = performance.now();
        for (let i = 0; i < iters; i++) sealed = fc.encrypt(kind, f);
        const enc = (performance.now() - t0) * 1000 / iters;
        // Each frame once: a frame decrypted twice is a replay, and refused.
        const sealedAll = [];
        for (let i = 0; i < iters; i++) sealedAll.push(fc.encrypt(kind, f));
        t0 = performance.now();
        for (let i = 0; i < iters; i++) fc.decrypt(kind, sealedAll[i], 1);
        const dec = (performance.now() - t0) * 1000 / iters;
        cost[name] = { encrypt_us: Math.round(enc * 10) / 10, decrypt_us: Math.round(dec * 10) / 10 };
      }
      return { ct, cost };
    }, vector);
    console.log(`wasm frame cost in Chromium (us per frame): ${JSON.stringify(result.cost)}`);
    assert.equal(result.ct, vector.ct, 'the wasm build gives RFC 9605 Appendix C\'s ciphertext');
    for (const c of Object.values(result.cost)) assert.ok(c.encrypt_us > 0 && c.decrypt_us > 0);
  });

  step('a creator that hangs is passed over: the guest makes the group, the host joins it when it comes back', async () => {
    // A new meeting whose host's client takes in no MLS message from the
    // server's request to create the group on, until the test lets it: the
    // page works, its encryption does not answer. The messages wait, in
    // order, as they would in a hung client's socket.
    const slowHost = await openBrowser('e2ee-slow-host');
    const newGuest = await openBrowser('e2ee-new-guest');
    try {
      const p = slowHost.page;
      const warnings = [];
      p.on('console', (m) => { if (m.type() === 'warning' || m.type() === 'error') warnings.push(m.text()); });
      const held = [];
      let holding = false;
      let released = false;
      let release;
      await p.routeWebSocket(() => true, (ws) => {
        const real = ws.connectToServer();
        ws.onMessage((m) => real.send(m));
        real.onMessage((m) => {
          const { type } = JSON.parse(m);
          if (type === 'mls_create_group' && !released) holding = true;
          if (holding && type.startsWith('mls_')) held.push(m);
          else ws.send(m);
        });
        release = () => {
          released = true;
          holding = false;
          for (const m of held.splice(0)) ws.send(m);
        };
      });
      const newInvite = await hostStartsMeeting(p, server.url, SLOW_HOST, PASSWORD);
      const g = newGuest.page;
      await g.goto(newInvite);
      await g.getByRole('textbox', { name: 'Your name', exact: true }).fill('Noor');
      await g.getByRole('button', { name: 'Join', exact: true }).click();
      await p.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await g.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
      // 3 s after the host was asked, the guest is: it makes the group and
      // adds the host, whose client still holds the request unanswered.
      // The guest first shows the code of its group alone, then, once its
      // Add is in, the code of the group with the host: that one is taken.
      await g.getByRole('list', { name: 'In the meeting' })
        .getByRole('img', { name: 'In the encrypted group', exact: true }).nth(1).waitFor({ timeout: 15_000 });
      const code = await securityCode(g);
      assert.ok(code.length > 0, 'the guest made the group while the host hangs');
      assert.equal(await securityCode(p), '', 'the hung host has no group yet');
      // The server sent the host its Welcome as the Add went in.
      await eventually(() => held.some((m) => JSON.parse(m).type === 'mls_welcome'), (h) => h,
        { timeout: 5_000, what: 'the host\'s Welcome waits for it' });
      assert.equal(await securityCode(p), '', 'the hung host still has no group');
      // The host comes back: it answers the old request (the server drops
      // that quietly) and joins the guest's group by its Welcome; then, as a
      // newcomer, it makes an update commit, so the code moves on from `code`.
      release();
      await eventually(async () => [await securityCode(p), await securityCode(g)],
        ([a, b]) => a.length > 0 && a === b, { what: 'the host in the guest\'s group, one code' });
      for (const [who, b] of [['host', slowHost], ['guest', newGuest]]) {
        await eventually(() => received(b.page), (r) => r.framesDecoded > 10, { timeout: 25_000, what: `${who} decodes the other's encrypted video` });
      }
      const region = p.getByRole('region', { name: 'Security', exact: true });
      await region.getByText('End-to-end encrypted', { exact: true }).waitFor();
      await screenshot(p, 'e2ee-late-creator-joined');
      assert.deepEqual([...slowHost.errors, ...newGuest.errors], []);
      assert.deepEqual(warnings.filter((w) => /encryption|refused/i.test(w)), [], 'no encryption error at the host');
    } finally {
      await slowHost.close();
      await newGuest.close();
    }
  });
});
