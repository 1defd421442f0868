// Breakout rooms with three browsers, by accessible names: the host opens
// two rooms and puts Bob in Room 1 and Carol in Room 2. Each room is a
// meeting of its own with its own MLS group, so each guest shows its room
// and a security code of its own; when the host visits Room 1, Bob decodes
// the host's video and Carol, alone in Room 2, decodes none. The host comes
// back, sends a message to every room and closes them with a countdown:
// everyone is back in the main meeting, in one group with one security code.
// Then rooms assigned automatically, with returning allowed: Bob comes back
// by "Return to main room" while Carol stays until the rooms close.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { eventually, gained, hostStartsMeeting, openBrowser, received, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';

function securityCode(page) {
  return page.getByRole('region', { name: 'Security', exact: true }).locator('[aria-label="Security code"]')
    .evaluate((el) => el.dataset.code || '').catch(() => '');
}

const controls = (page) => page.getByRole('toolbar', { name: 'Meeting controls' });
const roomBanner = (page, room) => page.getByRole('status').filter({ hasText: `You are in breakout room ${room}` });

describe('breakout rooms, each its own encrypted meeting', () => {
  let server;
  let invite;
  const b = {};
  const all = () => Object.entries(b);
  const step = storySteps('breakout-', all);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    for (const who of ['host', 'bob', 'carol']) b[who] = await openBrowser(`breakout-${who}`);
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('breakout-server.log');
  });

  const codes = () => Promise.all(all().map(([, x]) => securityCode(x.page)));

  step('a host and two guests meet in one encrypted group', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    for (const [who, name] of [['bob', 'Bob'], ['carol', 'Carol']]) {
      const p = b[who].page;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await b.host.page.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click();
      await controls(p).waitFor();
    }
    await eventually(codes, ([a, x, y]) => a.length > 0 && a === x && a === y, { timeout: 30_000, what: 'one security code for all three' });
  });

  let mainCode;
  step('the host opens two rooms with one guest in each; each guest sees its room and a code of its own', async () => {
    [mainCode] = await codes();
    const host = b.host.page;
    await controls(host).getByRole('button', { name: 'Breakout rooms', exact: true }).click();
    const dialog = host.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('spinbutton', { name: 'Number of rooms', exact: true }).fill('2');
    await dialog.getByRole('combobox', { name: 'Room for Bob', exact: true }).selectOption({ label: 'Room 1' });
    await dialog.getByRole('combobox', { name: 'Room for Carol', exact: true }).selectOption({ label: 'Room 2' });
    await dialog.getByRole('button', { name: 'Open rooms', exact: true }).click();
    await dialog.getByRole('list', { name: 'Open rooms' }).getByRole('listitem').nth(1).waitFor();

    await roomBanner(b.bob.page, 'Room 1').waitFor({ timeout: 20_000 });
    await roomBanner(b.carol.page, 'Room 2').waitFor({ timeout: 20_000 });
    const [bobCode, carolCode] = await eventually(
      () => Promise.all([securityCode(b.bob.page), securityCode(b.carol.page)]),
      ([x, y]) => x.length > 0 && y.length > 0 && x !== mainCode && y !== mainCode,
      { timeout: 30_000, what: 'each guest in its room\'s own group' });
    assert.notEqual(bobCode, carolCode, 'two rooms, two groups');
    // Rooms are other meetings: other URLs, and only one member listed.
    assert.notEqual(new URL(b.bob.page.url()).pathname, new URL(b.carol.page.url()).pathname);
    assert.notEqual(new URL(b.bob.page.url()).pathname, new URL(invite).pathname);
    await screenshot(b.bob.page, 'breakout-room1');
  });

  step('the host visits Room 1: Bob decodes the host\'s video, Carol in Room 2 decodes nothing', async () => {
    const dialog = b.host.page.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('button', { name: 'Visit Room 1', exact: true }).click();
    await roomBanner(b.host.page, 'Room 1').waitFor({ timeout: 20_000 });
    await eventually(() => Promise.all([securityCode(b.host.page), securityCode(b.bob.page)]),
      ([a, x]) => a.length > 0 && a === x, { timeout: 30_000, what: 'host and Bob in Room 1\'s group' });
    const carolBefore = await received(b.carol.page);
    const bobFirst = await eventually(() => received(b.bob.page), (r) => r.framesDecoded > 10,
      { timeout: 30_000, what: 'Bob decodes the visiting host\'s video' });
    await eventually(() => received(b.host.page), (r) => r.framesDecoded > 10, { timeout: 30_000, what: 'the host decodes Bob' });
    await eventually(() => received(b.bob.page), (r) => gained(bobFirst, r).framesDecoded > 10, { what: 'Bob keeps decoding' });
    const bobVideos = Object.values((await received(b.bob.page)).streams).filter((s) => s.kind === 'video' && s.count > 0);
    assert.equal(bobVideos.length, 1, 'Bob decodes one video: his room-mate\'s');
    const carolNow = await received(b.carol.page);
    assert.equal(carolNow.framesDecoded, 0, `Carol, alone in Room 2, decodes no video: ${JSON.stringify(carolNow)}`);
    assert.equal(gained(carolBefore, carolNow).framesDecoded, 0);
    assert.notEqual(await securityCode(b.carol.page), await securityCode(b.bob.page));
    await screenshot(b.host.page, 'breakout-visit');
  });

  step('the host returns, messages every room, and closes them with a countdown: all are back with one code', async () => {
    const host = b.host.page;
    await host.getByRole('button', { name: 'Return to main room', exact: true }).click();
    await controls(host).getByRole('button', { name: 'Breakout rooms', exact: true }).waitFor({ timeout: 20_000 });
    await controls(host).getByRole('button', { name: 'Breakout rooms', exact: true }).click();
    const dialog = host.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('list', { name: 'Open rooms' }).getByRole('listitem').nth(1).waitFor();
    await dialog.getByRole('textbox', { name: 'Message to all rooms', exact: true }).fill('<b>Wrap up</b> in a minute');
    await dialog.getByRole('button', { name: 'Broadcast', exact: true }).click();
    for (const who of ['bob', 'carol']) {
      await b[who].page.getByRole('status').filter({ hasText: 'Message from ada: <b>Wrap up</b> in a minute' }).first().waitFor();
    }
    await dialog.getByRole('spinbutton', { name: 'Close after (seconds)', exact: true }).fill('3');
    await dialog.getByRole('button', { name: 'Close rooms', exact: true }).click();
    for (const who of ['bob', 'carol']) {
      await b[who].page.getByRole('status').filter({ hasText: /Breakout rooms close in \d+ second/ }).first().waitFor();
    }
    for (const who of ['bob', 'carol']) {
      await eventually(() => b[who].page.url(), (u) => new URL(u).pathname === new URL(invite).pathname,
        { timeout: 20_000, what: `${who} back at the main meeting` });
      await controls(b[who].page).waitFor();
    }
    const [a, x, y] = await eventually(codes, ([c1, c2, c3]) => c1.length > 0 && c1 === c2 && c1 === c3,
      { timeout: 30_000, what: 'one security code for all three again' });
    assert.equal(a, x);
    assert.equal(a, y);
    assert.notEqual(a, mainCode, 'a fresh epoch');
    for (const [who, x2] of all()) {
      const inGroup = x2.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true });
      await eventually(() => inGroup.count(), (n) => n === 3, { timeout: 30_000, what: `${who} sees three members in the group` });
    }
    assert.equal(await dialog.getByRole('list', { name: 'Open rooms' }).count(), 0, 'no rooms open');
    await screenshot(b.host.page, 'breakout-back');
  });

  step('rooms assigned automatically, returning allowed: Bob goes back on his own, Carol when they close', async () => {
    const host = b.host.page;
    const dialog = host.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('spinbutton', { name: 'Number of rooms', exact: true }).fill('2');
    await dialog.getByRole('combobox', { name: 'Room for Carol', exact: true }).waitFor();
    await dialog.getByRole('button', { name: 'Assign automatically', exact: true }).click();
    const picked = await Promise.all(['Bob', 'Carol'].map((n) => dialog.getByRole('combobox', { name: `Room for ${n}`, exact: true }).inputValue()));
    assert.deepEqual([...picked].sort(), ['0', '1'], 'one guest in each room');
    await dialog.getByRole('checkbox', { name: 'Let participants return to the main room', exact: true }).check();
    await dialog.getByRole('button', { name: 'Open rooms', exact: true }).click();
    const bobRoom = picked[0] === '0' ? 'Room 1' : 'Room 2';
    const carolRoom = picked[1] === '0' ? 'Room 1' : 'Room 2';
    await roomBanner(b.bob.page, bobRoom).waitFor({ timeout: 20_000 });
    await roomBanner(b.carol.page, carolRoom).waitFor({ timeout: 20_000 });
    await b.bob.page.getByRole('button', { name: 'Return to main room', exact: true }).click();
    await eventually(() => b.bob.page.url(), (u) => new URL(u).pathname === new URL(invite).pathname,
      { timeout: 20_000, what: 'Bob back at the main meeting' });
    await eventually(() => Promise.all([securityCode(host), securityCode(b.bob.page)]),
      ([a, x]) => a.length > 0 && a === x, { timeout: 30_000, what: 'host and Bob in the main group' });
    assert.notEqual(await securityCode(b.carol.page), await securityCode(host), 'Carol is still in her room');
    await dialog.getByRole('spinbutton', { name: 'Close after (seconds)', exact: true }).fill('1');
    await dialog.getByRole('button', { name: 'Close rooms', exact: true }).click();
    await eventually(() => b.carol.page.url(), (u) => new URL(u).pathname === new URL(invite).pathname,
      { timeout: 20_000, what: 'Carol back at the main meeting' });
    await eventually(codes, ([c1, c2, c3]) => c1.length > 0 && c1 === c2 && c1 === c3,
      { timeout: 30_000, what: 'one security code for all three once more' });
  });
});
