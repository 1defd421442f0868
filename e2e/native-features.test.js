// Chat, hands, reactions and a poll between a browser host and a native
// `conclave join --interactive` typing on its standard input: both ends
// speak the same MLS application messages (web/appmsg.js,
// crates/conclave-client/src/appmsg.rs), so each sees what the other does.
// Each step relies on the ones before it, so they run in order.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe } from 'node:test';
import { BINARY, eventually, hostStartsMeeting, openBrowser, startServer, storySteps, securityCode } from './harness.js';

const HOST = 'grace';
const PASSWORD = 'correct horse battery staple';
const NAME = 'Terminal Tess';

/** Starts `conclave join --interactive`; its standard error is collected as it comes. */
function startNative(invite) {
  const child = spawn(BINARY, ['join', invite, '--name', NAME, '--interactive', '--patience', '60'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const native = { child, err: '' };
  child.stdout.on('data', () => {});
  child.stderr.on('data', (d) => { native.err += d; });
  native.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  native.type = (line) => child.stdin.write(`${line}\n`);
  /** Waits for a line of its standard error that matches `re`. */
  native.says = (re, what) => eventually(() => native.err.split('\n').find((l) => re.test(l)) || null, (l) => l !== null,
    { timeout: 20_000, what: `${what}; the native client said:\n${native.err.slice(-1500)}` });
  return native;
}

describe('a native client chats, raises a hand, reacts and answers a poll with a browser', () => {
  let server;
  let host;
  let native = null;
  const step = storySteps('native-features-', () => [['host', host]]);
  const controls = () => host.page.getByRole('toolbar', { name: 'Meeting controls' });
  const tile = () => host.page.locator('li.tile').filter({ has: host.page.locator('.tile-name', { hasText: NAME }) });
  const hands = () => host.page.getByRole('list', { name: 'Raised hands' });

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    host = await openBrowser('native-features-host');
  });

  after(async () => {
    if (native && native.child.exitCode === null) native.child.kill('SIGKILL');
    if (host) await host.close();
    if (server) await server.stop('native-features-server.log');
  });

  step('the native client is admitted and in the encrypted group', async () => {
    const invite = await hostStartsMeeting(host.page, server.url, HOST, PASSWORD);
    native = startNative(invite);
    await host.page.getByRole('list', { name: 'People waiting' }).getByRole('listitem').filter({ hasText: NAME })
      .getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    const lastCode = () => [...native.err.matchAll(/Security code \(epoch \d+, 2 people[^:]*\): ([\d ]+)/g)].pop()?.[1];
    await eventually(async () => [await securityCode(host.page), lastCode()],
      ([browser, printed]) => browser.length > 0 && browser === printed,
      { timeout: 20_000, what: `the same security code at both ends:\n${native.err.slice(-1500)}` });
  });

  step('chat both ways, end to end encrypted', async () => {
    native.type('hello from the terminal');
    const history = host.page.getByRole('log', { name: 'Chat history' });
    await history.getByText('hello from the terminal').waitFor({ timeout: 20_000 });
    await host.page.getByRole('textbox', { name: 'Message', exact: true }).fill('hello from the browser');
    await host.page.getByRole('button', { name: 'Send', exact: true }).click();
    await native.says(/^Chat from .+ \(participant \d+\): hello from the browser$/, 'the browser\'s chat line');
    // A line that starts with a slash is a command; an unknown one is said so, not sent.
    native.type('/frobnicate');
    await native.says(/^Unknown command \/frobnicate/, 'an unknown command refused');
  });

  step('hands: the native client\'s goes up on the host\'s page; the host\'s shows at the terminal; the host lowers the native one', async () => {
    native.type('/hand');
    await tile().getByRole('img', { name: 'Hand raised', exact: true }).waitFor({ timeout: 20_000 });
    await hands().getByRole('listitem').filter({ hasText: NAME }).waitFor();
    await native.says(/^You raised your hand\.$/, 'its own hand, as the server relayed it');
    await controls().getByRole('button', { name: 'Raise hand', exact: true }).click();
    await native.says(/ raised their hand\.$/, 'the host\'s hand');
    await hands().getByRole('listitem').filter({ hasText: NAME }).getByRole('button', { name: 'Lower hand', exact: true }).click();
    await native.says(/^A host lowered your hand\.$/, 'its hand lowered by the host');
    await eventually(() => hands().getByRole('listitem').count(), (n) => n === 1, { what: 'only the host\'s hand up' });
    // Raised and lowered from the terminal too.
    native.type('/raise');
    await tile().getByRole('img', { name: 'Hand raised', exact: true }).waitFor({ timeout: 20_000 });
    native.type('/lower');
    await eventually(() => tile().getByRole('img', { name: 'Hand raised', exact: true }).count(), (n) => n === 0, { what: 'the native hand down' });
  });

  step('a reaction typed at the terminal floats over its tile', async () => {
    native.type('/react thumbs up');
    await tile().getByRole('img', { name: 'Reacted with thumbs up', exact: true }).waitFor({ timeout: 10_000 });
    native.type('/react 🎉');
    await tile().getByRole('img', { name: 'Reacted with party popper', exact: true }).waitFor({ timeout: 10_000 });
  });

  step('the host\'s poll shows at the terminal, /vote answers it, the shared results show there', async () => {
    const hp = host.page;
    await controls().getByRole('button', { name: 'Poll', exact: true }).click();
    const form = hp.getByRole('region', { name: 'Poll' });
    await form.getByRole('textbox', { name: 'Question', exact: true }).fill('Tea or coffee?');
    await form.getByRole('textbox', { name: 'Option 1', exact: true }).fill('Tea');
    await form.getByRole('textbox', { name: 'Option 2', exact: true }).fill('Coffee');
    await form.getByRole('button', { name: 'Ask', exact: true }).click();
    await native.says(/^Poll from .+: Tea or coffee\? 1\) Tea 2\) Coffee \(answer with \/vote N\)$/, 'the poll');
    native.type('/vote 2');
    await native.says(/^You answered the poll: Coffee\.$/, 'its answer, as relayed');
    await hp.getByText('1 answer so far').waitFor({ timeout: 20_000 });
    const live = hp.getByRole('list', { name: 'Answers so far' });
    await live.getByRole('listitem').filter({ hasText: 'Coffee' }).getByText('1 vote', { exact: true }).waitFor();
    await hp.getByRole('button', { name: 'Share results', exact: true }).click();
    await native.says(/^Poll results: Tea or coffee\? \(Tea: 0, Coffee: 1\)$/, 'the shared results');
  });

  step('Ctrl-C: it leaves and exits 0', async () => {
    native.child.kill('SIGINT');
    const { code } = await native.exited;
    assert.equal(code, 0, native.err.slice(-2000));
  });
});
