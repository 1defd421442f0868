// Phones (issue 18): a guest on an emulated phone (390×844 CSS pixels, touch,
// mobile viewport) joins a desktop host's meeting of three (a meeting of four
// with it), sees the three videos play,
// and reaches Leave, Mute and Raise hand by their accessible names, every one
// of them inside the screen and tappable, with no sideways scrolling of the
// page at any point, and every control of the bar in view at once.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { eventually, hostStartsMeeting, openBrowser, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const PHONE = {
  viewport: { width: 390, height: 844 },
  screen: { width: 390, height: 844 },
  deviceScaleFactor: 3,
  isMobile: true,
  hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36',
};

/** The page's horizontal overflow in CSS pixels (0 when nothing scrolls sideways). */
function sidewaysOverflow(page) {
  return page.evaluate(() => {
    const d = document.documentElement;
    return Math.max(d.scrollWidth, document.body.scrollWidth) - d.clientWidth;
  });
}

/** Asserts that `locator` is wholly inside the phone's screen. */
async function onScreen(locator, what) {
  const box = await locator.boundingBox();
  assert.ok(box, `${what}: shown`);
  assert.ok(box.x >= 0 && box.y >= 0, `${what}: at ${box.x},${box.y}`);
  assert.ok(box.x + box.width <= PHONE.viewport.width + 0.5, `${what}: right edge ${box.x + box.width}`);
  assert.ok(box.y + box.height <= PHONE.viewport.height + 0.5, `${what}: bottom edge ${box.y + box.height}`);
  return box;
}

describe('the web client on a phone-sized screen', () => {
  let server;
  let invite;
  const b = {};
  const step = storySteps('phone-', () => Object.entries(b));

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    b.host = await openBrowser('phone-host');
    b.bob = await openBrowser('phone-bob');
    b.carol = await openBrowser('phone-carol');
    b.phone = await openBrowser('phone-guest', { device: PHONE });
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('phone-server.log');
  });

  step('the phone joins a meeting of three by touch and sees their videos play', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    for (const [who, name] of [['bob', 'Bob'], ['carol', 'Carol']]) {
      const d = b[who].page;
      await d.goto(invite);
      await d.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await d.getByRole('button', { name: 'Join', exact: true }).click();
      await b.host.page.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await d.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    }
    const p = b.phone.page;
    await p.goto(invite);
    assert.equal(await p.evaluate(() => window.innerWidth), 390);
    assert.equal(await p.evaluate(() => matchMedia('(pointer: coarse)').matches), true, 'a touch screen');
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Pat');
    assert.equal(await sidewaysOverflow(p), 0, 'join page: no sideways scrolling');
    await p.getByRole('button', { name: 'Join', exact: true }).tap();
    await b.host.page.getByRole('listitem').filter({ hasText: 'Pat' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    for (const name of [HOST, 'Bob', 'Carol']) {
      const v = p.locator('li.tile').filter({ hasText: name }).locator('video').first();
      await eventually(() => v.evaluate((x) => ({ w: x.videoWidth, ready: x.readyState, t: x.currentTime })),
        (s) => s.w > 0 && s.ready >= 2 && s.t > 0, { timeout: 30_000, what: `${name}'s video plays on the phone` });
    }
    const video = p.locator('li.tile').filter({ hasText: HOST }).locator('video').first();
    await onScreen(video, 'the host\'s video');
    assert.equal(await sidewaysOverflow(p), 0, 'a meeting of four: no sideways scrolling');
    await screenshot(p, 'phone-meeting');
  });

  step('Mute, Raise hand and Leave are on screen, named, and work by touch; nothing scrolls sideways', async () => {
    const p = b.phone.page;
    const bar = p.getByRole('toolbar', { name: 'Meeting controls' });
    await onScreen(bar, 'the toolbar');
    for (const name of ['Mute', 'Raise hand', 'Leave']) {
      const button = bar.getByRole('button', { name, exact: true });
      const box = await onScreen(button, name);
      // Big enough for a thumb (WCAG 2.5.8's 24 px at the least).
      assert.ok(box.width >= 24 && box.height >= 24, `${name}: ${box.width}×${box.height}`);
    }
    assert.equal(await sidewaysOverflow(p), 0, 'meeting page: no sideways scrolling');
    // Every control of the bar is in view at once: nothing hides in a strip
    // that scrolls sideways.
    const hidden = await bar.evaluate((el) => [...el.querySelectorAll('button')]
      .filter((x) => x.offsetParent !== null)
      .filter((x) => {
        const r = x.getBoundingClientRect();
        return r.left < 0 || r.right > window.innerWidth || r.top < 0 || r.bottom > window.innerHeight;
      })
      .map((x) => x.getAttribute('aria-label') || x.textContent.trim()));
    assert.deepEqual(hidden, [], 'controls out of view');
    await bar.getByRole('button', { name: 'Mute', exact: true }).tap();
    await bar.getByRole('button', { name: 'Unmute', exact: true }).waitFor();
    await bar.getByRole('button', { name: 'Raise hand', exact: true }).tap();
    await bar.getByRole('button', { name: 'Lower hand', exact: true }).waitFor();
    for (const who of ['host', 'bob', 'carol']) {
      await b[who].page.locator('li.tile').filter({ hasText: 'Pat' }).getByRole('img', { name: 'Hand raised', exact: true }).waitFor();
    }
    assert.equal(await sidewaysOverflow(p), 0, 'with a hand up: no sideways scrolling');
    await screenshot(p, 'phone-controls');
    await bar.getByRole('button', { name: 'Leave', exact: true }).tap();
    for (const who of ['host', 'bob', 'carol']) await b[who].page.locator('li.tile').filter({ hasText: 'Pat' }).waitFor({ state: 'detached' });
    for (const [who, x] of Object.entries(b)) {
      assert.deepEqual(x.alerts, [], `${who}: no dialog`);
      assert.deepEqual(x.errors, [], `${who}: no page error`);
    }
  });
});
