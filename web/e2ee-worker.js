// The media transform worker: every encoded frame this browser sends is
// SFrame-encrypted here and every frame it receives is decrypted here, with
// the keys of the current MLS epoch that the page hands over (`keys`
// messages). One worker serves all of a call's senders and receivers, so one
// FrameCrypto (and its one frame counter) encrypts everything this member
// sends under a key: a counter is never used twice.
//
// Nothing leaves in clear: before the first epoch's keys arrive, and for a
// video codec other than VP8, outgoing frames are dropped. Incoming frames
// that do not decrypt (unknown key, tampered, plaintext, a replay, or a KID
// that is not the participant's whose track carries it: `senders` messages
// say who sends on each mid) are dropped too.
// Both are counted and reported to the page once a second.
//
// Redundant audio (RED, RFC 2198): the transform sees the whole RED payload
// on both sides (Chromium wraps Opus before the send transform and unwraps
// after the receive one). Each block is encrypted on its own and the RED
// headers stay clear, so the server can pass the primary block alone to a
// member without RED; a redundant copy gets a fresh counter, so it is never
// taken for a replay of the frame it repeats.

import init, { FrameCrypto } from '/e2ee/conclave_e2ee.js';
import { buildRed, parseRed } from '/assets/red.js';

const ready = init().then(() => { crypto = new FrameCrypto(); });
let crypto = null;
let keyed = false;
let epoch = null;
const counts = { sent: 0, received: 0, unsentNoKey: 0, unsentCodec: 0, undecryptable: 0, lastError: '' };
let changed = false;
/** mid -> participant id (string): whose frames a receiver's track may carry. */
const senderByMid = new Map();

self.addEventListener('message', (ev) => {
  const m = ev.data;
  if (m && m.type === 'senders' && Array.isArray(m.tracks)) {
    senderByMid.clear();
    for (const t of m.tracks) {
      if (t && typeof t.mid === 'string') senderByMid.set(t.mid, String(t.participant));
    }
    return;
  }
  if (!m || m.type !== 'keys') return;
  ready.then(() => {
    try {
      // A new epoch's key is used for sending at once only when the page says so (the
      // first epoch, or a removal); otherwise after a second, once the others hold it.
      crypto.setEpoch(m.keys, Date.now(), m.atOnce !== false);
      keyed = true;
      epoch = m.keys.epoch;
      self.postMessage({ type: 'keyed', epoch });
    } catch (err) {
      self.postMessage({ type: 'error', text: String(err?.message || err) });
    }
  });
});

setInterval(() => {
  if (!changed) return;
  changed = false;
  self.postMessage({ type: 'counts', epoch, ...counts });
}, 1000);

/** The SFrame profile of a frame: Opus is encrypted whole, VP8 keeps its payload header clear. */
function frameKind(kind, frame) {
  if (kind === 'audio') return 'audio';
  const mime = frame.getMetadata?.().mimeType;
  if (mime && mime.toLowerCase() !== 'video/vp8') return null;
  return 'vp8';
}

/** Whether an audio frame is a RED payload rather than one Opus frame. */
function isRed(frame) {
  return frame.getMetadata?.().mimeType?.toLowerCase() === 'audio/red';
}

/** `transform` applied to each block of a RED payload; null if it is malformed or its primary fails. */
function perBlock(bytes, transform) {
  const blocks = parseRed(bytes);
  if (!blocks) return null;
  const out = [];
  for (const [n, b] of blocks.entries()) {
    const primary = n === blocks.length - 1;
    try {
      out.push({ ...b, data: transform(b.data) });
    } catch (err) {
      if (primary) throw err;
      // A redundant copy that does not decrypt is left out; the primary still plays.
    }
  }
  return buildRed(out);
}

/** The ArrayBuffer of exactly `bytes` (wasm may hand back a view into a larger one). */
function ownBuffer(bytes) {
  return bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer : bytes.slice().buffer;
}

function encryptStream(kind) {
  return new TransformStream({
    transform(frame, controller) {
      changed = true;
      if (!keyed) {
        counts.unsentNoKey += 1;
        return;
      }
      const k = frameKind(kind, frame);
      if (!k) {
        counts.unsentCodec += 1;
        return;
      }
      try {
        const bytes = new Uint8Array(frame.data);
        const now = Date.now();
        const out = k === 'audio' && isRed(frame)
          ? perBlock(bytes, (b) => crypto.encrypt(k, b, now))
          : crypto.encrypt(k, bytes, now);
        if (!out) {
          counts.unsentCodec += 1;
          return;
        }
        frame.data = ownBuffer(out);
        counts.sent += 1;
        controller.enqueue(frame);
      } catch (err) {
        counts.unsentNoKey += 1;
        counts.lastError = String(err?.message || err);
      }
    },
  });
}

function decryptStream(kind, mid) {
  return new TransformStream({
    transform(frame, controller) {
      changed = true;
      const sender = senderByMid.get(mid);
      if (!keyed || sender === undefined) {
        counts.undecryptable += 1;
        return;
      }
      const k = frameKind(kind, frame) || 'vp8';
      try {
        const bytes = new Uint8Array(frame.data);
        const open = (b) => crypto.decryptFrom(k, b, sender, Date.now());
        const out = k === 'audio' && isRed(frame) ? perBlock(bytes, open) : open(bytes);
        if (!out) throw new Error('malformed RED payload');
        frame.data = ownBuffer(out);
        counts.received += 1;
        controller.enqueue(frame);
      } catch (err) {
        counts.undecryptable += 1;
        counts.lastError = String(err?.message || err);
      }
    },
  });
}

self.addEventListener('rtctransform', (ev) => {
  const t = ev.transformer;
  const { direction, kind, mid } = t.options || {};
  const stream = direction === 'send' ? encryptStream(kind) : decryptStream(kind, String(mid));
  // The wasm module must be ready before the first frame is looked at.
  ready.then(() => t.readable.pipeThrough(stream).pipeTo(t.writable)).catch((err) => {
    self.postMessage({ type: 'error', text: String(err?.message || err) });
  });
});
