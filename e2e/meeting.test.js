// A meeting in real browsers: a host and a guest meet, see and hear each
// other through the server's media router, chat, mute, share a screen; a
// locked meeting turns a newcomer away; a removed guest stays out.
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { dropSocket, eventually, gained, openBrowser, received, screenshot, hostStartsMeeting, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const MARKUP = '<img src=x onerror=alert(1)>';

describe('a meeting in the browser', () => {
  let server;
  let host;
  let guest;
  let invite;
  const others = [];
  const step = storySteps('', () => [['host', host], ['guest', guest]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    host = await openBrowser('host');
    guest = await openBrowser('guest');
  });

  after(async () => {
    for (const b of [host, guest, ...others]) if (b) await b.close();
    if (server) await server.stop();
  });

  const tileOf = (page, name) => page.locator('li.tile').filter({ has: page.locator('.tile-name', { hasText: name }) });

  step('host signs in, creates a meeting and joins it', async () => {
    const p = host.page;
    invite = await hostStartsMeeting(p, server.url, HOST, PASSWORD);
    assert.match(invite, /^http:\/\/127\.0\.0\.1:\d+\//);
  });

  step('guest waits in the waiting room until the host admits them', async () => {
    const p = guest.page;
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(MARKUP);
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await p.getByRole('region', { name: 'Waiting room', exact: true }).waitFor();
    await host.page.getByRole('button', { name: 'Admit', exact: true }).click();
    await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
  });

  step('host and guest see and hear each other', async () => {
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const first = await eventually(() => received(b.page), (r) => r.framesDecoded > 10 && r.audioPackets > 10, { timeout: 20_000, what: `${who} receives media` });
      const later = await eventually(() => received(b.page), (r) => r.framesDecoded > first.framesDecoded + 10, { what: `${who} keeps decoding` });
      assert.ok(later.audioPackets > first.audioPackets, `${who} keeps receiving audio`);
    }
    // The other's video plays in their tile, named for them.
    const guestVideo = host.page.getByRole('listitem').locator(`video[aria-label="${MARKUP}"]`);
    await eventually(() => guestVideo.evaluate((v) => v.getVideoPlaybackQuality().totalVideoFrames), (n) => n > 5, { what: 'guest video plays at the host' });
    const hostVideo = guest.page.locator(`video[aria-label="${HOST}"]`);
    await eventually(() => hostVideo.evaluate((v) => v.videoWidth), (w) => w > 0, { what: 'host video plays at the guest' });
    // The host told the server how large it shows the guest's video.
    const sizes = await host.page.evaluate(() => window.__sent.filter((m) => m.type === 'view_size'));
    assert.ok(sizes.some((m) => m.kind === 'video' && m.width > 100 && m.height > 50), `view_size sent: ${JSON.stringify(sizes)}`);
    await screenshot(host.page, 'host-meeting');
    await screenshot(guest.page, 'guest-meeting');
  });

  step('chat carries markup as text both ways', async () => {
    const send = async (page, text) => {
      await page.getByRole('textbox', { name: 'Message', exact: true }).fill(text);
      await page.getByRole('button', { name: 'Send', exact: true }).click();
    };
    await send(guest.page, MARKUP);
    // At the host both the guest's name and the message are the markup, as text.
    const atHost = host.page.getByRole('log', { name: 'Chat history' }).getByText(MARKUP, { exact: true });
    await eventually(() => atHost.count(), (n) => n === 2, { what: 'name and message shown as text' });
    await send(host.page, `reply ${MARKUP}`);
    await guest.page.getByRole('log', { name: 'Chat history' }).getByText(`reply ${MARKUP}`, { exact: true }).waitFor();
    assert.equal(await host.page.locator('.chat-log img').count(), 0);
    assert.equal(await guest.page.locator('.chat-log img, .tile img').count(), 0);
    assert.deepEqual([...host.alerts, ...guest.alerts], []);
  });

  step('mute and stopped video show on the other side', async () => {
    await guest.page.getByRole('button', { name: 'Mute', exact: true }).click();
    await guest.page.getByRole('button', { name: 'Unmute', exact: true }).waitFor();
    await tileOf(host.page, MARKUP).getByRole('img', { name: 'Muted', exact: true }).waitFor();
    const track = await guest.page.evaluate(() => window.__pcs.at(-1).getSenders().find((s) => s.track?.kind === 'audio')?.track.enabled);
    assert.equal(track, false, 'the muted microphone track is disabled');
    await guest.page.getByRole('button', { name: 'Unmute', exact: true }).click();
    await tileOf(host.page, MARKUP).getByRole('img', { name: 'Microphone on', exact: true }).waitFor();
    await guest.page.getByRole('button', { name: 'Stop video', exact: true }).click();
    await tileOf(host.page, MARKUP).getByRole('img', { name: 'Camera off', exact: true }).waitFor();
    assert.equal(await tileOf(host.page, MARKUP).locator('video').isHidden(), true, 'the tile shows initials');
    await guest.page.getByRole('button', { name: 'Start video', exact: true }).click();
    await tileOf(host.page, MARKUP).locator('video').waitFor();
  });

  step('guest screen share is refused until the host allows it', async () => {
    const g = guest.page;
    await g.getByRole('button', { name: 'Share screen', exact: true }).click();
    await g.getByText('Only hosts can share their screen in this meeting.').first().waitFor();
    await host.page.getByRole('switch', { name: 'Allow screen sharing', exact: true }).check();
    await g.getByText('Everyone may now share their screen.').first().waitFor();
    await g.getByRole('button', { name: 'Share screen', exact: true }).click();
    await g.getByRole('button', { name: 'Stop sharing', exact: true }).waitFor();
    await tileOf(host.page, MARKUP).getByRole('img', { name: 'Sharing screen', exact: true }).waitFor();
    // The host's tile for the guest now shows the screen: a new track, decoding.
    await eventually(() => host.page.evaluate(() => {
      const v = [...document.querySelectorAll('li.tile video')].find((x) => x._shown?.kind === 'screen');
      return v ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
    }), (n) => n > 3, { timeout: 20_000, what: 'the screen share plays at the host' });
    await screenshot(host.page, 'host-sees-screen');
    await g.getByRole('button', { name: 'Stop sharing', exact: true }).click();
    await g.getByRole('button', { name: 'Share screen', exact: true }).waitFor();
  });

  step('after a dropped connection the guest resumes with a new peer connection and media flows again', async () => {
    const before = await dropSocket(guest.page);
    await guest.page.getByText('Reconnected.').first().waitFor({ timeout: 15_000 });
    await eventually(() => guest.page.evaluate(() => window.__pcs.length), (n) => n > before, { what: 'a new peer connection' });
    for (const [who, b] of [['host', host], ['guest', guest]]) {
      const first = await eventually(() => received(b.page), (r) => r.framesDecoded > 0, { timeout: 20_000, what: `${who} receives media after the resume` });
      await eventually(() => received(b.page), (r) => gained(first, r).framesDecoded > 10 && gained(first, r).audioPackets > 0, { what: `${who} keeps decoding after the resume` });
    }
  });

  step('a locked meeting turns a newcomer away', async () => {
    await host.page.getByRole('button', { name: 'Lock meeting', exact: true }).click();
    await host.page.getByRole('button', { name: 'Unlock meeting', exact: true }).waitFor();
    const third = await openBrowser('third');
    others.push(third);
    await third.page.goto(invite);
    await third.page.getByRole('textbox', { name: 'Your name', exact: true }).fill('Carol');
    await third.page.getByRole('button', { name: 'Join', exact: true }).click();
    await third.page.getByText('This meeting is locked', { exact: false }).first().waitFor();
  });

  step('a refused camera and microphone are explained on screen', async () => {
    await host.page.getByRole('button', { name: 'Unlock meeting', exact: true }).click();
    await host.page.getByRole('button', { name: 'Lock meeting', exact: true }).waitFor();
    const denied = await openBrowser('denied', { denyMedia: true });
    others.push(denied);
    await denied.page.goto(invite);
    await denied.page.getByRole('textbox', { name: 'Your name', exact: true }).fill('Dora');
    await denied.page.getByRole('button', { name: 'Join', exact: true }).click();
    await host.page.getByRole('listitem').filter({ hasText: 'Dora' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await denied.page.getByRole('alert').filter({ hasText: 'not allowed to use your camera' }).waitFor();
    await screenshot(denied.page, 'camera-denied');
    await denied.page.getByRole('button', { name: 'Leave', exact: true }).click();
  });

  step('a member who turned the camera off on the join page joins with the microphone only', async () => {
    const eve = await openBrowser('eve');
    others.push(eve);
    await eve.page.goto(invite);
    await eve.page.getByRole('textbox', { name: 'Your name', exact: true }).fill('Eve');
    await eve.page.getByRole('button', { name: 'Camera', exact: true }).click();
    await eve.page.getByRole('button', { name: 'Join', exact: true }).click();
    await host.page.getByRole('listitem').filter({ hasText: 'Eve' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await eve.page.getByRole('button', { name: 'Start video', exact: true }).waitFor();
    await tileOf(host.page, 'Eve').getByRole('img', { name: 'Camera off', exact: true }).waitFor();
    await tileOf(host.page, 'Eve').getByRole('img', { name: 'Microphone on', exact: true }).waitFor();
    const sending = await eventually(() => eve.page.evaluate(() => {
      const pc = window.__pcs.at(-1);
      return pc ? pc.getSenders().filter((x) => x.track).map((x) => x.track.kind) : [];
    }), (kinds) => kinds.length > 0, { what: 'Eve sends something' });
    assert.deepEqual(sending, ['audio'], 'no camera was captured');
    await eve.page.getByRole('button', { name: 'Leave', exact: true }).click();
  });

  step('a removed guest sees it and cannot rejoin', async () => {
    await tileOf(host.page, MARKUP).waitFor();
    await host.page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: MARKUP })
      .getByRole('button', { name: 'Remove', exact: true }).click();
    // The host is told what the ban stops and what it does not, then confirms.
    const confirm = host.page.getByRole('group', { name: `Remove ${MARKUP} and ban them from this meeting?` });
    await confirm.getByText('Anyone new from the same network (IP address) must wait for a host', { exact: false }).waitFor();
    await confirm.getByText('on another network, they would arrive as a new guest', { exact: false }).waitFor();
    await screenshot(host.page, 'host-confirms-removal');
    await confirm.getByRole('button', { name: 'Remove and ban', exact: true }).click();
    await guest.page.getByText('You were removed from the meeting').waitFor();
    await guest.page.getByText('From this network, anyone new has to wait until a host lets them in.', { exact: false }).waitFor();
    await screenshot(guest.page, 'guest-removed');
    await guest.page.goto(invite);
    await guest.page.getByRole('textbox', { name: 'Your name', exact: true }).fill('Mallory');
    await guest.page.getByRole('button', { name: 'Join', exact: true }).click();
    await guest.page.getByText('cannot rejoin', { exact: false }).first().waitFor();
    await eventually(() => tileOf(host.page, MARKUP).count(), (n) => n === 0, { what: 'the removed guest\'s tile goes' });
    assert.deepEqual([...host.errors, ...guest.errors], []);
  });
});
