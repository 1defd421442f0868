// A native `conclave join` beside a browser host: Ctrl-C in the waiting room
// takes it off the host's waiting list at once; admitted, it prints the same
// security code the browser shows; Ctrl-C then takes it off the browser's
// member list at once (it said `leave`: no "reconnecting" seat), and it exits
// with 0 and its statistics.
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, ROOT, eventually, hostStartsMeeting, openBrowser, startServer, storySteps, securityCode } from './harness.js';

const HOST = 'grace';
const PASSWORD = 'correct horse battery staple';
/** How soon the others must see a stopped client go, in ms. */
const LEFT_WITHIN = 2_000;

/** Starts `conclave join` as `name`; its output is collected as it comes. */
function startNative(invite, name) {
  const child = spawn(BINARY, ['join', invite, '--name', name, '--stats',
    '--send-ivf', path.join(ROOT, 'samples/video-320x240.ivf'),
    '--send-ogg', path.join(ROOT, 'samples/audio-440hz.ogg')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const native = { child, out: '', err: '' };
  child.stdout.on('data', (d) => { native.out += d; });
  child.stderr.on('data', (d) => { native.err += d; });
  native.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return native;
}

/** The last security code the native client printed ('' before any). */
function lastCode(native) {
  const codes = native.err.split('\n')
    .map((l) => /^Security code \(epoch \d+, \d+ (?:person|people) in the encrypted group\): ([\d ]+)$/.exec(l))
    .filter(Boolean);
  return codes.length ? codes[codes.length - 1][1] : '';
}

describe('a native client beside a browser', () => {
  let server;
  let host;
  let invite;
  let native = null;
  const step = storySteps('native-', () => [['host', host]]);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    host = await openBrowser('native-host');
  });

  after(async () => {
    if (native && native.child.exitCode === null) native.child.kill('SIGKILL');
    if (host) await host.close();
    if (server) await server.stop('native-server.log');
  });

  step('Ctrl-C in the waiting room: the host\'s waiting list drops it at once', async () => {
    invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    native = startNative(invite, 'Waiting native');
    const row = host.page.getByRole('list', { name: 'People waiting' }).getByRole('listitem').filter({ hasText: 'Waiting native' });
    await row.waitFor({ timeout: 20_000 });
    native.child.kill('SIGINT');
    await row.waitFor({ state: 'detached', timeout: LEFT_WITHIN });
    const { code } = await native.exited;
    assert.equal(code, 0, native.err.slice(-2000));
    assert.deepEqual(JSON.parse(native.out), { admitted: false, stopped: true });
  });

  step('admitted, it prints the security code the browser shows', async () => {
    native = startNative(invite, 'Native');
    await host.page.getByRole('list', { name: 'People waiting' }).getByRole('listitem').filter({ hasText: 'Native' })
      .getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await eventually(async () => [await securityCode(host.page), lastCode(native)],
      ([browser, printed]) => browser.length > 0 && browser === printed,
      { timeout: 20_000, what: `the browser's code printed by the native client:\n${native.err.slice(-1500)}` });
    const code = lastCode(native);
    assert.match(code, /^\d{5}( \d{5}){11}$/);
    console.log(`browser and native client show ${code}`);
  });

  step('Ctrl-C admitted: the browser\'s member list drops it at once; it exits 0 with its statistics', async () => {
    const row = host.page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: 'Native' });
    await row.waitFor();
    native.child.kill('SIGINT');
    const asked = Date.now();
    await row.waitFor({ state: 'detached', timeout: LEFT_WITHIN });
    console.log(`the native client left the host's list ${Date.now() - asked} ms after SIGINT`);
    const { code } = await native.exited;
    assert.equal(code, 0, native.err.slice(-2000));
    const stats = JSON.parse(native.out.slice(native.out.indexOf('{')));
    assert.equal(stats.admitted, true);
    assert.equal(stats.stopped, true);
    assert.equal(stats.e2ee.roster.length, 2, JSON.stringify(stats.e2ee));
    assert.deepEqual(stats.e2ee.not_announced, []);
    const video = Object.values(stats.received).filter((t) => t.kind === 'video');
    // The browser's fake camera, named as the server announced it.
    assert.ok(video.every((t) => typeof t.name === 'string' && typeof t.packets === 'number'), JSON.stringify(video));
  });
});
