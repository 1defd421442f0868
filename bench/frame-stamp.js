// A number stamped on a video frame as big black and white blocks, and read
// back from the frame at the far end: what bench/glass-to-glass-page.js and
// bench/network-page.js measure glass-to-glass latency with. Runs in the page
// (an ES module the benches serve to it with page.route).
//
// The number is 16 bits, then its complement: 32 blocks, 8 across and 4 down,
// in the top two thirds of the picture (80×80 px at 640×480). The reader
// checks the complement, so a frame caught between two pictures, or a layer
// too blurred to tell black from white, reads as null, never as a wrong
// number. The bottom third changes every frame, so the encoder has a
// camera-like amount of work.

const COLS = 8;
const ROWS = 4;
/** The blocks take the top two thirds of the picture; the noise band the rest. */
const STAMP_SHARE = 2 / 3;
/** The reader looks at a copy this small (each block is 8×8 px there, whatever the picture's size). */
export const READ_W = 64;
export const READ_H = 48;

/**
 * Draws `n` (its low 16 bits) on a `w`×`h` canvas context, and `noise`
 * random rectangles in the lower band (120 make ≈5 KB VP8 frames at 640×480).
 */
export function drawStamp(ctx, w, h, n, noise = 120) {
  const bits = (n & 0xffff) | ((~n & 0xffff) << 16);
  const bw = w / COLS;
  const bh = (h * STAMP_SHARE) / ROWS;
  for (let i = 0; i < COLS * ROWS; i += 1) {
    ctx.fillStyle = (bits >>> i) & 1 ? '#fff' : '#000';
    ctx.fillRect((i % COLS) * bw, Math.floor(i / COLS) * bh, bw, bh);
  }
  const top = h * STAMP_SHARE;
  const scale = w / 640;
  for (let i = 0; i < noise; i += 1) {
    const v = Math.floor(Math.random() * 256);
    ctx.fillStyle = `rgb(${v},${(v * 7) & 255},${(v * 13) & 255})`;
    ctx.fillRect(Math.random() * w, top + Math.random() * (h - top), (8 + Math.random() * 40) * scale, (8 + Math.random() * 40) * scale);
  }
}

/** The number shown in `data` (the RGBA pixels of a READ_W×READ_H copy of a frame), or null when the two halves disagree. */
export function readStamp(data) {
  const cellH = (READ_H * STAMP_SHARE) / ROWS;
  const cellW = READ_W / COLS;
  let bits = 0;
  for (let i = 0; i < COLS * ROWS; i += 1) {
    const x = Math.floor(((i % COLS) + 0.5) * cellW);
    const y = Math.floor((Math.floor(i / COLS) + 0.5) * cellH);
    const o = (y * READ_W + x) * 4;
    const luma = (data[o] + data[o + 1] + data[o + 2]) / 3;
    if (luma > 128) bits |= 1 << i;
  }
  const n = bits & 0xffff;
  const check = (bits >>> 16) & 0xffff;
  return (n ^ check) === 0xffff ? n : null;
}
