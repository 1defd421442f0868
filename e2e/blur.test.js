// Background blur (issue 18), as a person sees it: the host turns on "Blur
// background", and Bob's decoded video of the host loses its fine detail
// while it keeps playing; turned off, the detail comes back. The blur runs in
// the host's page (a worker with the selfie segmentation model, all of it
// served by the server: no request leaves it), and what is sent is the
// blurred track, through the same E2EE frame transform as the camera.
//
// Chromium's fake camera shows no person, so the model finds only
// background and the whole picture is blurred; the test measures that, and
// that the model did run (the worker counts its segmentations).
//
// Sharpness: the decoded video drawn to a 320×180 canvas, in grey, and the
// mean squared difference between neighbouring pixels (across and down): the
// energy of its fine detail, high for the fake camera's edges and digits.
// A blur spreads each edge over many pixels, which keeps the sum of the
// differences but divides the sum of their squares by about its width.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { eventually, gained, hostStartsMeeting, openBrowser, received, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';

/** Bob's view of the host's video: {sharpness, width, height, sum} of one frame, or null before one. */
function sharpnessOf(label) {
  const video = [...document.querySelectorAll('video.tile-video')].find((v) => v.getAttribute('aria-label') === label && !v.hidden);
  if (!video || video.videoWidth === 0) return null;
  const W = 320;
  const H = 180;
  const canvas = new OffscreenCanvas(W, H);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, W, H);
  const px = ctx.getImageData(0, 0, W, H).data;
  const grey = new Float32Array(W * H);
  let sum = 0;
  for (let i = 0; i < W * H; i += 1) {
    grey[i] = 0.299 * px[i * 4] + 0.587 * px[i * 4 + 1] + 0.114 * px[i * 4 + 2];
    sum += grey[i];
  }
  let edges = 0;
  for (let y = 0; y < H - 1; y += 1) {
    for (let x = 0; x < W - 1; x += 1) {
      const g = grey[y * W + x];
      const across = g - grey[y * W + x + 1];
      const down = g - grey[(y + 1) * W + x];
      edges += across * across + down * down;
    }
  }
  return { sharpness: edges / ((W - 1) * (H - 1)), width: video.videoWidth, height: video.videoHeight, sum: Math.round(sum) };
}

describe('background blur', () => {
  let server;
  let invite;
  const b = {};
  const all = () => Object.entries(b);
  const step = storySteps('blur-', all);
  const requests = []; // every URL the host's page (and its workers) asked for

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    b.host = await openBrowser('blur-host');
    b.bob = await openBrowser('blur-bob');
    b.host.context.on('request', (r) => requests.push(r.url()));
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('blur-server.log');
  });

  const controls = (page) => page.getByRole('toolbar', { name: 'Meeting controls' });
  const blurButton = (page) => controls(page).getByRole('button', { name: 'Blur background', exact: true });
  /** The median sharpness of five of Bob's frames of the host, a fifth of a second apart. */
  const bobSees = async () => {
    const samples = [];
    for (let i = 0; i < 5; i += 1) {
      const s = await b.bob.page.evaluate(sharpnessOf, HOST);
      if (s) samples.push(s);
      await new Promise((r) => setTimeout(r, 200));
    }
    if (samples.length < 3) return null;
    samples.sort((x, y) => x.sharpness - y.sharpness);
    return { ...samples[Math.floor(samples.length / 2)], changing: new Set(samples.map((s) => s.sum)).size > 1 };
  };
  /** Frames Bob decodes over two seconds. */
  const bobDecodes = async () => {
    const before = await received(b.bob.page);
    await new Promise((r) => setTimeout(r, 2000));
    return gained(before, await received(b.bob.page)).framesDecoded;
  };
  let sharp;

  step('the host and Bob meet; Bob decodes the host\'s camera, sharp', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    const page = b.bob.page;
    await page.goto(invite);
    await page.getByRole('textbox', { name: 'Your name', exact: true }).fill('Bob');
    await page.getByRole('button', { name: 'Join', exact: true }).click();
    await b.host.page.getByRole('listitem').filter({ hasText: 'Bob' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await controls(page).waitFor();
    await eventually(() => b.host.page.evaluate(() => (window.__pcs || []).length), (n) => n > 0, { what: 'the host\'s peer connection' });
    const cam = controls(b.host.page).getByRole('button', { name: 'Start video', exact: true });
    const on = controls(b.host.page).getByRole('button', { name: 'Stop video', exact: true });
    await eventually(async () => {
      if (await cam.count()) await cam.click({ timeout: 2000 }).catch(() => {});
      return on.count();
    }, (n) => n === 1, { timeout: 30_000, every: 3000, what: 'the host\'s camera on' });
    assert.equal(await blurButton(b.host.page).getAttribute('aria-pressed'), 'false');
    await eventually(() => received(page), (r) => r.framesDecoded > 20, { timeout: 30_000, what: 'Bob decodes the host' });
    sharp = await eventually(bobSees, (s) => s && s.sharpness > 0 && s.changing, { timeout: 20_000, what: 'Bob sees the host\'s moving picture' });
    await screenshot(page, 'blur-before');
  });

  step('the host turns on Blur background: Bob\'s picture of the host loses its detail and keeps playing', async () => {
    await blurButton(b.host.page).click();
    assert.equal(await blurButton(b.host.page).getAttribute('aria-pressed'), 'true');
    const blurred = await eventually(bobSees, (s) => s && s.sharpness < sharp.sharpness * 0.25,
      { timeout: 30_000, every: 500, what: `Bob's picture of the host blurred (sharp: ${sharp.sharpness.toFixed(2)})` });
    assert.ok(await bobDecodes() > 10, 'Bob still decodes the host\'s video');
    const still = await eventually(bobSees, (s) => s && s.changing, { what: 'the blurred picture still moves' });
    assert.ok(still.sharpness < sharp.sharpness * 0.25, `still blurred: ${still.sharpness} vs ${sharp.sharpness}`);
    // The model ran in the host's worker (not only the fallback blur before its first mask).
    const stats = await eventually(() => b.host.page.evaluate(async () => (await import('/assets/blur.js')).blurStats()),
      (s) => s && s.segments > 2 && s.frames > 10, { timeout: 20_000, what: 'the worker segments frames' });
    console.log(`blur: sharpness ${sharp.sharpness.toFixed(2)} -> ${blurred.sharpness.toFixed(2)} (${blurred.width}x${blurred.height}); `
      + `worker: ${stats.frames} frames, ${stats.segments} segmentations, `
      + `${(stats.segmentMs / stats.segments).toFixed(1)} ms a segmentation, ${(stats.compositeMs / stats.frames).toFixed(1)} ms a composite`);
    // Everything the blur needed came from the server.
    const origin = new URL(server.url).origin;
    assert.ok(requests.some((u) => u === `${origin}/blur/selfie.bin`), 'the model was fetched from the server');
    const elsewhere = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(elsewhere, [], 'no request leaves the server');
    await screenshot(b.bob.page, 'blur-on');
  });

  step('the host turns it off: Bob\'s picture is sharp again', async () => {
    await blurButton(b.host.page).click();
    assert.equal(await blurButton(b.host.page).getAttribute('aria-pressed'), 'false');
    await eventually(bobSees, (s) => s && s.sharpness > sharp.sharpness * 0.6 && s.changing,
      { timeout: 30_000, every: 500, what: `Bob's picture of the host sharp again (was ${sharp.sharpness.toFixed(2)})` });
    assert.ok(await bobDecodes() > 10, 'Bob still decodes the host\'s video');
    for (const [who, x] of all()) assert.deepEqual(x.errors, [], `${who}: no page errors`);
  });
});
