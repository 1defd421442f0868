// Chat that survives a reconnect: the guest's socket drops, and while it is
// away the host says something, admits Kim (a commit: a new MLS epoch the
// guest misses) and says something more. The server keeps that ciphertext
// for the guest's resume window and sends it again on resume among the MLS
// messages it missed, in order, so the guest's page opens both lines and
// shows them in its chat history: nothing decrypted anywhere but there.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { dropSocket, eventually, hostStartsMeeting, openBrowser, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const BEFORE = 'said while you were away';
const AFTER = 'said after Kim came in';

async function joinAndGetAdmitted(page, link, name, hostPage) {
  await page.goto(link);
  await page.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await hostPage.getByRole('listitem').filter({ hasText: name }).getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
  await page.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
}

async function say(page, text) {
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
}

function securityCode(page) {
  return page.getByRole('region', { name: 'Security', exact: true }).locator('[aria-label="Security code"]')
    .evaluate((el) => el.dataset.code || '');
}

describe('chat sent while a member is away reaches it on resume', () => {
  let server;
  let host;
  let guest;
  let kim;
  let invite;
  const step = storySteps('chat-resume-', () => [['host', host], ['guest', guest], ['kim', kim]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    host = await openBrowser('chat-resume-host');
    guest = await openBrowser('chat-resume-guest');
  });

  after(async () => {
    for (const b of [host, guest, kim]) if (b) await b.close();
    if (server) await server.stop('chat-resume-server.log');
  });

  step('the host starts a meeting and Lin is admitted', async () => {
    invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    await joinAndGetAdmitted(guest.page, invite, 'Lin', host.page);
    await eventually(async () => [await securityCode(host.page), await securityCode(guest.page)],
      ([a, b]) => a.length > 0 && a === b, { timeout: 25_000, what: 'host and Lin in one group' });
    await say(guest.page, 'hello before the drop');
    await host.page.getByRole('log', { name: 'Chat history' }).getByText('hello before the drop', { exact: true }).waitFor();
  });

  step('Lin drops; the host chats, admits Kim (a new epoch) and chats again; on resume Lin reads both', async () => {
    const g = guest.page;
    // Lin's socket drops and reconnects are turned away until the test lets them through.
    let letThrough = false;
    await g.routeWebSocket(() => true, (ws) => {
      if (!letThrough) {
        ws.close();
        return;
      }
      const real = ws.connectToServer();
      ws.onMessage((m) => real.send(m));
      real.onMessage((m) => ws.send(m));
    });
    const codeBefore = await securityCode(g);
    await dropSocket(g);
    await g.getByText(/Reconnecting/).first().waitFor();

    await say(host.page, BEFORE);
    kim = await openBrowser('chat-resume-kim');
    await joinAndGetAdmitted(kim.page, invite, 'Kim', host.page);
    await eventually(async () => [await securityCode(host.page), await securityCode(kim.page)],
      ([a, b]) => a.length > 0 && a === b && a !== codeBefore, { timeout: 25_000, what: 'Kim in the group (a new epoch)' });
    await say(host.page, AFTER);
    await kim.page.getByRole('log', { name: 'Chat history' }).getByText(AFTER, { exact: true }).waitFor();
    const log = g.getByRole('log', { name: 'Chat history' });
    assert.equal(await log.getByText(BEFORE, { exact: true }).count(), 0, 'nothing reached Lin while away');

    letThrough = true;
    await log.getByText(BEFORE, { exact: true }).waitFor({ timeout: 25_000 });
    await log.getByText(AFTER, { exact: true }).waitFor({ timeout: 25_000 });
    const lines = await log.getByRole('listitem').allInnerTexts();
    const at = (t) => lines.findIndex((l) => l.includes(t));
    assert.ok(at('hello before the drop') < at(BEFORE) && at(BEFORE) < at(AFTER), `in order: ${JSON.stringify(lines)}`);
    assert.equal(lines.filter((l) => l.includes(BEFORE)).length, 1, 'shown once');
    await eventually(async () => [await securityCode(g), await securityCode(host.page)],
      ([a, b]) => a === b && a !== codeBefore, { what: 'Lin in the new epoch' });
    // Live again: Lin's own line reaches the others.
    await say(g, 'back again');
    await kim.page.getByRole('log', { name: 'Chat history' }).getByText('back again', { exact: true }).waitFor();
  });
});
