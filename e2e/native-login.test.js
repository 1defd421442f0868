// `conclave login` through a real OpenID Connect provider (oidc-provider on
// loopback), as a person does it (issue 20): the command prints an address,
// Chromium opens it and signs in at the provider's login form, the server
// sends the browser on to the command's loopback listener (RFC 8252), and
// the command writes its session. A guest's `conclave join` is refused from
// a meeting for signed-in people only; `conclave join --login` gets in, and
// the host's page shows the name as verified by the provider, because the
// provider's token in the native member's leaf vouches for its MLS key.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, freeTcpPort, hostStartsMeeting, openBrowser, screenshot, startServer, storySteps } from './harness.js';
import { startProvider } from './oidc-provider.js';

const CLIENT_ID = 'conclave';
const CLIENT_SECRET = 'a client secret for the tests only';
const PASSWORD = 'a long enough password';

/** A `conclave` command with its output collected; `done` resolves at exit. */
function run(args) {
  const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => { out.stdout += d; });
  child.stderr.on('data', (d) => { out.stderr += d; });
  const done = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out, done };
}

async function until(probe, what, timeout = 20_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('a native client signs in through the provider', () => {
  let idp;
  let server;
  let host;
  let person;
  let dir;
  let invite;
  const running = [];
  const step = storySteps('native-login-', () => [['host', host], ['person', person]]);

  before(async () => {
    const port = await freeTcpPort();
    idp = await startProvider({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUris: [`http://127.0.0.1:${port}/auth/oidc/Acme/callback`],
      users: { grace: { email: 'grace@acme.example', name: 'Grace Hopper' } },
      idTokenClaims: true,
    });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-native-login-'));
    const config = path.join(dir, 'conclave.toml');
    fs.writeFileSync(config, `
[organisation]
default_who_may_join = "signed_in"

[[oidc]]
name = "Acme"
issuer = "${idp.issuer}"
client_id = "${CLIENT_ID}"
client_secret_env = "TEST_OIDC_SECRET"
`);
    server = await startServer({ port, args: ['--config', config], env: { TEST_OIDC_SECRET: CLIENT_SECRET } });
    server.createUser('host', PASSWORD);
    host = await openBrowser('native-login-host');
    person = await openBrowser('native-login-person');
  });

  after(async () => {
    for (const r of running) r.child.kill('SIGKILL');
    for (const b of [host, person]) if (b) await b.close();
    if (server) await server.stop('native-login-server.log');
    if (idp) await idp.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  step('conclave login prints an address; signing in there in a browser signs the command in', async () => {
    const file = path.join(dir, 'login.json');
    const login = run(['login', '--server', server.url, '--provider', 'Acme', '--out', file, '--wait', '60']);
    running.push(login);
    const url = await until(() => login.out.stdout.split('\n').find((l) => l.startsWith('http')), 'the address');
    assert.ok(url.startsWith(`${server.url}/auth/oidc/Acme?`), url);
    const p = person.page;
    await p.goto(url);
    await p.getByRole('textbox', { name: 'Enter any login' }).fill('grace');
    await p.getByRole('textbox', { name: 'and password' }).fill('anything');
    await p.getByRole('button', { name: 'Sign-in' }).click();
    await p.getByRole('button', { name: 'Continue' }).click();
    await p.getByText('Signed in to Conclave. You can close this tab').waitFor();
    assert.match(new URL(p.url()).host, /^127\.0\.0\.1:\d+$/);
    await screenshot(p, 'native-login-done');
    assert.equal(await login.done, 0, login.out.stderr);
    assert.match(login.out.stderr, /signed in as grace; session written to .*; the provider's token vouches for its signing key/);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    // The browser itself was not signed in to Conclave.
    const me = await p.goto(`${server.url}/api/v1/me`);
    assert.equal(me.status(), 401);
  });

  step("a guest's conclave join is refused from a meeting for signed-in people only", async () => {
    invite = await hostStartsMeeting(host.page, server.url, 'host', PASSWORD);
    const guest = run(['join', invite, '--name', 'Guest', '--patience', '10']);
    running.push(guest);
    assert.notEqual(await guest.done, 0);
    assert.match(guest.out.stderr, /only signed-in users/);
  });

  step('conclave join --login gets in, and the host sees the name verified by the provider', async () => {
    const member = run(['join', invite, '--name', 'Grace Hopper', '--login', path.join(dir, 'login.json'), '--duration', '60', '--patience', '30']);
    running.push(member);
    const p = host.page;
    await p.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    const row = p.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: 'Grace Hopper' });
    // The name shown is the one the token gives, so the badge adds the email only.
    const verified = `Verified by Acme (${new URL(idp.issuer).host}) · grace@acme.example`;
    await row.getByText(verified).waitFor({ timeout: 20_000 });
    await screenshot(p, 'native-login-verified');
    await until(() => /Security code \(epoch \d+, 2 people/.test(member.out.stderr), 'the native member in the group');
    member.child.kill('SIGINT');
    assert.equal(await member.done, 0, member.out.stderr);
  });
});
