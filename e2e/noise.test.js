// The noise suppression switch (issue 18): the browser's own
// noiseSuppression and echoCancellation constraints. On by default; a guest
// who turns the switch off on the join page sends a microphone track whose
// settings, as the browser reports them, have both off, and the choice is
// remembered for the next join. A meeting of four: the host, Carol and Dan
// each receive Nia's microphone as a third stream of sound.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { eventually, hostStartsMeeting, openBrowser, received, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';

/** The processing settings of the microphone track a page sends. */
function sentMic(page) {
  return page.evaluate(() => {
    for (const pc of window.__pcs || []) {
      for (const s of pc.getSenders()) {
        if (s.track && s.track.kind === 'audio' && s.track.readyState === 'live') {
          const { noiseSuppression, echoCancellation } = s.track.getSettings();
          return { noiseSuppression, echoCancellation };
        }
      }
    }
    return null;
  });
}

describe('noise suppression switch', () => {
  let server;
  let invite;
  const b = {};
  const step = storySteps('noise-', () => Object.entries(b));

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    b.host = await openBrowser('noise-host');
    b.carol = await openBrowser('noise-carol');
    b.dan = await openBrowser('noise-dan');
    b.guest = await openBrowser('noise-guest');
  });

  /** How many audio streams `page` received packets on over a second. */
  async function soundsHeard(page) {
    const before = await received(page);
    await new Promise((r) => setTimeout(r, 1000));
    const now = await received(page);
    return Object.entries(now.streams)
      .filter(([id, x]) => x.kind === 'audio' && x.count > (before.streams[id]?.count || 0)).length;
  }

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('noise-server.log');
  });

  step('by default the microphone is sent with noise suppression and echo cancellation', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    await eventually(() => sentMic(b.host.page), (s) => s !== null, { what: 'the host sends a microphone' });
    assert.deepEqual(await sentMic(b.host.page), { noiseSuppression: true, echoCancellation: true });
    for (const [who, name] of [['carol', 'Carol'], ['dan', 'Dan']]) {
      const p = b[who].page;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await b.host.page.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
      await eventually(() => sentMic(p), (s) => s !== null, { what: `${name} sends a microphone` });
      assert.deepEqual(await sentMic(p), { noiseSuppression: true, echoCancellation: true }, `${name}: on by default`);
    }
  });

  step('a guest who turns the switch off sends the microphone unprocessed', async () => {
    const p = b.guest.page;
    await p.goto(invite);
    const sw = p.getByRole('switch', { name: 'Noise suppression', exact: true });
    assert.equal(await sw.isChecked(), true, 'on by default');
    await sw.uncheck();
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Nia');
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await b.host.page.getByRole('listitem').filter({ hasText: 'Nia' }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    await eventually(() => sentMic(p), (s) => s !== null, { what: 'the guest sends a microphone' });
    assert.deepEqual(await sentMic(p), { noiseSuppression: false, echoCancellation: false });
    // Each of the other three hears three: Nia's unprocessed sound among them.
    for (const who of ['host', 'carol', 'dan']) {
      await eventually(() => soundsHeard(b[who].page), (n) => n === 3, { timeout: 30_000, every: 500, what: `${who} receives three microphones` });
    }
    // Remembered: the join page shows it off next time.
    await p.getByRole('button', { name: 'Leave', exact: true }).click();
    await p.goto(invite);
    assert.equal(await p.getByRole('switch', { name: 'Noise suppression', exact: true }).isChecked(), false);
    for (const [who, x] of Object.entries(b)) {
      assert.deepEqual(x.alerts, [], `${who}: no dialog`);
      assert.deepEqual(x.errors, [], `${who}: no page error`);
    }
  });
});
