// The page side of bench/glass-to-glass: one page holds a sender and a
// receiver, two members of one real Conclave meeting, so that the send time
// and the display time of a frame are read from the same clock
// (performance.now()).
//
// The sender draws a frame number as big black and white blocks on a canvas,
// captures each drawing as one video frame, and sends it through the server's
// SFU. The receiver reads the number back from every frame it presents and
// records display time − send time. A leg runs either with the E2EE transform
// on both ends (the real worker, /assets/e2ee-worker.js, fed with SFrame keys
// of a real MLS group the two members form through the server) or without any
// transform. Nothing else differs between the legs.

import { READ_H, READ_W, drawStamp, readStamp } from './frame-stamp.js';

const W = 640;
const H = 480;

let wasmModule = null;
async function wasm() {
  if (!wasmModule) {
    const mod = await import('/e2ee/conclave_e2ee.js');
    await mod.default();
    wasmModule = mod;
  }
  return wasmModule;
}

function toB64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromB64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i += 1) out[i] = s.charCodeAt(i);
  return out;
}

function deadline(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not done in ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

async function api(path, body) {
  const r = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

/** Prefers VP8, the one video codec the SFU forwards. */
function preferVp8(transceiver) {
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
  const pick = (m) => codecs.filter((c) => c.mimeType.toLowerCase() === m);
  transceiver.setCodecPreferences([...pick('video/vp8'), ...pick('video/rtx')]);
}

/**
 * One member of the meeting: its WebSocket, its end of the MLS group (the
 * wasm `Member`), its peer connection to the SFU and, with E2EE, its own
 * transform worker, as each browser of a real call has.
 */
class Seat {
  constructor(name, meetingId, e2ee) {
    this.name = name;
    this.e2ee = e2ee;
    this.member = null;
    this.you = null;
    this.inGroup = false;
    this.present = new Set(); // the participant ids the server announced: the member commits Adds only for them
    this.epoch = null;
    this.errors = [];
    this.seen = []; // the first server message types, for a failure's diagnosis
    this.worker = e2ee ? new Worker('/assets/e2ee-worker.js', { type: 'module' }) : null;
    this.workerCounts = null;
    this.keyed = null;
    this.worker?.addEventListener('message', (ev) => {
      const m = ev.data;
      if (m?.type === 'counts') this.workerCounts = m;
      if (m?.type === 'keyed') this.keyed = m.epoch;
      if (m?.type === 'error') this.errors.push(`worker: ${m.text}`);
    });
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.onTrack = null;
    this.pc.addEventListener('track', (ev) => {
      // Set in the event, before the receiver hands on its first frame, as the web client does.
      if (this.worker) ev.receiver.transform = new RTCRtpScriptTransform(this.worker, { direction: 'recv', kind: ev.track.kind, mid: ev.transceiver.mid });
      this.onTrack?.(ev.track);
    });
    this.queue = Promise.resolve();
    this.ws = new WebSocket(`ws://${location.host}/api/v1/meetings/${meetingId}/ws`);
    this.ws.addEventListener('open', () => this.send({ type: 'join', name }));
    this.ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(ev.data);
      if (this.seen.length < 40) this.seen.push(msg.type === 'error' ? `error:${msg.code}` : msg.type);
      this.run(() => this.onMessage(msg));
    });
    this.ws.addEventListener('close', (ev) => { this.seen.push(`closed:${ev.code}`); });
  }

  send(msg) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  run(step) {
    this.queue = this.queue.then(step).catch((err) => this.errors.push(String(err?.stack || err)));
  }

  async onMessage(msg) {
    const mls = await wasm();
    switch (msg.type) {
      case 'joined':
        this.you = String(msg.you);
        for (const p of msg.participants || []) this.present.add(String(p.id));
        this.member = new mls.Member(this.you);
        this.send({ type: 'mls_key_package', key_package: toB64(this.member.keyPackage()) });
        break;
      case 'mls_create_group': {
        const info = this.member.createGroup(fromB64(msg.e2ee.group_id), fromB64(msg.e2ee.external_sender));
        this.send({ type: 'mls_group_info', group_info: toB64(info) });
        this.inGroup = true;
        this.epoch = this.member.epoch();
        break;
      }
      case 'participant_joined':
        this.present.add(String(msg.participant.id));
        break;
      case 'participant_left':
        this.present.delete(String(msg.participant));
        break;
      case 'mls_welcome':
        this.member.join(fromB64(msg.welcome), fromB64(msg.ratchet_tree));
        this.inGroup = true;
        this.epoch = this.member.epoch();
        break;
      case 'mls_message': {
        if (!this.inGroup) break;
        this.member.setAnnounced([...this.present]);
        const r = this.member.handle(fromB64(msg.message));
        if (r.kind === 'proposal' && msg.commit_by !== null && msg.commit_by !== undefined && String(msg.commit_by) === this.you) {
          const out = this.member.commit();
          if (out) {
            const m = { type: 'mls_commit', commit: toB64(out.commit) };
            if (out.welcome) m.welcome = toB64(out.welcome);
            this.send(m);
          }
        } else if (r.kind === 'commit') {
          this.epoch = this.member.epoch();
        }
        break;
      }
      case 'media_offer':
        // An offer that crossed ours is dead at the server, which offers again after answering ours.
        if (this.pc.signalingState !== 'stable') break;
        // Whose frames each mid carries: the worker opens a frame only with its sender's key.
        this.worker?.postMessage({ type: 'senders', tracks: msg.tracks || [] });
        await this.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.send({ type: 'media_answer', sdp: this.pc.localDescription.sdp });
        break;
      case 'media_answer':
        if (this.pc.signalingState === 'have-local-offer') await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        break;
      case 'error':
        this.errors.push(`server error ${msg.code}: ${msg.message}`);
        break;
      default:
        break;
    }
  }

  /** Hands this member's epoch keys to its worker and waits until the worker holds them. */
  async keyWorker() {
    const keys = this.member.sframeKeys();
    this.worker.postMessage({ type: 'keys', keys });
    const until = performance.now() + 5000;
    while (this.keyed !== keys.epoch) {
      if (performance.now() > until) throw new Error(`${this.name}: the worker did not take the keys`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Offers one send-only m-line (`track` may be null, so the router has a peer for this member). */
  offer(kind, track, encodings) {
    const init = { direction: 'sendonly' };
    if (encodings) init.sendEncodings = encodings;
    const t = this.pc.addTransceiver(track || kind, init);
    if (this.worker) t.sender.transform = new RTCRtpScriptTransform(this.worker, { direction: 'send', kind });
    if (kind === 'video') preferVp8(t);
    this.run(async () => {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.send({ type: 'media_offer', sdp: this.pc.localDescription.sdp, tracks: [{ mid: t.mid, kind }] });
    });
    return t;
  }

  close() {
    this.send({ type: 'leave' });
    this.pc.close();
    this.worker?.terminate();
    this.member?.free?.();
    setTimeout(() => this.ws.close(), 500);
  }
}

async function stats(pc, type) {
  const out = [];
  (await pc.getStats()).forEach((s) => { if (s.type === type && s.kind === 'video') out.push(s); });
  return out[0] || null;
}

/**
 * One leg: a fresh meeting, two members, `seconds` of video from one to the
 * other; frames of the first `warmupSeconds` are not counted. Returns the
 * latencies (ms) of every frame read back, and what WebRTC and the worker said.
 */
async function leg({ e2ee, seconds, warmupSeconds, fps }) {
  const meeting = await api('/api/v1/meetings', { title: `glass-to-glass ${e2ee ? 'e2ee' : 'plain'}` });
  // Both connections carry the owner's session: the owner's first seat is the
  // host, the second a co-host, neither waits. Joined one after the other, so
  // the first makes the group and the second is added to it.
  const sender = new Seat('Sender', meeting.id, e2ee);
  await deadline((async () => { while (!sender.inGroup) await new Promise((r) => setTimeout(r, 20)); })(), 10_000, 'the sender makes the group')
    .catch((err) => { sender.close(); throw new Error(`${err.message} (heard ${sender.seen}; ${sender.errors})`); });
  const receiver = new Seat('Receiver', meeting.id, e2ee);
  const seats = [sender, receiver];
  try {
    await deadline((async () => {
      for (;;) {
        const errs = seats.flatMap((s) => s.errors);
        if (errs.length) throw new Error(errs.join('; '));
        if (seats.every((s) => s.inGroup && s.member.roster().length === 2) && sender.epoch === receiver.epoch) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    })(), 15_000, 'both members in one MLS epoch')
      .catch((err) => { throw new Error(`${err.message} (heard ${seats.map((x) => `${x.name}: ${x.seen}; ${x.errors}`).join(' / ')})`); });
    if (e2ee) await Promise.all(seats.map((s) => s.keyWorker()));

    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    document.body.append(canvas);
    const ctx = canvas.getContext('2d');
    drawStamp(ctx, W, H, 0);
    const stream = canvas.captureStream(0);
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'motion';

    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    video.autoplay = true;
    video.width = W;
    video.height = H;
    document.body.append(video);
    const readCanvas = document.createElement('canvas');
    readCanvas.width = READ_W;
    readCanvas.height = READ_H;
    const readCtx = readCanvas.getContext('2d', { willReadFrequently: true });

    const sentAt = new Map(); // frame number -> performance.now() when drawn and captured
    const samples = []; // [display − send, receive − send] in ms, after the warm-up
    let unreadable = 0;
    let presented = 0;
    let counting = false;
    let stopped = false;
    const seen = new Set();
    receiver.onTrack = (t) => {
      if (t.kind !== 'video') return;
      video.srcObject = new MediaStream([t]);
      video.play().catch(() => {});
      const onFrame = (now, meta) => {
        if (stopped) return;
        presented += 1;
        readCtx.drawImage(video, 0, 0, READ_W, READ_H);
        const n = readStamp(readCtx.getImageData(0, 0, READ_W, READ_H).data);
        if (n === null) {
          if (counting) unreadable += 1;
        } else if (!seen.has(n) && sentAt.has(n)) {
          seen.add(n);
          const sent = sentAt.get(n);
          if (counting) {
            samples.push([meta.expectedDisplayTime - sent, (meta.receiveTime ?? NaN) - sent]);
          }
        }
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    };

    receiver.offer('audio', null);
    sender.send({ type: 'set_media', video: true });
    const sending = sender.offer('video', track, [{ maxBitrate: 1_000_000 }]);
    // The same picture size in every leg: without this, Chromium's CPU
    // adaptation scales a busy machine's video down in some legs and not others.
    const params = sending.sender.getParameters();
    params.degradationPreference = 'maintain-framerate-and-resolution';
    await sending.sender.setParameters(params).catch((err) => {
      throw new Error(`cannot fix the resolution (${err.message})`);
    });

    let n = 0;
    const timer = setInterval(() => {
      n = (n + 1) & 0xffff;
      drawStamp(ctx, W, H, n);
      track.requestFrame();
      sentAt.set(n, performance.now());
    }, 1000 / fps);
    await new Promise((r) => setTimeout(r, warmupSeconds * 1000));
    counting = true;
    const before = { sent: await stats(sender.pc, 'outbound-rtp'), recv: await stats(receiver.pc, 'inbound-rtp') };
    await new Promise((r) => setTimeout(r, seconds * 1000));
    counting = false;
    const after = { sent: await stats(sender.pc, 'outbound-rtp'), recv: await stats(receiver.pc, 'inbound-rtp') };
    stopped = true;
    clearInterval(timer);
    // The worker reports its counts once a second.
    if (e2ee) await new Promise((r) => setTimeout(r, 1100));
    const d = (k, side) => (after[side]?.[k] ?? 0) - (before[side]?.[k] ?? 0);
    const result = {
      e2ee,
      samples,
      unreadable,
      presented,
      drawn: n,
      errors: seats.flatMap((s) => s.errors),
      encoded: d('framesEncoded', 'sent'),
      bytesPerFrame: d('framesEncoded', 'sent') ? d('bytesSent', 'sent') / d('framesEncoded', 'sent') : null,
      encodeMsPerFrame: d('framesEncoded', 'sent') ? (d('totalEncodeTime', 'sent') * 1000) / d('framesEncoded', 'sent') : null,
      decoded: d('framesDecoded', 'recv'),
      dropped: d('framesDropped', 'recv'),
      jitterBufferMs: d('jitterBufferEmittedCount', 'recv') ? (d('jitterBufferDelay', 'recv') * 1000) / d('jitterBufferEmittedCount', 'recv') : null,
      size: after.recv ? `${after.recv.frameWidth}x${after.recv.frameHeight}` : null,
      worker: e2ee ? { sender: sender.workerCounts, receiver: receiver.workerCounts } : null,
    };
    canvas.remove();
    video.remove();
    track.stop();
    return result;
  } finally {
    for (const s of seats) s.close();
  }
}

window.bench = {
  async signIn(username, password) {
    await api('/api/v1/auth/signin', { username, password });
    await wasm();
  },
  leg,
};
