// Background blur: the "Blur background" button, and the pipeline that turns
// the camera's track into a blurred one (blur-worker.js does the work). The
// blurred track is what the camera sender sends, so it goes through the same
// E2EE frame transform as the camera would; the choice is remembered with the
// devices (media.js).

import { h, setAttr } from './dom.js';
import { icon } from './icons.js';
import { chooseDevices, chosenDevices } from './media.js';
import { sameSizeAs } from './peer.js';

/** Whether this browser can take frames off a track and make a track of frames (Chromium can). */
export function canBlur() {
  return typeof MediaStreamTrackProcessor === 'function' && typeof MediaStreamTrackGenerator === 'function'
    && typeof OffscreenCanvas === 'function' && typeof Worker === 'function';
}

/** Whether the person asked for the background to be blurred. */
export function blurWanted() {
  return canBlur() && chosenDevices().blur;
}

/** The last timings a pipeline's worker posted ({frames, segments, segmentMs, compositeMs, segmentEveryMs}), for the benchmark. */
let lastStats = null;
export function blurStats() {
  return lastStats;
}

/**
 * Starts blurring `camera` (a video MediaStreamTrack). Returns {track, stop()}:
 * `track` is the blurred one to send and show; `stop` ends the worker and
 * that track, never the camera. onError(text) is told if the blur fails.
 */
export function startBlur(camera, onError) {
  const processor = new MediaStreamTrackProcessor({ track: camera });
  const generator = new MediaStreamTrackGenerator({ kind: 'video' });
  generator.enabled = camera.enabled;
  // The worker makes each frame at its camera frame's size.
  sameSizeAs(generator, camera);
  const worker = new Worker('/assets/blur-worker.js', { name: 'blur' });
  worker.onmessage = (ev) => {
    const msg = ev.data || {};
    if (msg.type === 'stats') lastStats = { ...msg };
    else if (msg.type === 'error') onError?.(msg.message);
  };
  worker.onerror = (ev) => onError?.(`The background blur stopped: ${ev.message || 'the worker failed'}`);
  worker.postMessage({ type: 'start', readable: processor.readable, writable: generator.writable },
    [processor.readable, generator.writable]);
  return {
    track: generator,
    stop() {
      worker.terminate();
      generator.stop();
    },
  };
}

/**
 * The toolbar's "Blur background" toggle (aria-pressed). Works before the
 * camera is on too: the choice is used when it starts. Hidden where the
 * browser cannot blur.
 */
export function createBlurButton(call) {
  const label = h('span', { class: 'ctl-label', text: 'Blur background' });
  const el = h('button', { type: 'button', class: 'ctl ctl-blur', hidden: !canBlur() },
    h('span', { class: 'ctl-icon' }, icon('blur')), label);
  el.addEventListener('click', () => {
    const on = !blurWanted();
    chooseDevices({ blur: on });
    call.streams?.setBlur(on);
    update();
  });
  function update() {
    const on = blurWanted();
    setAttr(el, 'aria-pressed', String(on));
    el.classList.toggle('is-active', on);
  }
  update();
  return { el, update };
}
