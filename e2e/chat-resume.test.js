// Chat that survives a reconnect, in a meeting of four: Lin's socket drops,
// and while she is away the host and Mo (who stays connected) each say
// something, the host admits Kim (a commit: a new MLS epoch Lin misses), and
// both say something more. The server keeps that ciphertext for Lin's resume
// window and sends it again on resume among the MLS messages she missed, in
// order, so her page opens all four lines and shows each once, in the order
// they were sent: nothing decrypted anywhere but in the members' pages.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { dropSocket, eventually, hostStartsMeeting, openBrowser, startServer, storySteps, securityCode } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const BEFORE = 'said while you were away';
const MO_BEFORE = 'Mo, also while you were away';
const AFTER = 'said after Kim came in';
const MO_AFTER = 'Mo, after Kim came in';

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

describe('chat sent while a member is away reaches it on resume', () => {
  let server;
  let host;
  let guest;
  let mo;
  let kim;
  let invite;
  const step = storySteps('chat-resume-', () => [['host', host], ['guest', guest], ['mo', mo], ['kim', kim]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    host = await openBrowser('chat-resume-host');
    guest = await openBrowser('chat-resume-guest');
    mo = await openBrowser('chat-resume-mo');
  });

  after(async () => {
    for (const b of [host, guest, mo, kim]) if (b) await b.close();
    if (server) await server.stop('chat-resume-server.log');
  });

  const chatLog = (page) => page.getByRole('log', { name: 'Chat history' });
  /** `page` says `text`, and it is waited for at each of `at`, so the next line is sent after it. */
  async function sayAndWait(page, text, at) {
    await say(page, text);
    for (const p of at) await chatLog(p).getByText(text, { exact: true }).waitFor({ timeout: 20_000 });
  }

  step('the host starts a meeting; Lin and Mo are admitted', async () => {
    invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    await joinAndGetAdmitted(guest.page, invite, 'Lin', host.page);
    await joinAndGetAdmitted(mo.page, invite, 'Mo', host.page);
    await eventually(async () => [await securityCode(host.page), await securityCode(guest.page), await securityCode(mo.page)],
      ([a, b, c]) => a.length > 0 && a === b && b === c, { timeout: 25_000, what: 'host, Lin and Mo in one group' });
    await sayAndWait(guest.page, 'hello before the drop', [host.page, mo.page]);
  });

  step('Lin drops; the host and Mo chat, Kim is admitted (a new epoch), both chat again; on resume Lin reads all four, in order, once', async () => {
    const g = guest.page;
    // Lin's socket drops and reconnects are turned away until the test lets them through.
    // What the server sends Lin after the resume is recorded: ciphertext only.
    let letThrough = false;
    const fromServer = [];
    await g.routeWebSocket(() => true, (ws) => {
      if (!letThrough) {
        ws.close();
        return;
      }
      const real = ws.connectToServer();
      ws.onMessage((m) => real.send(m));
      real.onMessage((m) => {
        fromServer.push(String(m));
        ws.send(m);
      });
    });
    const codeBefore = await securityCode(g);
    await dropSocket(g);
    await g.getByText(/Reconnecting/).first().waitFor();

    await sayAndWait(host.page, BEFORE, [mo.page]);
    await sayAndWait(mo.page, MO_BEFORE, [host.page]);
    kim = await openBrowser('chat-resume-kim');
    await joinAndGetAdmitted(kim.page, invite, 'Kim', host.page);
    await eventually(async () => [await securityCode(host.page), await securityCode(mo.page), await securityCode(kim.page)],
      ([a, b, c]) => a.length > 0 && a === b && b === c && a !== codeBefore, { timeout: 25_000, what: 'Kim in the group (a new epoch)' });
    await sayAndWait(host.page, AFTER, [mo.page, kim.page]);
    await sayAndWait(mo.page, MO_AFTER, [host.page, kim.page]);
    const log = chatLog(g);
    for (const t of [BEFORE, MO_BEFORE, AFTER, MO_AFTER]) assert.equal(await log.getByText(t, { exact: true }).count(), 0, `nothing reached Lin while away: ${t}`);

    letThrough = true;
    for (const t of [BEFORE, MO_BEFORE, AFTER, MO_AFTER]) await log.getByText(t, { exact: true }).waitFor({ timeout: 25_000 });
    await eventually(async () => [await securityCode(g), await securityCode(host.page), await securityCode(mo.page)],
      ([a, b, c]) => a === b && b === c && a !== codeBefore, { what: 'Lin in the new epoch' });
    const lines = await log.getByRole('listitem').allInnerTexts();
    const sent = ['hello before the drop', BEFORE, MO_BEFORE, AFTER, MO_AFTER];
    const at = sent.map((t) => lines.findIndex((l) => l.includes(t)));
    assert.deepEqual([...at].sort((x, y) => x - y), at, `in the order sent: ${JSON.stringify(lines)}`);
    for (const t of sent) assert.equal(lines.filter((l) => l.includes(t)).length, 1, `shown once: ${t} in ${JSON.stringify(lines)}`);
    assert.ok(fromServer.length > 0, 'the resumed socket was recorded');
    for (const t of sent) assert.ok(!fromServer.some((m) => m.includes(t)), `the server sent Lin no plaintext of: ${t}`);
    // Live again: Lin's own line reaches the other three.
    await sayAndWait(g, 'back again', [host.page, mo.page, kim.page]);
  });
});
