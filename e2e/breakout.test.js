// Breakout rooms with four browsers (issue 18: a meeting of at least four),
// by accessible names: the host opens two rooms and puts Bob in Room 1,
// Carol and Dan in Room 2. Each room is a meeting of its own with its own MLS
// group: Carol and Dan share a security code that differs from Bob's and the
// main meeting's, and each decodes the other's video while Bob, alone,
// decodes none. When the host visits Room 1, Bob decodes the host's video
// and the Room 2 pair still decode only each other. The host comes back,
// sends a message to every room and closes them with a countdown: everyone
// is back in the main meeting, four members in one group with one code.
// Then rooms assigned automatically, with returning allowed: Bob comes back
// by "Return to main room" while the others stay until the rooms close.

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
    for (const who of ['host', 'bob', 'carol', 'dan']) b[who] = await openBrowser(`breakout-${who}`);
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('breakout-server.log');
  });

  const codes = () => Promise.all(all().map(([, x]) => securityCode(x.page)));
  const allEqual = (cs) => cs[0].length > 0 && cs.every((c) => c === cs[0]);
  const GUESTS = ['bob', 'carol', 'dan'];
  /** The inbound video streams a page has decoded frames of. */
  const decodedVideos = async (page) => Object.values((await received(page)).streams).filter((s) => s.kind === 'video' && s.count > 0).length;

  step('a host and three guests meet in one encrypted group', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    for (const [who, name] of [['bob', 'Bob'], ['carol', 'Carol'], ['dan', 'Dan']]) {
      const p = b[who].page;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await b.host.page.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click();
      await controls(p).waitFor();
    }
    await eventually(codes, allEqual, { timeout: 30_000, what: 'one security code for all four' });
  });

  let mainCode;
  step('the host opens two rooms, Bob alone in Room 1 and Carol with Dan in Room 2: each room has a code of its own', async () => {
    [mainCode] = await codes();
    const host = b.host.page;
    await controls(host).getByRole('button', { name: 'Breakout rooms', exact: true }).click();
    const dialog = host.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('spinbutton', { name: 'Number of rooms', exact: true }).fill('2');
    await dialog.getByRole('combobox', { name: 'Room for Bob', exact: true }).selectOption({ label: 'Room 1' });
    await dialog.getByRole('combobox', { name: 'Room for Carol', exact: true }).selectOption({ label: 'Room 2' });
    await dialog.getByRole('combobox', { name: 'Room for Dan', exact: true }).selectOption({ label: 'Room 2' });
    await dialog.getByRole('button', { name: 'Open rooms', exact: true }).click();
    await dialog.getByRole('list', { name: 'Open rooms' }).getByRole('listitem').nth(1).waitFor();

    await roomBanner(b.bob.page, 'Room 1').waitFor({ timeout: 20_000 });
    await roomBanner(b.carol.page, 'Room 2').waitFor({ timeout: 20_000 });
    await roomBanner(b.dan.page, 'Room 2').waitFor({ timeout: 20_000 });
    const [bobCode, carolCode, danCode] = await eventually(
      () => Promise.all(GUESTS.map((who) => securityCode(b[who].page))),
      ([x, y, z]) => x.length > 0 && y.length > 0 && x !== mainCode && y !== mainCode && y === z,
      { timeout: 30_000, what: 'Bob in Room 1\'s group, Carol and Dan in Room 2\'s' });
    assert.equal(carolCode, danCode, 'room-mates share one group');
    assert.notEqual(bobCode, carolCode, 'two rooms, two groups');
    assert.notEqual(carolCode, mainCode, 'Room 2 is not the main meeting\'s group');
    // Rooms are other meetings: other URLs; room-mates share one.
    assert.notEqual(new URL(b.bob.page.url()).pathname, new URL(b.carol.page.url()).pathname);
    assert.equal(new URL(b.dan.page.url()).pathname, new URL(b.carol.page.url()).pathname);
    assert.notEqual(new URL(b.bob.page.url()).pathname, new URL(invite).pathname);
    await screenshot(b.bob.page, 'breakout-room1');
  });

  step('Carol and Dan decode each other\'s video; Bob, alone in Room 1, decodes none', async () => {
    const members = (page) => page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem');
    for (const [who, mate] of [['carol', 'Dan'], ['dan', 'Carol']]) {
      await eventually(() => members(b[who].page).filter({ hasText: mate }).count(), (n) => n === 1,
        { timeout: 20_000, what: `${who} lists the room-mate` });
      await eventually(() => decodedVideos(b[who].page), (n) => n === 1,
        { timeout: 30_000, what: `${who} decodes the room-mate's video` });
    }
    const [carolFirst, danFirst] = await Promise.all([received(b.carol.page), received(b.dan.page)]);
    await eventually(() => received(b.carol.page), (r) => gained(carolFirst, r).framesDecoded > 10, { timeout: 30_000, what: 'Carol keeps decoding Dan' });
    await eventually(() => received(b.dan.page), (r) => gained(danFirst, r).framesDecoded > 10, { timeout: 30_000, what: 'Dan keeps decoding Carol' });
    for (const who of ['carol', 'dan']) {
      assert.equal(await decodedVideos(b[who].page), 1, `${who} decodes one video: the room-mate's, no one from Room 1 or the main meeting`);
      assert.equal(await members(b[who].page).filter({ hasText: 'Bob' }).count(), 0, `${who} does not list Bob`);
    }
    const bobNow = await received(b.bob.page);
    assert.equal(bobNow.framesDecoded, 0, `Bob, alone in Room 1, decodes no video: ${JSON.stringify(bobNow)}`);
    await screenshot(b.carol.page, 'breakout-room2');
  });

  step('the host visits Room 1: Bob decodes the host\'s video, Carol and Dan in Room 2 decode only each other', async () => {
    const dialog = b.host.page.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('button', { name: 'Visit Room 1', exact: true }).click();
    await roomBanner(b.host.page, 'Room 1').waitFor({ timeout: 20_000 });
    await eventually(() => Promise.all([securityCode(b.host.page), securityCode(b.bob.page)]),
      ([a, x]) => a.length > 0 && a === x, { timeout: 30_000, what: 'host and Bob in Room 1\'s group' });
    const [carolBefore, danBefore] = await Promise.all([received(b.carol.page), received(b.dan.page)]);
    const bobFirst = await eventually(() => received(b.bob.page), (r) => r.framesDecoded > 10,
      { timeout: 30_000, what: 'Bob decodes the visiting host\'s video' });
    await eventually(() => received(b.host.page), (r) => r.framesDecoded > 10, { timeout: 30_000, what: 'the host decodes Bob' });
    await eventually(() => received(b.bob.page), (r) => gained(bobFirst, r).framesDecoded > 10, { what: 'Bob keeps decoding' });
    const bobVideos = Object.values((await received(b.bob.page)).streams).filter((s) => s.kind === 'video' && s.count > 0);
    assert.equal(bobVideos.length, 1, 'Bob decodes one video: his room-mate\'s');
    for (const [who, before] of [['carol', carolBefore], ['dan', danBefore]]) {
      const now = await received(b[who].page);
      assert.equal(await decodedVideos(b[who].page), 1, `${who} decodes only the room-mate, not Room 1's host or Bob: ${JSON.stringify(now)}`);
      assert.deepEqual(Object.keys(now.streams).filter((id) => now.streams[id].kind === 'video' && now.streams[id].count > 0),
        Object.keys(before.streams).filter((id) => before.streams[id].kind === 'video' && before.streams[id].count > 0),
        `${who}'s decoded video is the same stream as before the visit`);
    }
    assert.notEqual(await securityCode(b.carol.page), await securityCode(b.bob.page));
    assert.equal(await securityCode(b.carol.page), await securityCode(b.dan.page));
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
    for (const who of GUESTS) {
      await b[who].page.getByRole('status').filter({ hasText: 'Message from ada: <b>Wrap up</b> in a minute' }).first().waitFor();
    }
    await dialog.getByRole('spinbutton', { name: 'Close after (seconds)', exact: true }).fill('3');
    await dialog.getByRole('button', { name: 'Close rooms', exact: true }).click();
    for (const who of GUESTS) {
      await b[who].page.getByRole('status').filter({ hasText: /Breakout rooms close in \d+ second/ }).first().waitFor();
    }
    for (const who of GUESTS) {
      await eventually(() => b[who].page.url(), (u) => new URL(u).pathname === new URL(invite).pathname,
        { timeout: 20_000, what: `${who} back at the main meeting` });
      await controls(b[who].page).waitFor();
    }
    const [a, ...rest] = await eventually(codes, allEqual, { timeout: 30_000, what: 'one security code for all four again' });
    for (const x of rest) assert.equal(a, x);
    assert.notEqual(a, mainCode, 'a fresh epoch');
    for (const [who, x2] of all()) {
      const inGroup = x2.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true });
      await eventually(() => inGroup.count(), (n) => n === 4, { timeout: 30_000, what: `${who} sees four members in the group` });
    }
    assert.equal(await dialog.getByRole('list', { name: 'Open rooms' }).count(), 0, 'no rooms open');
    await screenshot(b.host.page, 'breakout-back');
  });

  step('rooms assigned automatically, returning allowed: Bob goes back on his own, the others when they close', async () => {
    const host = b.host.page;
    const dialog = host.getByRole('dialog', { name: 'Breakout rooms' });
    await dialog.getByRole('spinbutton', { name: 'Number of rooms', exact: true }).fill('2');
    await dialog.getByRole('combobox', { name: 'Room for Dan', exact: true }).waitFor();
    await dialog.getByRole('button', { name: 'Assign automatically', exact: true }).click();
    const picked = await Promise.all(['Bob', 'Carol', 'Dan'].map((n) => dialog.getByRole('combobox', { name: `Room for ${n}`, exact: true }).inputValue()));
    assert.deepEqual([...new Set(picked)].sort(), ['0', '1'], `both rooms used: ${picked}`);
    await dialog.getByRole('checkbox', { name: 'Let participants return to the main room', exact: true }).check();
    await dialog.getByRole('button', { name: 'Open rooms', exact: true }).click();
    for (const [i, who] of GUESTS.entries()) {
      await roomBanner(b[who].page, picked[i] === '0' ? 'Room 1' : 'Room 2').waitFor({ timeout: 20_000 });
    }
    await b.bob.page.getByRole('button', { name: 'Return to main room', exact: true }).click();
    await eventually(() => b.bob.page.url(), (u) => new URL(u).pathname === new URL(invite).pathname,
      { timeout: 20_000, what: 'Bob back at the main meeting' });
    await eventually(() => Promise.all([securityCode(host), securityCode(b.bob.page)]),
      ([a, x]) => a.length > 0 && a === x, { timeout: 30_000, what: 'host and Bob in the main group' });
    assert.notEqual(await securityCode(b.carol.page), await securityCode(host), 'Carol is still in her room');
    assert.notEqual(await securityCode(b.dan.page), await securityCode(host), 'Dan is still in his room');
    await dialog.getByRole('spinbutton', { name: 'Close after (seconds)', exact: true }).fill('1');
    await dialog.getByRole('button', { name: 'Close rooms', exact: true }).click();
    for (const who of ['carol', 'dan']) {
      await eventually(() => b[who].page.url(), (u) => new URL(u).pathname === new URL(invite).pathname,
        { timeout: 20_000, what: `${who} back at the main meeting` });
    }
    await eventually(codes, allEqual, { timeout: 30_000, what: 'one security code for all four once more' });
  });
});
