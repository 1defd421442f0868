// Scheduling (issue 18): the host schedules a meeting from the dashboard's
// form, sees it under "Upcoming meetings", downloads its .ics calendar file
// (RFC 5545, with the invite link and so the passcode, which the page says),
// and, with "Guests can join before a host" off, a guest who comes first
// waits with a clear message until the host starts the meeting; three such
// guests, and all four are then in one encrypted group.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe } from 'node:test';
import { eventually, openBrowser, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const TITLE = 'Review; <b>Q1</b>, plans \\ goals';

/** Tomorrow at 10:30 in the browser's time zone, as a datetime-local value. */
function tomorrowAtHalfTen() {
  const d = new Date(Date.now() + 24 * 3600 * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T10:30`;
}

describe('scheduled meetings: upcoming list, calendar file, join before host', () => {
  let server;
  let invite;
  const b = {};
  const step = storySteps('scheduling-', () => Object.entries(b));

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    b.host = await openBrowser('scheduling-host');
    b.guest = await openBrowser('scheduling-guest');
    b.hal = await openBrowser('scheduling-hal');
    b.ivy = await openBrowser('scheduling-ivy');
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('scheduling-server.log');
  });

  step('the host schedules a meeting for tomorrow, and the dashboard lists it as upcoming', async () => {
    const p = b.host.page;
    await p.goto(`${server.url}/signin`);
    await p.getByRole('textbox', { name: 'Username', exact: true }).fill(HOST);
    await p.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    await p.getByRole('button', { name: 'New meeting', exact: true }).click();
    const dialog = p.getByRole('dialog', { name: 'New meeting' });
    await dialog.getByRole('textbox', { name: 'Title', exact: true }).fill(TITLE);
    await dialog.getByLabel('Starts', { exact: true }).fill(tomorrowAtHalfTen());
    await dialog.getByRole('spinbutton', { name: 'Duration (minutes)', exact: true }).fill('45');
    await dialog.getByRole('switch', { name: 'Waiting room', exact: true }).uncheck();
    await dialog.getByRole('switch', { name: 'Guests can join before a host', exact: true }).uncheck();
    await dialog.getByRole('button', { name: 'Create meeting', exact: true }).click();
    const upcoming = p.getByRole('region', { name: 'Upcoming meetings' });
    await upcoming.getByRole('listitem').filter({ hasText: TITLE }).waitFor();
    assert.equal(await upcoming.getByRole('listitem').count(), 1);
    assert.match(await upcoming.textContent(), /holds the invite link and with it the passcode/);
    invite = (await p.getByLabel('Invite link', { exact: true }).first().textContent()).trim();
    assert.match(invite, /#p=/);
    await screenshot(p, 'scheduling-dashboard');
  });

  step('the calendar file downloads, and holds the event with the invite link', async () => {
    const p = b.host.page;
    const upcoming = p.getByRole('region', { name: 'Upcoming meetings' });
    const [download] = await Promise.all([
      p.waitForEvent('download'),
      upcoming.getByRole('link', { name: 'Add to calendar (.ics, contains the passcode)' }).click(),
    ]);
    assert.match(download.suggestedFilename(), /\.ics$/);
    const text = fs.readFileSync(await download.path(), 'utf8');
    assert.ok(text.startsWith('BEGIN:VCALENDAR\r\n'), text.slice(0, 40));
    assert.ok(!text.replaceAll('\r\n', '').includes('\n'), 'CRLF line endings only');
    for (const line of text.split('\r\n')) assert.ok(Buffer.byteLength(line) <= 75, `folded: ${line}`);
    const unfolded = text.replaceAll('\r\n ', '');
    const prop = (name) => unfolded.split('\r\n').find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1);
    assert.equal(prop('URL'), invite);
    assert.equal(prop('SUMMARY'), 'Review\\; <b>Q1</b>\\, plans \\\\ goals');
    assert.match(prop('DTSTART'), /^\d{8}T\d{6}Z$/);
    assert.match(prop('DTEND'), /^\d{8}T\d{6}Z$/);
    assert.ok(prop('UID') && prop('DTSTAMP'), 'UID and DTSTAMP');
    assert.equal(unfolded.split('BEGIN:VEVENT').length - 1, 1);
  });

  step('three guests who come before the host wait, told why, and are in once the host starts: a meeting of four', async () => {
    const guests = [[b.guest.page, 'Grace'], [b.hal.page, 'Hal'], [b.ivy.page, 'Ivy']];
    for (const [g, name] of guests) {
      await g.goto(invite);
      await g.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await g.getByRole('button', { name: 'Join', exact: true }).click();
      await g.getByRole('heading', { name: 'The meeting has not started yet' }).waitFor();
    }
    await b.host.page.getByRole('button', { name: 'Start', exact: true }).first().click();
    await b.host.page.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    for (const [g] of guests) await g.getByRole('toolbar', { name: 'Meeting controls' }).waitFor({ timeout: 15_000 });
    for (const [who, x] of Object.entries(b)) {
      const inGroup = x.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true });
      await eventually(() => inGroup.count(), (n) => n === 4, { timeout: 30_000, what: `${who} sees four members in the group` });
    }
    for (const [who, x] of Object.entries(b)) {
      assert.deepEqual(x.alerts, [], `${who}: no dialog`);
      assert.deepEqual(x.errors, [], `${who}: no page error`);
    }
  });
});
