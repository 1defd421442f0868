// A camera with a person in it, for Chromium's fake capture device
// (--use-file-for-fake-video-capture): its own fake camera shows none.
// Used by e2e/blur.test.js and bench/blur.mjs.

import fs from 'node:fs';

/**
 * Writes a camera: a Y4M file (raw 4:2:0 frames, which Chromium's
 * fake capture device loops) of a drawn person, shoulders in a striped shirt,
 * swaying sideways before a wall of grey noise in 4-pixel blocks (the same in
 * every frame). W×H (640×360 unless given), 30 frames at 15 a second.
 */
export function personVideo(file, W = 640, H = 360, frames = 30) {
  const hex = (s) => [1, 3, 5].map((i) => parseInt(s.slice(i, i + 2), 16) / 255);
  const C = {
    shirtA: hex('#2050a0'), shirtB: hex('#e8e8f0'),
    skin: hex('#e0ac8a'), hair: hex('#3a2a1a'), eye: hex('#222222'), mouth: hex('#aa3333'),
  };
  const inEllipse = (x, y, cx, cy, rx, ry) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1;
  /** A fixed pseudo-random grey for each 4×4 block. */
  const wall = (x, y) => {
    const n = Math.sin((Math.floor(x / 4) * 1000 + Math.floor(y / 4)) * 12.9898) * 43758.5453;
    const v = (60 + 140 * (n - Math.floor(n))) / 255;
    return [v, v, v * 0.9];
  };
  const out = fs.openSync(file, 'w');
  fs.writeSync(out, `YUV4MPEG2 W${W} H${H} F15:1 Ip A1:1 C420jpeg\n`);
  const rgb = new Float32Array(W * H * 3);
  for (let f = 0; f < frames; f += 1) {
    const cx = W * (0.5 + 0.03 * Math.sin((2 * Math.PI * f) / frames));
    for (let y = 0; y < H; y += 1) {
      for (let x = 0; x < W; x += 1) {
        let c = wall(x, y);
        if (inEllipse(x, y, cx, H * 1.02, W * 0.3, H * 0.4)) c = Math.floor(y / 8) % 2 ? C.shirtA : C.shirtB;
        else if (Math.abs(x - cx) < W * 0.04 && y > H * 0.5 && y < H * 0.7) c = C.skin;
        if (inEllipse(x, y, cx, H * 0.4, H * 0.2, H * 0.25)) {
          c = C.skin;
          if (y < H * 0.3 && inEllipse(x, y, cx, H * 0.3, H * 0.205, H * 0.14)) c = C.hair;
          if (inEllipse(x, y, cx - H * 0.07, H * 0.38, H * 0.02, H * 0.02) || inEllipse(x, y, cx + H * 0.07, H * 0.38, H * 0.02, H * 0.02)) c = C.eye;
          if (Math.abs(x - cx) < H * 0.06 && Math.abs(y - H * 0.5) < H * 0.01) c = C.mouth;
        }
        rgb.set(c, (y * W + x) * 3);
      }
    }
    // BT.601 studio range; chroma from each 2×2 block's top-left pixel.
    const Y = Buffer.alloc(W * H);
    const U = Buffer.alloc((W / 2) * (H / 2));
    const V = Buffer.alloc((W / 2) * (H / 2));
    for (let p = 0; p < W * H; p += 1) Y[p] = Math.round(16 + 65.481 * rgb[p * 3] + 128.553 * rgb[p * 3 + 1] + 24.966 * rgb[p * 3 + 2]);
    for (let y = 0; y < H / 2; y += 1) {
      for (let x = 0; x < W / 2; x += 1) {
        const i = (2 * y * W + 2 * x) * 3;
        const [r, g, b] = [rgb[i], rgb[i + 1], rgb[i + 2]];
        U[y * (W / 2) + x] = Math.round(128 - 37.797 * r - 74.203 * g + 112 * b);
        V[y * (W / 2) + x] = Math.round(128 + 112 * r - 93.786 * g - 18.214 * b);
      }
    }
    fs.writeSync(out, 'FRAME\n');
    for (const plane of [Y, U, V]) fs.writeSync(out, plane);
  }
  fs.closeSync(out);
}
