// The page side of bench/network's --glass-to-glass (served to the page by
// the bench with page.route; the bench's init script hands getUserMedia here).
//
// The camera becomes a canvas that stamps each frame with the time it is
// drawn (frame-stamp.js, the blocks bench/glass-to-glass reads), and every
// <video> the page shows a received track in is read back as it presents
// frames: latency = the frame's expectedDisplayTime − the stamp. Sender and
// receiver are different browsers here, so both times are wall-clock
// (performance.timeOrigin + performance.now()): every browser of the bench
// runs on one machine and reads one system clock. The stamp holds the low 16
// bits of the millisecond, so latencies are taken modulo 65.5 s. It works
// whatever the page (the web client, the direct call's, the Janus one): it
// needs only getUserMedia and <video> elements.

import { READ_H, READ_W, drawStamp, readStamp } from './frame-stamp.js';

/** The frame rate of Chromium's fake camera, which this one stands in for. */
const FPS = 20;
/**
 * Rectangles drawn in the picture's lower band each frame: few, so that the
 * layers' bitrate caps hold 20 frames/s as with the fake camera (with
 * glass-to-glass's 120, the encoders dropped to 12–16 frames/s on a clean link).
 */
const NOISE = 12;

const wallClock = () => performance.timeOrigin + performance.now();

/** [display − send, receive − send] in ms per frame read back, since the last take(). */
let samples = [];
let unreadable = 0;
/** Frames shown before their stamp: misread, or clocks apart. Should stay 0. */
let early = 0;

/** A `width`×`height` canvas camera (the size asked for, as the fake camera would give it) at FPS. */
function cameraTrack(asked) {
  const size = (c, fallback) => (typeof c === 'number' ? c : c?.exact ?? c?.ideal ?? c?.max ?? fallback);
  const w = size(asked?.width, 640);
  const h = size(asked?.height, 480);
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  drawStamp(ctx, w, h, Math.round(wallClock()), NOISE);
  const track = canvas.captureStream(0).getVideoTracks()[0];
  track.contentHint = 'motion';
  const timer = setInterval(() => {
    if (track.readyState === 'ended') {
      clearInterval(timer);
      return;
    }
    drawStamp(ctx, w, h, Math.round(wallClock()), NOISE);
    track.requestFrame();
  }, 1000 / FPS);
  return track;
}

/** Whether `track` came from a peer connection (not the page's own camera in its self view). */
function received(track) {
  try {
    return (window.__pcs || []).some((pc) => pc.getReceivers().some((r) => r.track === track));
  } catch {
    return false;
  }
}

let watching = false;
/** Reads back every frame each <video> of the page presents from a received track. */
function watchVideos() {
  if (watching) return;
  watching = true;
  const readCanvas = document.createElement('canvas');
  readCanvas.width = READ_W;
  readCanvas.height = READ_H;
  const readCtx = readCanvas.getContext('2d', { willReadFrequently: true });
  const watched = new WeakSet();
  const watch = (video) => {
    let last = null;
    const onFrame = (_, meta) => {
      const track = video.srcObject?.getVideoTracks?.()[0];
      if (track && received(track)) {
        readCtx.drawImage(video, 0, 0, READ_W, READ_H);
        const n = readStamp(readCtx.getImageData(0, 0, READ_W, READ_H).data);
        if (n === null) {
          unreadable += 1;
        } else if (n !== last) {
          last = n;
          const since = (t) => (Math.round(performance.timeOrigin + t) - n) & 0xffff;
          const display = since(meta.expectedDisplayTime);
          if (display > 0x8000) early += 1;
          else samples.push([display, meta.receiveTime ? since(meta.receiveTime) : null]);
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  // Pages add and reuse video elements as members come and go: look for new ones.
  setInterval(() => {
    for (const v of document.querySelectorAll('video')) {
      if (!watched.has(v)) {
        watched.add(v);
        watch(v);
      }
    }
  }, 250);
}

/** getUserMedia with the stamped camera for video (`original` is the browser's, for audio). */
export async function getUserMedia(original, constraints) {
  watchVideos();
  if (!constraints?.video) return original(constraints);
  const stream = constraints.audio ? await original({ audio: constraints.audio }) : new MediaStream();
  stream.addTrack(cameraTrack(constraints.video === true ? {} : constraints.video));
  return stream;
}

window.__glassToGlass = {
  /** The frames read back since the last call, and forgets them. */
  take() {
    const out = { samples, unreadable, early };
    samples = [];
    unreadable = 0;
    early = 0;
    return out;
  },
};
