// Background blur, off the page's thread: reads the camera's frames, finds the
// person in them with MediaPipe's selfie segmentation model (a TensorFlow.js
// graph model run by TensorFlow.js's WebAssembly backend), and writes frames
// with the person sharp over a blurred background. Everything it loads comes
// from this server (/blur/, vendored from npm: vendor/blur/README.md); nothing
// leaves the browser.
//
// A classic worker: the vendored TensorFlow.js files are UMD bundles that set
// a global `tf`, which importScripts gives them.
/* global tf */

importScripts('/blur/tf-core.es2017.min.js', '/blur/tf-converter.es2017.min.js', '/blur/tf-backend-wasm.es2017.min.js');

/** The model's input and output: 256×256, RGB in [0, 1] in, person probability out. */
const SEG = 256;

/**
 * Least time between two segmentations, in ms: between them the last mask is
 * reused, so a slow machine keeps the frame rate and the mask lags a little.
 * Raised to four times what a segmentation takes (a moving average: one slow
 * one, the thread kept waiting by a busy machine, must not freeze the mask),
 * so it uses about a quarter of the time at most, up to SEGMENT_LATEST_MS.
 */
const SEGMENT_EVERY_MS = 100;

/** The most the mask may lag, in ms, however slow segmentation is. */
const SEGMENT_LATEST_MS = 500;

/** The background is drawn at 1/SHRINK of the frame's width and height and stretched back: a wide blur for little work. */
const SHRINK = 16;

/** How often the timings are posted to the page, in ms. */
const STATS_EVERY_MS = 2000;

let model = null;
let stopped = false;

/** Loads the backend and the model once; resolves to null (and says why) if they cannot be had. */
async function loadModel() {
  tf.wasm.setWasmPaths({
    'tfjs-backend-wasm.wasm': '/blur/tfjs-backend-wasm.wasm',
    'tfjs-backend-wasm-simd.wasm': '/blur/tfjs-backend-wasm-simd.wasm',
    // Threads need a cross-origin isolated page, which this one is not: never fetched.
    'tfjs-backend-wasm-threaded-simd.wasm': '/blur/tfjs-backend-wasm-simd.wasm',
  });
  if (!(await tf.setBackend('wasm'))) throw new Error('the WebAssembly backend did not start');
  await tf.ready();
  return tf.loadGraphModel('/blur/selfie.json');
}

/** The canvases of one frame size, made again when the camera's size changes. */
function canvases(width, height) {
  const out = new OffscreenCanvas(width, height);
  const mid = new OffscreenCanvas(Math.max(1, Math.round(width / 4)), Math.max(1, Math.round(height / 4)));
  const small = new OffscreenCanvas(Math.max(1, Math.round(width / SHRINK)), Math.max(1, Math.round(height / SHRINK)));
  const seg = new OffscreenCanvas(SEG, SEG);
  const mask = new OffscreenCanvas(SEG, SEG);
  const c = {
    width,
    height,
    out,
    outCtx: out.getContext('2d', { alpha: false }),
    mid,
    midCtx: mid.getContext('2d'),
    small,
    smallCtx: small.getContext('2d'),
    seg,
    segCtx: seg.getContext('2d', { willReadFrequently: true }),
    mask,
    maskCtx: mask.getContext('2d'),
    maskImage: new ImageData(SEG, SEG),
    input: new Float32Array(SEG * SEG * 3),
    haveMask: false,
  };
  for (const ctx of [c.outCtx, c.midCtx, c.smallCtx]) {
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
  }
  return c;
}

/** Runs the model on `frame` and keeps its answer as the alpha of `c.mask` (opaque where the person is). */
function segment(c, frame) {
  c.segCtx.drawImage(frame, 0, 0, SEG, SEG);
  const px = c.segCtx.getImageData(0, 0, SEG, SEG).data;
  const input = c.input;
  for (let i = 0, j = 0; i < px.length; i += 4, j += 3) {
    input[j] = px[i] / 255;
    input[j + 1] = px[i + 1] / 255;
    input[j + 2] = px[i + 2] / 255;
  }
  const x = tf.tensor4d(input, [1, SEG, SEG, 3]);
  const y = model.execute(x);
  const p = y.dataSync();
  x.dispose();
  y.dispose();
  // The model's probabilities fade over a few pixels at the person's edge,
  // which left a rim of sharp background; stretching 0.25–0.75 to 0–1
  // narrows the fade and keeps it smooth.
  const m = c.maskImage.data;
  for (let i = 0; i < p.length; i += 1) {
    const k = i * 4;
    m[k] = 255;
    m[k + 1] = 255;
    m[k + 2] = 255;
    m[k + 3] = Math.min(1, Math.max(0, (p[i] - 0.25) * 2)) * 255;
  }
  c.maskCtx.putImageData(c.maskImage, 0, 0);
  c.haveMask = true;
}

/**
 * The frame, with its background blurred over it. The frame is converted
 * from the camera's YUV once, at full size; the blurred background is made
 * and cut at a quarter of the size (the mask is 256×256 anyway) and drawn
 * over it. Until the first mask (the model still loading) the whole frame
 * is blurred: what the person asked to hide is never sent in the meantime.
 */
function composite(c, frame) {
  const { width: w, height: h, mid, small, midCtx, outCtx } = c;
  outCtx.drawImage(frame, 0, 0, w, h);
  midCtx.globalCompositeOperation = 'copy';
  midCtx.drawImage(c.out, 0, 0, mid.width, mid.height);
  c.smallCtx.drawImage(mid, 0, 0, small.width, small.height);
  midCtx.drawImage(small, 0, 0, mid.width, mid.height);
  if (c.haveMask) {
    midCtx.globalCompositeOperation = 'destination-out';
    midCtx.drawImage(c.mask, 0, 0, mid.width, mid.height);
  }
  outCtx.drawImage(mid, 0, 0, w, h);
}

async function run(readable, writable) {
  const reader = readable.getReader();
  const writer = writable.getWriter();
  let c = null;
  let lastSegment = -Infinity;
  let every = SEGMENT_EVERY_MS;
  let cost = null; // ms a segmentation takes, averaged
  const totals = { frames: 0, segments: 0, segmentMs: 0, compositeMs: 0 };
  let posted = performance.now();
  loadModel().then((m) => {
    model = m;
    postMessage({ type: 'ready' });
  }, (err) => postMessage({ type: 'error', message: `The background blur could not start: ${err?.message || err}` }));
  while (!stopped) {
    const { value: frame, done } = await reader.read();
    if (done) break;
    const w = frame.displayWidth;
    const h = frame.displayHeight;
    if (!c || c.width !== w || c.height !== h) c = canvases(w, h);
    const start = performance.now();
    if (model && start - lastSegment >= every) {
      segment(c, frame);
      const took = performance.now() - start;
      lastSegment = start;
      cost = cost === null ? took : 0.8 * cost + 0.2 * took;
      every = Math.min(SEGMENT_LATEST_MS, Math.max(SEGMENT_EVERY_MS, 4 * cost));
      totals.segments += 1;
      totals.segmentMs += took;
    }
    const mid = performance.now();
    composite(c, frame);
    const out = new VideoFrame(c.out, { timestamp: frame.timestamp, duration: frame.duration ?? undefined });
    totals.compositeMs += performance.now() - mid;
    totals.frames += 1;
    frame.close();
    try {
      await writer.write(out);
    } catch {
      out.close();
      break; // the track that was sent is gone
    }
    if (performance.now() - posted >= STATS_EVERY_MS) {
      posted = performance.now();
      postMessage({ type: 'stats', ...totals, segmentEveryMs: every });
    }
  }
  postMessage({ type: 'stats', ...totals, segmentEveryMs: every });
  reader.cancel().catch(() => {});
  writer.close().catch(() => {});
}

onmessage = (ev) => {
  const msg = ev.data || {};
  if (msg.type === 'start') {
    run(msg.readable, msg.writable).catch((err) => postMessage({ type: 'error', message: `The background blur stopped: ${err?.message || err}` }));
  } else if (msg.type === 'stop') {
    stopped = true;
  }
};
