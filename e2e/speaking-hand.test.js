// A hand raised while muted comes down when its owner unmutes and speaks
// (issue 18, web/speaking.js), from the level the browser measures for the
// microphone it sends. Bob's fake microphone plays a steady tone (a person
// talking); the host's is Chromium's default, which beeps loudly twice a
// second. A muted microphone leaves a hand up, and so does an open one that
// was never off while the hand was up (room sound, the host's beeps);
// unmuting and talking lowers it, for everyone. A meeting of four: Carol's
// hand, raised muted, stays up through Bob's talking, and Dan only watches.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { eventually, hostStartsMeeting, openBrowser, startServer, storySteps, toneWav } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';

describe('a raised hand comes down when its owner speaks', () => {
  let server;
  let tone;
  const b = {};
  const all = () => Object.entries(b);
  const step = storySteps('speaking-hand-', all);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    tone = toneWav('conclave-speaking-');
    b.host = await openBrowser('speaking-host');
    b.bob = await openBrowser('speaking-bob', { flags: [`--use-file-for-fake-audio-capture=${tone}`] });
    b.carol = await openBrowser('speaking-carol');
    b.dan = await openBrowser('speaking-dan');
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('speaking-hand-server.log');
    if (tone) fs.rmSync(path.dirname(tone), { recursive: true, force: true });
  });

  const controls = (page) => page.getByRole('toolbar', { name: 'Meeting controls' });
  const handOrder = (page) => page.evaluate(() => [...document.querySelectorAll('.hands-box:not([hidden]) .hands-list .person-name')]
    .map((el) => el.textContent.replace(' (you)', '')));

  /** `name` joins on `p` with camera and microphone off, and is admitted. */
  async function joinMuted(p, invite, name) {
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
    const cam = p.getByRole('button', { name: 'Camera', exact: true });
    if ((await cam.getAttribute('aria-pressed')) === 'true') await cam.click();
    const mic = p.getByRole('button', { name: 'Microphone', exact: true });
    if ((await mic.getAttribute('aria-pressed')) === 'true') await mic.click();
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await b.host.page.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await controls(p).getByRole('button', { name: 'Unmute', exact: true }).waitFor();
  }

  step('the host, Bob, Carol and Dan meet; the three come in muted', async () => {
    const invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    await joinMuted(b.bob.page, invite, 'Bob');
    await joinMuted(b.carol.page, invite, 'Carol');
    await joinMuted(b.dan.page, invite, 'Dan');
    // The host's (beeping) microphone on.
    const unmute = controls(b.host.page).getByRole('button', { name: 'Unmute', exact: true });
    if (await unmute.count()) await unmute.click();
    await controls(b.host.page).getByRole('button', { name: 'Mute', exact: true }).waitFor();
    for (const [who, x] of all()) {
      const inGroup = x.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true });
      await eventually(() => inGroup.count(), (n) => n === 4, { timeout: 30_000, what: `${who} sees four members in the group` });
    }
  });

  step('hands raised with a muted microphone and an open beeping one stay up', async () => {
    await controls(b.host.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    await eventually(() => handOrder(b.host.page), (o) => o.length === 2, { what: 'the host sees Bob\'s hand' });
    await controls(b.carol.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [who, x] of all()) {
      await eventually(() => handOrder(x.page), (o) => o.length === 3, { what: `${who} sees three hands` });
    }
    // Several seconds of the host's beeps (a detector window is 250 ms):
    // still all three up, in order, on every page.
    await new Promise((r) => setTimeout(r, 4000));
    for (const [who, x] of all()) {
      assert.deepEqual(await handOrder(x.page), [HOST, 'Bob', 'Carol'], `${who}: the three hands still up`);
    }
  });

  step('Bob unmutes and talks: his hand comes down for everyone; the host\'s and muted Carol\'s stay', async () => {
    await controls(b.bob.page).getByRole('button', { name: 'Unmute', exact: true }).click();
    await b.bob.page.getByText('You are speaking, so your hand was lowered.').first().waitFor({ timeout: 20_000 });
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).waitFor();
    for (const [who, x] of all()) {
      await eventually(() => handOrder(x.page), (o) => o.length === 2 && o[0] === HOST && o[1] === 'Carol', { what: `${who}: the host's and Carol's hands are up` });
    }
    await controls(b.host.page).getByRole('button', { name: 'Lower hand', exact: true }).waitFor();
    await controls(b.carol.page).getByRole('button', { name: 'Lower hand', exact: true }).waitFor();
  });

  step('a hand raised while already talking stays up', async () => {
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [who, x] of all()) {
      await eventually(() => handOrder(x.page), (o) => o.length === 3, { what: `${who} sees three hands` });
    }
    await new Promise((r) => setTimeout(r, 4000));
    for (const [who, x] of all()) {
      assert.deepEqual(await handOrder(x.page), [HOST, 'Carol', 'Bob'], `${who}: the three hands still up, Bob's last`);
    }
  });
});
