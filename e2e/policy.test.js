// Who may join, and who may host, with real providers (two oidc-provider
// instances on loopback: the school's and a partner's) through Chromium:
// a member of the school's `conclave-hosts` group creates a meeting for the
// school's people only (the server's default) and invites one outside
// address; a school member outside that group cannot create meetings; a
// school account outside the allowed email domain cannot sign in at all.
// A guest is refused with the policy's message and "Sign in with ..."
// buttons; signing in as a partner who was not invited is refused again,
// while the invited partner gets into the waiting room.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { freeTcpPort, openBrowser, screenshot, startServer, storySteps } from './harness.js';
import { startProvider } from './oidc-provider.js';

const CLIENT_ID = 'conclave';
const CLIENT_SECRET = 'a client secret for the tests only';
const REFUSED = 'Only people of this organisation, and outside people the host invited, can join this meeting.';

async function atProvider(page, login) {
  await page.getByRole('textbox', { name: 'Enter any login' }).fill(login);
  await page.getByRole('textbox', { name: 'and password' }).fill('anything');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
}

describe('who may join and who may host, by organisation', () => {
  let school;
  let partner;
  let server;
  let invite;
  const browsers = [];
  const step = storySteps('policy-', () => browsers.map((b, i) => [`browser-${i}`, b]));

  before(async () => {
    const port = await freeTcpPort();
    const base = `http://127.0.0.1:${port}`;
    school = await startProvider({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUris: [`${base}/auth/oidc/School/callback`],
      users: {
        grace: { email: 'grace@school.example', name: 'Grace Hopper', groups: ['staff', 'conclave-hosts'] },
        ada: { email: 'ada@school.example', name: 'Ada Lovelace', groups: ['staff'] },
        eve: { email: 'eve@elsewhere.example', name: 'Eve' },
      },
    });
    partner = await startProvider({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUris: [`${base}/auth/oidc/Partner/callback`],
      users: {
        vic: { email: 'vic@partner.example', name: 'Vic' },
        mallory: { email: 'mallory@partner.example', name: 'Mallory' },
      },
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conclave-policy-'));
    const config = path.join(dir, 'conclave.toml');
    fs.writeFileSync(config, `
[[oidc]]
name = "School"
issuer = "${school.issuer}"
client_id = "${CLIENT_ID}"
client_secret_env = "TEST_OIDC_SECRET"
scopes = ["email", "profile", "groups"]
host_groups = ["conclave-hosts"]
allowed_email_domains = ["school.example"]

[[oidc]]
name = "Partner"
issuer = "${partner.issuer}"
client_id = "${CLIENT_ID}"
client_secret_env = "TEST_OIDC_SECRET"

[organisation]
providers = ["School"]
email_domains = ["school.example"]
default_who_may_join = "organisation"
`);
    server = await startServer({ port, args: ['--config', config], env: { TEST_OIDC_SECRET: CLIENT_SECRET } });
  });

  after(async () => {
    for (const b of browsers) await b.close();
    if (server) await server.stop('policy-server.log');
    if (school) await school.stop();
    if (partner) await partner.stop();
  });

  async function browser(name) {
    const b = await openBrowser(`policy-${name}`);
    browsers.push(b);
    return b.page;
  }

  async function signIn(p, provider, login) {
    await p.goto(`${server.url}/signin`);
    await p.getByRole('button', { name: `Sign in with ${provider}`, exact: true }).click();
    await atProvider(p, login);
  }

  step('a member of conclave-hosts creates a school-only meeting with one invited partner', async () => {
    const p = await browser('grace');
    await signIn(p, 'School', 'grace');
    await p.getByRole('button', { name: 'New meeting', exact: true }).click();
    const who = p.getByRole('combobox', { name: 'Who can join' });
    // The server's default, asked for by the form.
    await p.waitForFunction(() => [...document.querySelectorAll('dialog select')].some((s) => s.value === 'organisation'));
    assert.equal(await who.inputValue(), 'organisation');
    await p.getByRole('textbox', { name: 'Invited outside people (email addresses)' }).fill('vic@partner.example');
    await screenshot(p, 'policy-form');
    await p.getByRole('button', { name: 'Create meeting', exact: true }).click();
    invite = (await p.getByLabel('Invite link', { exact: true }).first().textContent()).trim();
    const list = await p.evaluate(() => fetch('/api/v1/meetings').then((r) => r.json()));
    assert.equal(list[0].settings.who_may_join, 'organisation');
    assert.deepEqual(list[0].settings.invited_emails, ['vic@partner.example']);
  });

  step('a school member outside conclave-hosts cannot create meetings', async () => {
    const p = await browser('ada');
    await signIn(p, 'School', 'ada');
    await p.getByRole('button', { name: 'New meeting', exact: true }).click();
    await p.getByRole('button', { name: 'Create meeting', exact: true }).click();
    await p.getByText("your organisation's provider does not let this account host meetings").waitFor();
    const me = await p.evaluate(() => fetch('/api/v1/me').then((r) => r.json()));
    assert.equal(me.may_host, false);
  });

  step('a school account outside the allowed email domains is not signed in', async () => {
    const p = await browser('eve');
    await signIn(p, 'School', 'eve');
    await p.getByText("This server accepts that provider's accounts only with an email address in its allowed domains.").waitFor();
    assert.equal(await p.evaluate(() => fetch('/api/v1/me').then((r) => r.status)), 401);
  });

  /** Opens the invite as-is and asks to join; the page shows the answer. */
  async function tryJoin(p, name) {
    await p.getByRole('textbox', { name: 'Your name' }).fill(name);
    await p.getByRole('button', { name: 'Join', exact: true }).click();
  }

  step('a guest is refused with the reason and sign-in buttons; a partner not invited is refused again', async () => {
    const p = await browser('mallory');
    await p.goto(invite);
    await tryJoin(p, 'Mallory');
    await p.getByText(REFUSED).waitFor();
    await p.getByRole('button', { name: 'Sign in with School', exact: true }).waitFor();
    await screenshot(p, 'policy-refused-guest');
    await p.getByRole('button', { name: 'Sign in with Partner', exact: true }).click();
    await atProvider(p, 'mallory');
    // Back on the meeting's page, signed in, the passcode kept.
    await p.getByText('Signed in as mallory.').waitFor();
    await tryJoin(p, 'Mallory');
    await p.getByText(REFUSED).waitFor();
    // Nothing of the meeting: no title, no one in it.
    assert.equal(await p.getByText('Waiting for the host to let you in').count(), 0);
  });

  step('the invited partner signs in and waits for the host', async () => {
    const p = await browser('vic');
    await p.goto(invite);
    await tryJoin(p, 'Vic');
    await p.getByText(REFUSED).waitFor();
    await p.getByRole('button', { name: 'Sign in with Partner', exact: true }).click();
    await atProvider(p, 'vic');
    await p.getByText('Signed in as vic.').waitFor();
    await tryJoin(p, 'Vic');
    await p.getByText('Waiting for the host to let you in').waitFor();
    await screenshot(p, 'policy-invited-waits');
  });
});
