// Administrators manage accounts in the web client (issue 20): a host sees
// no way to the accounts page and is refused when going there anyway; the
// administrator opens it from the dashboard, disables the host by clicking,
// and the host's very next request is refused with a sentence saying the
// account is disabled; enabled again, the host signs in; deleted, the
// account is gone from the list.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe } from 'node:test';
import { BINARY, openBrowser, screenshot, startServer, storySteps } from './harness.js';

const PASSWORD = 'a long enough password';

async function signIn(page, url, user) {
  await page.goto(`${url}/signin`);
  await page.getByRole('textbox', { name: 'Username', exact: true }).fill(user);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
}

describe('administrators manage accounts', () => {
  let server;
  let admin;
  let bob;
  const step = storySteps('admin-', () => [['admin', admin], ['bob', bob]]);

  before(async () => {
    server = await startServer();
    const made = spawnSync(BINARY, ['admin', 'create-user', 'root', '--admin', '--password-stdin', '--data-dir', server.dataDir], { input: `${PASSWORD}\n`, encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    server.createUser('bob', PASSWORD);
    admin = await openBrowser('admin');
    bob = await openBrowser('admin-bob');
  });

  after(async () => {
    for (const b of [admin, bob]) if (b) await b.close();
    if (server) await server.stop('admin-server.log');
  });

  step('a host has no way to the accounts page, and is refused there', async () => {
    const p = bob.page;
    await signIn(p, server.url, 'bob');
    assert.equal(await p.getByRole('link', { name: 'Accounts', exact: true }).count(), 0);
    await p.goto(`${server.url}/admin`);
    await p.getByRole('alert').filter({ hasText: 'only administrators may manage accounts' }).waitFor();
    assert.equal(await p.getByRole('row').count(), 1, 'only the header row: no account is shown');
    await p.goto(`${server.url}/`);
    await p.getByRole('button', { name: 'New meeting', exact: true }).waitFor();
  });

  step('the administrator disables the host by clicking', async () => {
    const p = admin.page;
    await signIn(p, server.url, 'root');
    await p.getByRole('link', { name: 'Accounts', exact: true }).click();
    const table = p.getByRole('table', { name: 'Accounts' });
    const bobRow = table.getByRole('row').filter({ has: p.getByRole('rowheader', { name: 'bob', exact: true }) });
    await bobRow.getByRole('cell', { name: 'Enabled', exact: true }).waitFor();
    // Not one's own account.
    const rootRow = table.getByRole('row').filter({ has: p.getByRole('rowheader', { name: 'root', exact: true }) });
    assert.equal(await rootRow.getByRole('button').count(), 0);
    await screenshot(p, 'admin-accounts');
    await p.getByRole('button', { name: 'Disable bob', exact: true }).click();
    await bobRow.getByRole('cell', { name: 'Disabled', exact: true }).waitFor();
    await p.getByRole('button', { name: 'Enable bob', exact: true }).waitFor();
  });

  step("the host's next request is refused, saying the account is disabled", async () => {
    const p = bob.page;
    const answer = await p.evaluate(() => fetch('/api/v1/meetings').then(async (r) => ({ status: r.status, body: await r.json() })));
    assert.deepEqual(answer, { status: 403, body: { error: 'account_disabled', message: 'this account has been disabled by an administrator' } });
    await p.reload();
    await p.getByRole('alert').filter({ hasText: 'Your account on this server is disabled. Ask its administrator.' }).waitFor();
    assert.equal(new URL(p.url()).pathname, '/signin');
    await screenshot(p, 'admin-bob-disabled');
    // Nor can the password sign in again.
    await p.getByRole('textbox', { name: 'Username', exact: true }).fill('bob');
    await p.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    await p.getByRole('alert').filter({ hasText: 'this account is disabled' }).waitFor();
  });

  step('enabled again the host signs in; deleted, the account is gone', async () => {
    const a = admin.page;
    await a.getByRole('button', { name: 'Enable bob', exact: true }).click();
    await a.getByRole('button', { name: 'Disable bob', exact: true }).waitFor();
    await signIn(bob.page, server.url, 'bob');

    await a.getByRole('button', { name: 'Delete bob', exact: true }).click();
    await a.getByRole('button', { name: 'Delete the account bob', exact: true }).click();
    const table = a.getByRole('table', { name: 'Accounts' });
    await table.getByRole('rowheader', { name: 'bob', exact: true }).waitFor({ state: 'detached' });
    await table.getByRole('rowheader', { name: 'root', exact: true }).waitFor();
    assert.deepEqual(admin.alerts, []);
    assert.deepEqual(admin.errors, []);
  });
});
