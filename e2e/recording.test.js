// A recording that everyone sees: a host and two browser guests are in a
// meeting when the real `conclave record` knocks. The host sees a recorder,
// named in full and marked "Records the meeting", and admits it by name;
// every page then shows "Recording" in its header and a notice, and a guest
// still in the waiting room is told the meeting is recorded before anyone
// lets them in. When the recorder leaves, the indicator goes from every page
// (and the waiting screen). Names with markup stay text throughout.
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, eventually, hostStartsMeeting, openBrowser, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'grace';
const PASSWORD = 'correct horse battery staple';
/** The recorder's display name: markup that must be shown as text. */
const RECORDER = '<img src=x onerror=alert(1)> Minutes taker';
const STARTED = 'Recording started: this meeting is being recorded.';
const STOPPED = 'Recording stopped.';

/** The meeting-wide indicator (a live status region named "Recording"). */
const indicator = (page) => page.getByRole('status', { name: 'Recording', exact: true });

describe('a recording everyone sees', () => {
  let server;
  let host;
  let lin;
  let bo;
  let wen;
  let invite;
  let rec = null;
  let recExit = null;
  let recLog = '';
  let recDir = null;
  const step = storySteps('recording-', () => [['host', host], ['lin', lin], ['bo', bo], ['wen', wen]]);
  const members = () => [['host', host], ['lin', lin], ['bo', bo]];

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    [host, lin, bo, wen] = await Promise.all(['host', 'lin', 'bo', 'wen'].map((n) => openBrowser(`recording-${n}`)));
  });

  after(async () => {
    if (rec && rec.exitCode === null) rec.kill('SIGKILL');
    for (const b of [host, lin, bo, wen]) if (b) await b.close();
    if (server) await server.stop('recording-server.log');
    if (recDir) fs.rmSync(recDir, { recursive: true, force: true });
  });

  step('a host and two browser guests are in the meeting, nothing recorded', async () => {
    invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    for (const [name, b] of [['Lin', lin], ['Bo', bo]]) {
      await b.page.goto(invite);
      await b.page.getByRole('textbox', { name: 'Your name', exact: true }).fill(name);
      await b.page.getByRole('button', { name: 'Join', exact: true }).click();
      const waiting = b.page.getByRole('region', { name: 'Waiting room', exact: true });
      await waiting.waitFor();
      assert.equal(await indicator(b.page).count(), 0, `${name} is not told of a recording that is not there`);
      await host.page.getByRole('list', { name: 'People waiting' }).getByRole('listitem').filter({ hasText: name })
        .getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
      await b.page.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    }
    for (const [who, b] of members()) assert.equal(await indicator(b.page).count(), 0, `${who}: no recording indicator yet`);
  });

  step('conclave record knocks; the host sees a recorder, named in full', async () => {
    recDir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-recording-'));
    rec = spawn(BINARY, ['record', invite, '--out', recDir, '--name', RECORDER], { stdio: ['ignore', 'pipe', 'pipe'] });
    rec.stdout.on('data', (d) => { recLog += d; });
    rec.stderr.on('data', (d) => { recLog += d; });
    recExit = new Promise((resolve) => rec.on('exit', (code, signal) => resolve({ code, signal })));

    const row = host.page.getByRole('list', { name: 'People waiting' }).getByRole('listitem').filter({ hasText: 'Records the meeting' });
    await row.waitFor({ timeout: 20_000 });
    await host.page.getByText(`${RECORDER} is waiting to join, to record the meeting.`, { exact: true }).waitFor();
    // The badge says it in full, and the name is all there, as text.
    assert.ok(await row.getByText('Records the meeting', { exact: true }).isVisible(), 'the recorder badge is visible');
    const name = row.getByText(RECORDER, { exact: true });
    assert.ok(await name.isVisible(), 'the recorder\'s name is shown as text');
    const cut = await name.evaluate((el) => el.scrollWidth > el.clientWidth + 1);
    assert.equal(cut, false, 'the recorder\'s name is not cut short');
    assert.equal(await host.page.locator('.people img').count(), 0, 'markup in the name made no element');
    // Waiting is not recording: nobody sees the indicator yet.
    for (const [who, b] of members()) assert.equal(await indicator(b.page).count(), 0, `${who}: no indicator for a recorder still waiting`);
    await screenshot(host.page, 'recording-host-waiting-panel');

    await row.getByRole('button', { name: 'Admit', exact: true }).click();
  });

  step('every page shows the Recording indicator and a notice', async () => {
    for (const [who, b] of members()) {
      await b.page.getByText(STARTED, { exact: true }).waitFor({ timeout: 15_000 });
      await indicator(b.page).waitFor();
      assert.ok(await indicator(b.page).isVisible(), `${who} shows the recording indicator`);
      assert.ok(await indicator(b.page).getByText('Recording', { exact: true }).isVisible(), `${who}: the word, beside its dot`);
      // The participants panel names the recorder as one, under its name.
      const member = b.page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: 'Minutes taker' });
      await member.getByText('Records the meeting · Guest', { exact: true }).waitFor();
    }
    await screenshot(lin.page, 'recording-guest-indicator');
  });

  step('a guest in the waiting room is told the meeting is recorded', async () => {
    const p = wen.page;
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Wen');
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    const waiting = p.getByRole('region', { name: 'Waiting room', exact: true });
    await waiting.waitFor();
    await indicator(p).waitFor();
    await waiting.getByText('This meeting is being recorded. Once you are admitted, what you say and show is recorded.', { exact: true }).waitFor();
    await p.getByText('This meeting is being recorded.', { exact: true }).waitFor(); // the notice
    // Still waiting: nobody admitted Wen, and she learned nothing else (no names, no roster).
    assert.equal(await p.getByRole('toolbar', { name: 'Meeting controls' }).count(), 0);
    assert.equal(await p.getByText('Minutes taker').count(), 0, 'the recorder\'s name does not reach the waiting room');
    await screenshot(p, 'recording-waiting-room');
  });

  step('when the recorder leaves, the indicator goes from every page', async () => {
    rec.kill('SIGINT');
    const exited = await Promise.race([recExit, new Promise((r) => setTimeout(() => r(null), 20_000))]);
    const tile = host.page.locator('li.tile').filter({ has: host.page.locator('.tile-name', { hasText: 'Minutes taker' }) });
    const gone = await eventually(() => tile.count(), (n) => n === 0, { timeout: 10_000, what: 'the recorder leaves' }).then(() => true, () => false);
    if (!gone) {
      // It did not leave cleanly: the host removes it, which ends its seat now.
      console.log(`recorder did not leave on SIGINT (exit ${JSON.stringify(exited)}); the host removes it`);
      const row = host.page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: 'Minutes taker' });
      await row.hover();
      await row.getByRole('button', { name: 'Remove', exact: true }).click();
      await row.getByRole('button', { name: 'Remove and ban', exact: true }).click();
    } else {
      console.log(`recorder left on SIGINT (exit ${JSON.stringify(exited)})`);
    }
    for (const [who, b] of members()) {
      await b.page.getByText(STOPPED, { exact: true }).waitFor({ timeout: 15_000 });
      await eventually(() => indicator(b.page).count(), (n) => n === 0, { what: `${who}'s indicator goes` });
    }
    // The waiting screen is told too.
    await eventually(() => indicator(wen.page).count(), (n) => n === 0, { what: 'the waiting screen\'s indicator goes' });
    await wen.page.getByText(STOPPED, { exact: true }).waitFor();
    assert.equal(await wen.page.getByRole('toolbar', { name: 'Meeting controls' }).count(), 0, 'Wen still waits');
    if (exited === null) {
      rec.kill('SIGKILL');
      await recExit;
    }
    console.log(`conclave record said: ${recLog.trim().split('\n').slice(-5).join(' | ')}`);
  });

  step('no page ran markup or failed', async () => {
    for (const [who, b] of [...members(), ['wen', wen]]) {
      assert.deepEqual(b.alerts, [], `${who}: no dialog opened`);
      assert.deepEqual(b.errors, [], `${who}: no page error`);
    }
  });
});
