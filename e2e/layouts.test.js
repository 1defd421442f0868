// Layouts (issue 18) in a meeting of four browsers, then seven members with
// three native clients: the speaker view shows the active speaker big; a pin
// is for the one who pins alone; a host's spotlight is seen by all (a member
// back after a reload too), and a guest's forged one is ignored by every
// page; a small screen shows a page of tiles, and the videos off that page
// are not forwarded to it (its inbound-rtp counters for them stand still)
// until it turns to their page.
// Each step relies on the ones before it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, ROOT, eventually, hostStartsMeeting, openBrowser, screenshot, startServer, storySteps, toneWav } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const NATIVES = ['Nat One', 'Nat Two', 'Nat Three'];

/** Records every text frame a page's sockets receive from the server. */
function recordReceived() {
  const Base = window.WebSocket;
  window.__received = [];
  window.WebSocket = class extends Base {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        if (typeof ev.data === 'string') window.__received.push(ev.data);
      });
    }
  };
}

/** `conclave join` as `name`, sending a looped 320×240 VP8 video and a tone. */
function startNative(invite, name) {
  const child = spawn(BINARY, ['join', invite, '--name', name,
    '--send-ivf', path.join(ROOT, 'samples/video-320x240.ivf'),
    '--send-ogg', path.join(ROOT, 'samples/audio-440hz.ogg')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const native = { child, err: '' };
  child.stderr.on('data', (d) => { native.err += d; });
  return native;
}

describe('layouts: speaker view, pin, spotlight and pages', () => {
  let server;
  let invite;
  let tone;
  const b = {};
  const natives = [];
  const warnings = {}; // console warnings per page
  const names = { host: HOST, bob: 'Bob', carol: 'Carol', dan: 'Dan' };
  const all = () => Object.entries(b);
  const step = storySteps('layouts-', all);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    tone = toneWav('conclave-layouts-');
    for (const who of Object.keys(names)) {
      b[who] = await openBrowser(`layouts-${who}`, { flags: [`--use-file-for-fake-audio-capture=${tone}`] });
      await b[who].context.addInitScript(recordReceived);
      warnings[who] = [];
      b[who].page.on('console', (m) => { if (m.type() === 'warning') warnings[who].push(m.text()); });
    }
  });

  after(async () => {
    for (const n of natives) if (n.child.exitCode === null) n.child.kill('SIGKILL');
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('layouts-server.log');
    if (tone) fs.rmSync(path.dirname(tone), { recursive: true, force: true });
  });

  const tileOf = (page, name) => page.getByRole('list', { name: 'Video tiles' }).getByRole('listitem')
    .filter({ has: page.locator('.tile-name', { hasText: new RegExp(`^${name}$`) }) });
  const controls = (page) => page.getByRole('toolbar', { name: 'Meeting controls' });
  /** The name shown big on a page, or null in the grid. */
  const featured = (page) => page.evaluate(() => {
    const t = document.querySelector('.grid.is-speaker > li.tile.is-featured:not([hidden])');
    return t ? t.querySelector('.tile-name').textContent : null;
  });
  const width = async (page, name) => (await tileOf(page, name).boundingBox())?.width || 0;
  const chooseLayout = async (page, label) => {
    await controls(page).getByRole('button', { name: 'Layout', exact: true }).click();
    await page.getByRole('menu', { name: 'Layout' }).getByRole('menuitemradio', { name: label, exact: true }).click();
  };
  /** Participant ids by name, from the page's roster. */
  const ids = (page) => page.evaluate(async () => {
    const { currentFeatures } = await import('/assets/appmsg.js');
    return Object.fromEntries(currentFeatures().call.state.participants.map((p) => [p.name, p.id]));
  });

  step('a host and three guests meet with cameras on, only Carol\'s microphone on', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    for (const who of ['bob', 'carol', 'dan']) {
      const p = b[who].page;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(names[who]);
      const cam = p.getByRole('button', { name: 'Camera', exact: true });
      if ((await cam.getAttribute('aria-pressed')) !== 'true') await cam.click();
      const mic = p.getByRole('button', { name: 'Microphone', exact: true });
      if ((await mic.getAttribute('aria-pressed')) !== String(who === 'carol')) await mic.click();
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await b.host.page.getByRole('listitem').filter({ hasText: names[who] }).getByRole('button', { name: 'Admit', exact: true }).click();
      await controls(p).waitFor();
    }
    // The host's microphone off too (it may start muted).
    const hostMute = controls(b.host.page).getByRole('button', { name: 'Mute', exact: true });
    if (await hostMute.count()) await hostMute.click({ timeout: 20_000 });
    await controls(b.host.page).getByRole('button', { name: 'Unmute', exact: true }).waitFor();
    for (const [who, x] of all()) {
      const inGroup = x.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true });
      await eventually(() => inGroup.count(), (n) => n === 4, { timeout: 30_000, what: `${who} sees four members in the group` });
      await eventually(() => x.page.locator('video.tile-video:not([hidden])').count(), (n) => n === 4, { timeout: 30_000, what: `${who} shows four videos` });
    }
  });

  step('speaker view: the active speaker is big, and the view follows the speaker', async () => {
    const page = b.bob.page;
    await chooseLayout(page, 'Speaker');
    await eventually(() => featured(page), (n) => n === 'Carol', { timeout: 20_000, what: 'Carol big on Bob\'s page' });
    const big = await width(page, 'Carol');
    const small = await width(page, 'Dan');
    assert.ok(big > 2.5 * small, `the speaker's tile is big: ${big} vs ${small}`);
    // The big tile is asked for at its size, the small ones at theirs.
    const carolId = (await ids(page)).Carol;
    await eventually(() => page.evaluate((id) => window.__sent.filter((m) => m.type === 'view_size' && m.participant === id).at(-1)?.width || 0, carolId),
      (w) => w >= big - 4, { what: 'the big view size sent' });
    await screenshot(page, 'layouts-speaker');
    // Carol stops, Dan speaks: Dan is big now.
    await controls(b.carol.page).getByRole('button', { name: 'Mute', exact: true }).click();
    await controls(b.dan.page).getByRole('button', { name: 'Unmute', exact: true }).click();
    await eventually(() => featured(page), (n) => n === 'Dan', { timeout: 20_000, what: 'Dan big on Bob\'s page' });
    // The others kept the grid.
    for (const who of ['host', 'carol', 'dan']) assert.equal(await featured(b[who].page), null, `${who} is in the grid`);
    // By keyboard too: the menu opens on the checked item, arrows move, Enter picks.
    await controls(page).getByRole('button', { name: 'Layout', exact: true }).click();
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    await eventually(() => featured(page), (n) => n === null, { what: 'Bob back to the grid' });
    await controls(page).getByRole('button', { name: 'Layout', exact: true }).click();
    assert.equal(await page.getByRole('menuitemradio', { name: 'Grid', exact: true }).getAttribute('aria-checked'), 'true');
    await page.keyboard.press('Escape');
    await page.getByRole('menu', { name: 'Layout' }).waitFor({ state: 'hidden' });
    await controls(b.dan.page).getByRole('button', { name: 'Mute', exact: true }).click();
  });

  step('a pin is for the one who pins alone', async () => {
    const page = b.bob.page;
    await tileOf(page, 'Dan').getByRole('button', { name: 'Pin', exact: true }).click();
    await eventually(() => featured(page), (n) => n === 'Dan', { what: 'Dan pinned big on Bob\'s page' });
    await tileOf(page, 'Dan').getByRole('button', { name: 'Unpin', exact: true }).waitFor();
    await new Promise((r) => setTimeout(r, 1500));
    for (const who of ['host', 'carol', 'dan']) {
      assert.equal(await featured(b[who].page), null, `${who} does not see Bob's pin`);
      assert.equal(await tileOf(b[who].page, 'Dan').getByRole('button', { name: 'Unpin', exact: true }).count(), 0);
    }
    await tileOf(page, 'Dan').getByRole('button', { name: 'Unpin', exact: true }).click();
    await eventually(() => featured(page), (n) => n === null, { what: 'unpinned' });
  });

  step('the host spotlights Carol for everyone; a guest has no such button', async () => {
    assert.equal(await tileOf(b.bob.page, 'Carol').getByRole('button', { name: 'Spotlight for everyone', exact: true }).count(), 0);
    await tileOf(b.host.page, 'Carol').getByRole('button', { name: 'Spotlight for everyone', exact: true }).click();
    for (const [who, x] of all()) {
      await eventually(() => featured(x.page), (n) => n === 'Carol', { what: `${who} sees Carol spotlighted` });
      await tileOf(x.page, 'Carol').getByRole('img', { name: 'Spotlighted for everyone', exact: true }).waitFor();
      assert.equal(await x.page.getByRole('img', { name: 'Spotlighted for everyone', exact: true }).count(), 1, `${who}: one spotlight`);
    }
    await tileOf(b.host.page, 'Carol').getByRole('button', { name: 'Remove spotlight', exact: true }).waitFor();
    await b.dan.page.getByText('Carol is spotlighted for everyone.').first().waitFor();
    await b.carol.page.getByText('A host spotlighted you for everyone.').first().waitFor();
    await screenshot(b.dan.page, 'layouts-spotlight');
  });

  step('a guest\'s forged spotlight is ignored by every page', async () => {
    const danId = (await ids(b.bob.page)).Dan;
    await b.bob.page.evaluate(async (id) => {
      const { currentFeatures } = await import('/assets/appmsg.js');
      currentFeatures().send({ type: 'spotlight', participant: id });
      currentFeatures().send({ type: 'spotlight', participant: null });
    }, danId);
    for (const [who, x] of all()) {
      await eventually(() => warnings[who].filter((w) => /^spotlight from \d+, who is not a host, ignored$/.test(w)).length, (n) => n >= 2,
        { what: `${who} received and dropped Bob's two spotlights` });
      assert.equal(await featured(x.page), 'Carol', `${who} still sees Carol`);
    }
  });

  step('a member back after a reload is told the spotlight again', async () => {
    const p = b.dan.page;
    await p.reload();
    await controls(p).waitFor({ timeout: 20_000 });
    await eventually(() => featured(p), (n) => n === 'Carol', { timeout: 20_000, what: 'Dan sees Carol spotlighted again' });
    await eventually(() => p.locator('video.tile-video:not([hidden])').count(), (n) => n === 4, { timeout: 30_000, what: 'Dan shows four videos again' });
  });

  step('the host removes the spotlight for everyone', async () => {
    await tileOf(b.host.page, 'Carol').getByRole('button', { name: 'Remove spotlight', exact: true }).click();
    for (const [who, x] of all()) await eventually(() => featured(x.page), (n) => n === null, { what: `${who} back to the grid` });
  });

  step('seven members on a small screen: a page of four, and off-page videos are not forwarded', async () => {
    for (const name of NATIVES) {
      const native = startNative(invite, name);
      natives.push(native);
      await b.host.page.getByRole('list', { name: 'People waiting' }).getByRole('listitem').filter({ hasText: name })
        .getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 30_000 });
    }
    const page = b.bob.page;
    await page.setViewportSize({ width: 600, height: 600 });
    // On a small screen the side panels cover the stage: put them away.
    for (const panel of ['Participants', 'Chat']) {
      const toggle = controls(page).getByRole('button', { name: panel, exact: true });
      if ((await toggle.getAttribute('aria-expanded')) === 'true') await toggle.click();
    }
    const pager = page.getByRole('navigation', { name: 'Pages of tiles' });
    await eventually(() => pager.getByText(/^Page \d+ of \d+$/).textContent().catch(() => ''), (t) => t === 'Page 1 of 2', { timeout: 30_000, what: 'two pages' });
    const visible = () => page.evaluate(() => [...document.querySelectorAll('.grid > li.tile:not([hidden]) .tile-name')].map((e) => e.textContent));
    assert.deepEqual((await visible()).sort(), ['Bob', 'Carol', 'Dan', HOST].sort());
    await screenshot(page, 'layouts-page1');

    const roster = await ids(page);
    /** Packets received per participant's video offered, from the page's inbound-rtp and the server's track lists. */
    const videoPackets = () => page.evaluate(async () => {
      const offers = window.__received.map((f) => JSON.parse(f)).filter((m) => m.type === 'media_offer');
      const who = Object.fromEntries(offers.flatMap((o) => o.tracks || []).filter((t) => t.kind !== 'audio').map((t) => [t.mid, t.participant]));
      const pc = window.__pcs.filter((p) => p.connectionState !== 'closed').at(-1);
      // A stream with nothing received yet has no inbound-rtp entry: 0.
      const out = Object.fromEntries(Object.values(who).map((id) => [id, 0]));
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && who[s.mid] !== undefined) out[who[s.mid]] = s.packetsReceived;
      });
      return out;
    });
    const natIds = NATIVES.map((n) => roster[n]);
    const pageOne = [roster[HOST], roster.Carol, roster.Dan];
    // The natives' videos reach Bob's peer connection (offered), and once off-page settle.
    await eventually(videoPackets, (v) => natIds.every((id) => id in v), { timeout: 30_000, what: 'natives\' videos offered to Bob' });
    const over = async (ms) => {
      const a = await videoPackets();
      await new Promise((r) => setTimeout(r, ms));
      const z = await videoPackets();
      return Object.fromEntries(Object.keys(z).map((id) => [id, z[id] - (a[id] || 0)]));
    };
    await new Promise((r) => setTimeout(r, 1500));
    const first = await over(3000);
    console.log('page 1: video packets in 3 s by participant', JSON.stringify(first));
    for (const id of natIds) assert.equal(first[id], 0, `off-page video of ${id} not forwarded`);
    for (const id of pageOne) assert.ok(first[id] > 5, `on-page video of ${id} flows: ${first[id]}`);
    const zeroSent = await page.evaluate((list) => list.every((id) => window.__sent.some((m) => m.type === 'view_size' && m.participant === id && m.width === 0 && m.height === 0)), natIds);
    assert.ok(zeroSent, 'Bob said 0×0 for each off-page video');

    await pager.getByRole('button', { name: 'Next page', exact: true }).click();
    await eventually(() => pager.getByText(/^Page \d+ of \d+$/).textContent(), (t) => t === 'Page 2 of 2', { what: 'page two' });
    assert.deepEqual((await visible()).sort(), [...NATIVES].sort());
    await eventually(() => page.locator('.grid > li.tile:not([hidden]) video.tile-video:not([hidden])').count(), (n) => n === 3, { timeout: 20_000, what: 'the natives\' videos shown' });
    await new Promise((r) => setTimeout(r, 1500));
    const second = await over(3000);
    console.log('page 2: video packets in 3 s by participant', JSON.stringify(second));
    for (const id of natIds) assert.ok(second[id] > 5, `now on the page, ${id}'s video flows: ${second[id]}`);
    for (const id of pageOne) assert.equal(second[id], 0, `now off the page, ${id}'s video is not forwarded`);
    await screenshot(page, 'layouts-page2');
    // Frames decode on page two: the videos resumed at a key frame.
    await eventually(() => page.evaluate(() => [...document.querySelectorAll('.grid > li.tile:not([hidden]) video.tile-video:not([hidden])')]
      .every((v) => v.videoWidth > 0)), (ok) => ok, { timeout: 20_000, what: 'the natives\' videos decode' });

    await pager.getByRole('button', { name: 'Previous page', exact: true }).click();
    await eventually(() => pager.getByText(/^Page \d+ of \d+$/).textContent(), (t) => t === 'Page 1 of 2', { what: 'page one again' });
    await new Promise((r) => setTimeout(r, 1500));
    const third = await over(3000);
    for (const id of pageOne) assert.ok(third[id] > 5, `back on the page, ${id}'s video flows again: ${third[id]}`);
    for (const id of natIds) assert.equal(third[id], 0, `off the page again, ${id}'s video stops`);
    for (const [who, x] of all()) assert.deepEqual(x.errors, [], `${who}: no page errors`);
  });
});
