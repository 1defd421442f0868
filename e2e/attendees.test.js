// View-only attendees (issue 23): a host makes a meeting where only the
// people the host allows may publish. A guest who arrives with the camera on
// joins with camera and microphone off and their buttons disabled, saying
// why; a track the guest's page sends anyway behind its own UI's back reaches
// nobody (the server forwards nothing of a view-only member). The guest
// raises a hand, the host clicks "Allow to speak" and sees the guest's video
// decoded; "Stop" turns it off again. Each step relies on the ones before it.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { eventually, gained, openBrowser, received, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const REASON = 'View only: the host decides who may speak. Raise your hand to ask.';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('view-only attendees', () => {
  let server;
  let invite;
  const b = {};
  const all = () => Object.entries(b);
  const step = storySteps('attendees-', all);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    b.host = await openBrowser('attendees-host');
    b.bob = await openBrowser('attendees-bob');
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('attendees-server.log');
  });

  const controls = (page) => page.getByRole('toolbar', { name: 'Meeting controls' });
  const memberRow = (page, name) => page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: name });
  /** Video frames the host's page decodes over `ms`. */
  const hostDecodes = async (ms) => {
    const before = await received(b.host.page);
    await sleep(ms);
    return gained(before, await received(b.host.page)).framesDecoded;
  };

  step('the host makes a meeting where only allowed people publish, and starts it with the camera on', async () => {
    const page = b.host.page;
    await page.goto(`${server.url}/signin`);
    await page.getByRole('textbox', { name: 'Username', exact: true }).fill(HOST);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('button', { name: 'New meeting', exact: true }).click();
    await page.getByRole('combobox', { name: 'Attendees may publish' }).selectOption({ label: 'Only people the host allows' });
    await page.getByRole('button', { name: 'Create meeting', exact: true }).click();
    invite = (await page.getByLabel('Invite link', { exact: true }).first().textContent()).trim();
    await page.getByRole('button', { name: 'Start', exact: true }).first().click();
    await controls(page).waitFor();
    // The host always may publish. Clicked again should the first click
    // land while the arrival's own media is still being set up.
    // The arrival's own media first: a click while it is still being set
    // up (no peer connection yet) is what was lost under load.
    await eventually(() => page.evaluate(() => (window.__pcs || []).length), (n) => n > 0, { what: 'the host\'s peer connection' });
    const cam = controls(page).getByRole('button', { name: 'Start video', exact: true });
    const on = controls(page).getByRole('button', { name: 'Stop video', exact: true });
    await eventually(async () => {
      if (await cam.count()) {
        assert.ok(await cam.isEnabled(), 'the host\'s camera button works');
        await cam.click({ timeout: 2000 }).catch(() => {});
      }
      return on.count();
    }, (n) => n === 1, { timeout: 30_000, every: 3000, what: 'the host\'s camera on' });
  });

  step('a guest who asks for the camera joins view-only: camera, microphone and screen off and disabled, with the reason', async () => {
    const page = b.bob.page;
    await page.goto(invite);
    await page.getByRole('textbox', { name: 'Your name', exact: true }).fill('Bob');
    await page.getByRole('button', { name: 'Camera', exact: true }).click();
    await page.getByRole('button', { name: 'Join', exact: true }).click();
    await b.host.page.getByRole('listitem').filter({ hasText: 'Bob' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await controls(page).waitFor();
    for (const name of ['Unmute', 'Start video', 'Share screen']) {
      const button = controls(page).getByRole('button', { name, exact: true });
      await eventually(() => button.isDisabled(), (d) => d, { what: `${name} disabled` });
      assert.equal(await button.getAttribute('title'), REASON);
    }
    await controls(page).getByText(REASON).waitFor();
    // Bob's page receives the host's video: the call itself works.
    await eventually(() => received(page), (r) => r.framesDecoded > 10, { timeout: 30_000, what: 'Bob decodes the host' });
    await screenshot(page, 'attendees-view-only');
  });

  step('a track Bob\'s page sends behind its UI\'s back, and a forged set_media, reach nobody', async () => {
    const page = b.bob.page;
    const refused = await page.evaluate(async () => {
      const { currentFeatures } = await import('/assets/appmsg.js');
      const call = currentFeatures().call;
      const stream = await navigator.mediaDevices.getUserMedia({ video: true });
      call.streams.peer.setTrack('video', stream.getVideoTracks()[0]);
      const before = window.__sent.length;
      call.send({ type: 'set_media', video: true, audio: true });
      return before;
    });
    assert.ok(refused >= 0);
    // The page is sending video frames now...
    await eventually(() => page.evaluate(async () => {
      let frames = 0;
      for (const pc of window.__pcs || []) {
        (await pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') frames += s.framesEncoded || 0; });
      }
      return frames;
    }), (n) => n > 30, { what: 'Bob\'s page encodes video' });
    // ...and the host decodes none of it.
    assert.equal(await hostDecodes(3000), 0, 'nothing of Bob reached the host');
    assert.equal(await memberRow(b.host.page, 'Bob').getByRole('img', { name: 'Camera on', exact: true }).count(), 0);
  });

  step('Bob raises his hand; the host clicks Allow to speak; Bob starts his video and the host decodes it', async () => {
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    const people = controls(b.host.page).getByRole('button', { name: 'Participants', exact: true });
    if ((await people.getAttribute('aria-expanded')) !== 'true') await people.click();
    const hand = b.host.page.getByRole('list', { name: 'Raised hands' }).getByRole('listitem').filter({ hasText: 'Bob' });
    // The hand's row offers the answer too.
    await hand.getByRole('button', { name: 'Allow to speak', exact: true }).waitFor();
    await memberRow(b.host.page, 'Bob').getByRole('button', { name: 'Allow to speak', exact: true }).click();
    await b.bob.page.getByText('A host allowed you to speak: you may turn on your microphone and camera.').first().waitFor();
    const cam = controls(b.bob.page).getByRole('button', { name: 'Start video', exact: true });
    await eventually(() => cam.isEnabled(), (on) => on, { what: 'Bob\'s camera button enabled' });
    assert.equal(await controls(b.bob.page).getByText(REASON).count(), 0, 'the note is gone');
    await cam.click();
    await controls(b.bob.page).getByRole('button', { name: 'Stop video', exact: true }).waitFor();
    await memberRow(b.host.page, 'Bob').getByRole('img', { name: 'Camera on', exact: true }).waitFor();
    await eventually(() => hostDecodes(1000), (n) => n > 5, { timeout: 20_000, what: 'the host decodes Bob\'s video' });
    await screenshot(b.host.page, 'attendees-allowed');
  });

  step('the host clicks Stop: Bob\'s video stops reaching the host and his buttons are disabled again', async () => {
    await memberRow(b.host.page, 'Bob').getByRole('button', { name: 'Stop', exact: true }).click();
    const cam = controls(b.bob.page).getByRole('button', { name: 'Start video', exact: true });
    await eventually(() => cam.isDisabled(), (d) => d, { what: 'Bob\'s camera button disabled again' });
    await b.bob.page.getByText('A host ended your turn to speak: you are view-only again.').first().waitFor();
    await memberRow(b.host.page, 'Bob').getByRole('button', { name: 'Allow to speak', exact: true }).waitFor();
    await sleep(1000); // what was already on its way
    assert.equal(await hostDecodes(3000), 0, 'nothing of Bob after Stop');
  });
});
