// Sign-in through the organisation's identity provider: a real OpenID
// Connect provider (oidc-provider) on loopback, Chromium going through its
// login form and consent by the redirect flow, and what goes wrong: a
// callback with a state this browser did not start, a replayed code, a
// provider that cannot be reached (while passwords still work). Then a
// server with passwords turned off: only the provider's button, a one-time
// link from the CLI as the break-glass way in, and an account the admin
// disabled that the provider can no longer sign in. Signing out also ends
// the provider's session (RP-initiated logout); a provider session ends
// after its maximum lifetime.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { BINARY, freeTcpPort, openBrowser, runTool, screenshot, startServer, storySteps } from './harness.js';
import { startProvider } from './oidc-provider.js';

const CLIENT_ID = 'conclave';
const CLIENT_SECRET = 'a client secret for the tests only';

/** Goes through the provider's login form and consent as `login`. */
async function atProvider(page, login) {
  await page.getByRole('textbox', { name: 'Enter any login' }).fill(login);
  await page.getByRole('textbox', { name: 'and password' }).fill('anything');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
}

/** Signs in as Grace through the provider from the sign-in page, up to the dashboard. */
async function signInWithAcme(page, serverUrl) {
  await page.goto(`${serverUrl}/signin`);
  await page.getByRole('button', { name: 'Sign in with Acme', exact: true }).click();
  await atProvider(page, 'grace');
  await page.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
}

/**
 * The provider, with Grace on it, and a Conclave server that knows it as
 * "Acme" (its client secret from the environment), and a browser named
 * `name`. `provider(base)`: more of the provider's options, given the
 * server's address; `head`: config lines above the [[oidc]] entry,
 * `entry`: more lines in it, `tail`: lines after it.
 */
async function acmeAndServer(name, { provider = () => ({}), head = '', entry = '', tail = '' } = {}) {
  const port = await freeTcpPort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startProvider({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [`${base}/auth/oidc/Acme/callback`],
    users: { grace: { email: 'grace@acme.example', name: 'Grace Hopper' } },
    ...provider(base),
  });
  let server = null;
  try {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `conclave-${name}-`));
    const config = path.join(dir, 'conclave.toml');
    fs.writeFileSync(config, `${head}
[[oidc]]
name = "Acme"
issuer = "${idp.issuer}"
client_id = "${CLIENT_ID}"
client_secret_env = "TEST_OIDC_SECRET"
${entry}
${tail}`);
    server = await startServer({ port, args: ['--config', config], env: { TEST_OIDC_SECRET: CLIENT_SECRET } });
    return { idp, server, browser: await openBrowser(name) };
  } catch (err) {
    // Nothing of a half-made setup is left for `after` to find.
    if (server) await server.stop(`${name}-server.log`);
    await idp.stop();
    throw err;
  }
}

describe('sign-in with an OpenID Connect provider', () => {
  let idp;
  let server;
  let browser;
  let callbackUrl;
  let graceInvite;
  const others = [];
  const step = storySteps('oidc-', () => [['browser', browser]]);

  before(async () => {
    // A second provider nobody listens for: its port is taken and closed.
    const down = await freeTcpPort();
    ({ idp, server, browser } = await acmeAndServer('oidc', {
      provider: (base) => ({ postLogoutRedirectUris: [`${base}/signin`], idTokenClaims: true }),
      tail: `
[[oidc]]
name = "Down"
issuer = "http://127.0.0.1:${down}"
client_id = "${CLIENT_ID}"
`,
    }));
  });

  after(async () => {
    for (const b of [browser, ...others]) if (b) await b.close();
    if (server) await server.stop('oidc-server.log');
    if (idp) await idp.stop();
  });

  /**
   * Clicks "Sign in with Acme" but stops the browser at the provider's door:
   * the flow cookie is set; resolves to the authorization URL it was sent to.
   */
  async function startOnly(page) {
    await page.route(`${idp.issuer}/**`, (route) => route.abort());
    const sent = page.waitForRequest((r) => r.url().startsWith(`${idp.issuer}/`));
    await page.goto(`${server.url}/signin`);
    await page.getByRole('button', { name: 'Sign in with Acme', exact: true }).click();
    const url = (await sent).url();
    await page.unroute(`${idp.issuer}/**`);
    return url;
  }

  step('a new person signs in with the provider and can create a meeting', async () => {
    const p = browser.page;
    p.on('request', (r) => {
      if (r.url().includes('/auth/oidc/Acme/callback?')) callbackUrl = r.url();
    });
    await p.goto(`${server.url}/signin`);
    await p.getByRole('button', { name: 'Sign in with Down', exact: true }).waitFor();
    await screenshot(p, 'oidc-signin-page');
    await p.getByRole('button', { name: 'Sign in with Acme', exact: true }).click();
    await atProvider(p, 'grace');
    await p.getByRole('button', { name: 'New meeting', exact: true }).click();
    await p.getByRole('button', { name: 'Create meeting', exact: true }).click();
    const invite = (await p.getByLabel('Invite link', { exact: true }).first().textContent()).trim();
    assert.match(invite, /^http:\/\/127\.0\.0\.1:\d+\/j\//);
    graceInvite = invite;
    const me = await p.evaluate(() => fetch('/api/v1/me').then((r) => r.json()));
    assert.equal(me.username, 'grace');
    assert.equal(me.has_password, false);
    assert.deepEqual(me.provider, { name: 'Acme', issuer: idp.issuer, email: 'grace@acme.example', display_name: 'Grace Hopper' });
    await screenshot(p, 'oidc-signed-in');
  });

  step('her name is shown as verified by the provider, end to end, on another member\'s page', async () => {
    // Her sign-in committed to the MLS key this tab joins with (OpenPubkey):
    // the guest's page checks the provider's token in her leaf with keys it
    // fetched from the provider, not from Conclave (docs/security.md §15).
    const p = browser.page;
    await p.getByRole('button', { name: 'Start', exact: true }).first().click();
    await p.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    const guest = await openBrowser('oidc-guest');
    others.push(guest);
    const g = guest.page;
    await g.goto(graceInvite);
    await g.getByRole('textbox', { name: 'Your name', exact: true }).fill('Lin');
    await g.getByRole('button', { name: 'Join', exact: true }).click();
    await p.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await g.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    const row = (page, name) => page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: name });
    const host = new URL(idp.issuer).host;
    // The server shows her username; the provider's token gives her name and email.
    const verified = `Verified by Acme (${host}) · Grace Hopper · grace@acme.example`;
    await row(g, 'Grace Hopper').getByText(verified).waitFor({ timeout: 20_000 });
    await row(p, 'Grace Hopper').getByText(verified).waitFor({ timeout: 20_000 });
    // The guest carries no binding: the server's word, said as such.
    await row(p, 'Lin').getByText('Guest', { exact: true }).waitFor();
    assert.equal(await row(g, 'Lin').getByText(/Verified by/).count(), 0);
    // The Security panel lists the verified name, and no warning.
    await g.getByRole('button', { name: /End-to-end encrypted/ }).click();
    await g.getByRole('list', { name: 'Verified names' }).getByText(`Grace Hopper, grace@acme.example: verified by Acme (${host})`).waitFor();
    assert.equal(await g.getByRole('list', { name: 'Encryption warnings' }).getByRole('listitem').count(), 0);
    await screenshot(g, 'oidc-verified-name');
  });

  step('a callback with a state this browser did not start is refused', async () => {
    const b = await openBrowser('oidc-state');
    others.push(b);
    const p = b.page;
    // Start a sign-in (the flow cookie is set), then come back with another state.
    await startOnly(p);
    await p.goto(`${server.url}/auth/oidc/Acme/callback?code=whatever&state=forged`);
    await p.getByText('That sign-in did not match the one this browser started. Start again.').waitFor();
    const me = await p.evaluate(() => fetch('/api/v1/me').then((r) => r.status));
    assert.equal(me, 401);
  });

  step('a replayed authorization code signs nobody in', async () => {
    assert.ok(callbackUrl, 'the first sign-in went through the callback');
    const b = await openBrowser('oidc-replay');
    others.push(b);
    const p = b.page;
    // Without the flow cookie of the browser that started it.
    await p.goto(callbackUrl);
    await p.getByText('That sign-in was not started in this browser or took too long. Start again.').waitFor();
    // With a flow of its own whose state it knows: the provider refuses the used code.
    const authorize = await startOnly(p);
    const state = new URL(authorize).searchParams.get('state');
    const code = new URL(callbackUrl).searchParams.get('code');
    await p.goto(`${server.url}/auth/oidc/Acme/callback?code=${encodeURIComponent(code)}&state=${encodeURIComponent(state)}`);
    await p.getByText('The identity provider did not confirm the sign-in. Start again.').waitFor();
    assert.equal(await p.evaluate(() => fetch('/api/v1/me').then((r) => r.status)), 401);
  });

  step('a provider that cannot be reached says so, and passwords still work', async () => {
    const b = await openBrowser('oidc-down');
    others.push(b);
    const p = b.page;
    await p.goto(`${server.url}/signin`);
    await p.getByRole('button', { name: 'Sign in with Down', exact: true }).click();
    await p.getByText('The identity provider could not be reached. Try again later, or sign in with a password.').waitFor();
    server.createUser('ada', 'correct horse battery staple');
    await p.getByRole('textbox', { name: 'Username', exact: true }).fill('ada');
    await p.getByLabel('Password', { exact: true }).fill('correct horse battery staple');
    await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    await p.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
  });

  step('the same person signing in again keeps the account, with the new email', async () => {
    idp.setEmail('grace', 'grace.hopper@acme.example');
    const b = await openBrowser('oidc-again');
    others.push(b);
    const p = b.page;
    await signInWithAcme(p, server.url);
    const me = await p.evaluate(() => fetch('/api/v1/me').then((r) => r.json()));
    const first = await browser.page.evaluate(() => fetch('/api/v1/me').then((r) => r.json()));
    assert.equal(me.id, first.id);
    assert.equal(me.provider.email, 'grace.hopper@acme.example');
  });

  step('signing out ends the Conclave session and the provider\'s (RP-initiated logout)', async () => {
    const b = await openBrowser('oidc-signout');
    others.push(b);
    const p = b.page;
    await signInWithAcme(p, server.url);
    const session = (await b.context.cookies(server.url)).find((c) => c.name === 'conclave_session');
    assert.ok(session, 'signed in');
    const me = () => fetch(`${server.url}/api/v1/me`, { headers: { cookie: `conclave_session=${session.value}` } }).then((r) => r.status);
    assert.equal(await me(), 200);
    await p.getByRole('button', { name: 'Sign out', exact: true }).click();
    // The provider's end-session page, with this sign-in's ID token as the hint.
    await p.waitForURL((u) => u.href.startsWith(`${idp.issuer}/`));
    const logout = new URL(p.url());
    assert.equal(await me(), 401, 'the old session cookie no longer works');
    await screenshot(p, 'oidc-provider-signout');
    await p.getByRole('button', { name: 'Yes, sign me out', exact: true }).click();
    await p.waitForURL(`${server.url}/signin`);
    await p.getByRole('button', { name: 'Sign in with Acme', exact: true }).waitFor();
    assert.equal(await p.evaluate(() => fetch('/api/v1/me').then((r) => r.status)), 401);
    assert.equal(logout.searchParams.get('post_logout_redirect_uri'), `${server.url}/signin`);
    assert.ok(logout.searchParams.get('id_token_hint'), 'the ID token is the hint');
  });
});

describe('an organisation that turned passwords off', () => {
  let idp;
  let server;
  let browser;
  const step = storySteps('oidc-nopw-', () => [['browser', browser]]);

  before(async () => {
    ({ idp, server, browser } = await acmeAndServer('oidc-nopw', { head: 'password_login = false\n' }));
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop('oidc-nopw-server.log');
    if (idp) await idp.stop();
  });

  const admin = (...args) => runTool(BINARY, ['admin', ...args, '--data-dir', server.dataDir]);

  step('the sign-in page offers only the provider, and it signs people in', async () => {
    const p = browser.page;
    await p.goto(`${server.url}/signin`);
    await p.getByRole('button', { name: 'Sign in with Acme', exact: true }).waitFor();
    assert.equal(await p.getByRole('textbox', { name: 'Username', exact: true }).count(), 0);
    assert.equal(await p.getByRole('button', { name: 'Sign in', exact: true }).count(), 0);
    await screenshot(p, 'oidc-signin-page-passwords-off');
    await p.getByRole('button', { name: 'Sign in with Acme', exact: true }).click();
    await atProvider(p, 'grace');
    await p.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
    assert.match(admin('users'), /\tgrace\thost\tenabled\toidc /);
  });

  step('a password is refused even for an account that has one; a one-time link still works', async () => {
    server.createUser('ada', 'correct horse battery staple');
    const b = await openBrowser('oidc-nopw-ada');
    try {
      const p = b.page;
      await p.goto(`${server.url}/signin`);
      const refused = await p.evaluate(() => fetch('/api/v1/auth/signin', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'ada', password: 'correct horse battery staple' }),
      }).then(async (r) => [r.status, (await r.json()).message]));
      assert.equal(refused[0], 403);
      assert.match(refused[1], /password sign-in is turned off/);
      const link = admin('signin-link', 'ada', '--public-url', server.url).trim();
      await p.goto(link);
      await p.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
    } finally {
      await b.close();
    }
  });

  step('an account the admin disabled is signed out and the provider cannot sign it in', async () => {
    admin('disable-user', 'grace');
    const p = browser.page;
    // Her session has ended, and says why.
    const me = await p.evaluate(() => fetch('/api/v1/me').then(async (r) => ({ status: r.status, error: (await r.json()).error })));
    assert.deepEqual(me, { status: 403, error: 'account_disabled' });
    // A fresh browser goes through the provider's login again.
    const b = await openBrowser('oidc-nopw-disabled');
    try {
      const q = b.page;
      await q.goto(`${server.url}/signin`);
      await q.getByRole('button', { name: 'Sign in with Acme', exact: true }).click();
      await atProvider(q, 'grace');
      await q.getByText('Your account on this server is disabled. Ask its administrator.').waitFor();
      assert.equal(await q.evaluate(() => fetch('/api/v1/me').then((r) => r.status)), 401);
    } finally {
      await b.close();
    }
  });
});

describe('a provider session that has reached its maximum lifetime', () => {
  let idp;
  let server;
  let browser;
  const step = storySteps('oidc-expiry-', () => [['browser', browser]]);

  before(async () => {
    // Four seconds, injected for the test (the default is 12 hours).
    ({ idp, server, browser } = await acmeAndServer('oidc-expiry', { entry: `session_max_age_hours = ${4 / 3600}` }));
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop('oidc-expiry-server.log');
    if (idp) await idp.stop();
  });

  step('is refused with a 401 and the page goes to sign-in', async () => {
    const p = browser.page;
    await signInWithAcme(p, server.url);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const answer = await p.evaluate(() => fetch('/api/v1/me').then(async (r) => [r.status, (await r.json()).error]));
    assert.deepEqual(answer, [401, 'unauthorized']);
    await p.reload();
    await p.waitForURL(`${server.url}/signin`);
    await p.getByRole('button', { name: 'Sign in with Acme', exact: true }).waitFor();
  });
});

describe('a provider this browser has not trusted before', () => {
  let idp;
  let evil;
  let server;
  let browser;
  const others = [];
  const step = storySteps('oidc-pin-', () => [['browser', browser]]);
  const row = (page, name) => page.getByRole('list', { name: 'In the meeting' }).getByRole('listitem').filter({ hasText: name });
  const pins = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('conclave.trustedProviders') || 'null'));

  before(async () => {
    ({ idp, server, browser } = await acmeAndServer('oidc-pin', { provider: () => ({ idTokenClaims: true }) }));
    // A provider of a modified server's own, with a "Grace Hopper" on it;
    // its keys on another origin than its issuer, as Google's are.
    evil = await startProvider({
      keysElsewhere: true,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUris: [`${server.url}/auth/oidc/Evil/callback`],
      users: { grace: { email: 'grace@acme.example', name: 'Grace Hopper' } },
      idTokenClaims: true,
    });
  });

  after(async () => {
    for (const b of [browser, ...others]) if (b) await b.close();
    if (server) await server.stop('oidc-pin-server.log');
    if (idp) await idp.stop();
    if (evil) await evil.stop();
  });

  /** `host` starts a meeting; Lin's `guest` page joins it and is admitted. */
  async function meetingWithLin(host, guest) {
    await host.getByRole('button', { name: 'New meeting', exact: true }).click();
    await host.getByRole('button', { name: 'Create meeting', exact: true }).click();
    const invite = (await host.getByLabel('Invite link', { exact: true }).first().textContent()).trim();
    await host.getByRole('button', { name: 'Start', exact: true }).first().click();
    await host.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
    await guest.goto(invite);
    await guest.getByRole('textbox', { name: 'Your name', exact: true }).fill('Lin');
    await guest.getByRole('button', { name: 'Join', exact: true }).click();
    await host.getByRole('button', { name: 'Admit', exact: true }).click({ timeout: 20_000 });
    await guest.getByRole('toolbar', { name: 'Meeting controls' }).waitFor();
  }

  step('the first provider list a browser sees is pinned, and its members are verified', async () => {
    await signInWithAcme(browser.page, server.url);
    const lin = await openBrowser('oidc-pin-lin');
    others.push(lin);
    await meetingWithLin(browser.page, lin.page);
    const host = new URL(idp.issuer).host;
    await row(lin.page, 'Grace Hopper').getByText(`Verified by Acme (${host}) · Grace Hopper · grace@acme.example`).waitFor({ timeout: 20_000 });
    assert.deepEqual(await pins(lin.page), [{ name: 'Acme', issuer: idp.issuer, clientId: CLIENT_ID }]);
  });

  step('a server that now names another provider: its member is flagged, not verified, until trusted by hand', async () => {
    // The same origin, restarted with a second provider in its configuration.
    const port = new URL(server.url).port;
    await server.stop('oidc-pin-server-first.log');
    server = null;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-oidc-pin-'));
    const config = path.join(dir, 'conclave.toml');
    fs.writeFileSync(config, `
[[oidc]]
name = "Acme"
issuer = "${idp.issuer}"
client_id = "${CLIENT_ID}"
client_secret_env = "TEST_OIDC_SECRET"

[[oidc]]
name = "Evil"
issuer = "${evil.issuer}"
client_id = "${CLIENT_ID}"
client_secret_env = "TEST_OIDC_SECRET"
`);
    server = await startServer({ port: Number(port), args: ['--config', config], env: { TEST_OIDC_SECRET: CLIENT_SECRET } });
    // Someone signs in as "Grace Hopper" through the new provider and hosts.
    const eve = await openBrowser('oidc-pin-eve');
    others.push(eve);
    await eve.page.goto(`${server.url}/signin`);
    await eve.page.getByRole('button', { name: 'Sign in with Evil', exact: true }).click();
    await atProvider(eve.page, 'grace');
    await eve.page.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
    const lin = others[0].page;
    await meetingWithLin(eve.page, lin);
    // The page may fetch the new provider's keys from their own origin.
    const csp = await lin.evaluate(() => fetch('/').then((r) => r.headers.get('content-security-policy')));
    assert.match(csp, new RegExp(`connect-src 'self'[^;]* ${evil.keysOrigin}[ ;]`));
    const host = new URL(evil.issuer).host;
    // Lin's browser pinned Acme only: the new provider's word is not taken.
    // (The server shows her username; only a verified row gives the provider's name.)
    await row(lin, 'grace').getByText(`Name from the server · provider not trusted (${host})`).waitFor({ timeout: 20_000 });
    assert.equal(await row(lin, 'grace').getByText(/Verified by/).count(), 0);
    await lin.getByRole('button', { name: /End-to-end encrypted/ }).click();
    const news = lin.getByRole('list', { name: 'New identity providers' });
    await news.getByText(`This server now names a provider you have not trusted before: Evil (${host})`).waitFor();
    await lin.getByRole('list', { name: 'Encryption warnings' }).getByText(`vouched for by a provider you have not trusted before: Evil (${host})`).waitFor();
    assert.deepEqual((await pins(lin)).map((p) => p.name), ['Acme']);
    await screenshot(lin, 'oidc-pin-new-provider');
    // Trusted deliberately: now pinned, and her name verified by it, with
    // keys this page fetched from the provider's other origin.
    await news.getByRole('button', { name: `Trust provider ${host}`, exact: true }).click();
    await row(lin, 'grace').getByText(`Verified by Evil (${host})`).waitFor({ timeout: 20_000 });
    assert.deepEqual((await pins(lin)).map((p) => p.name), ['Acme', 'Evil']);
    assert.equal(await news.getByRole('listitem').count(), 0);
  });
});
