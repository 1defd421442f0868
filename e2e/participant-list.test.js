// The Participants panel at a thousand (issue 23): the real panel module,
// in Chromium, given a roster of 1,000 keeps only the rows near its visible
// part in the DOM, scrolls to the last person, and finds a name by its
// search box; a waiting list of 1,000 likewise keeps few rows (and Admit
// buttons), and its last person is scrolled to and admitted by that row's
// Admit button. The roster is given to the panel directly (a thousand browsers
// do not fit in CI); what it renders is read the way a person would.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, openBrowser, screenshot, startServer } from './harness.js';

const COUNT = 1000;

describe('participant list at a thousand', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await openBrowser('participant-list');
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop('participant-list-server.log');
  });

  it('renders a bounded number of rows, scrolls to the end, and search finds one name', async () => {
    const { page } = browser;
    await page.goto(`${server.url}/`);
    await page.evaluate(async (count) => {
      const { createParticipantsPanel } = await import('/assets/participants.js');
      const participants = Array.from({ length: count }, (_, i) => ({
        id: i + 1,
        name: i === 776 ? 'Zoë Quartermaine' : `Person ${i + 1}`,
        role: i === 0 ? 'host' : 'participant',
        signed_in: false,
        audio: i % 3 === 0,
        video: false,
        screen: false,
        presence: 'connected',
      }));
      const state = {
        phase: 'joined',
        you: 1,
        role: 'host',
        participants,
        waiting: [],
        meeting: { title: 'All hands', locked: false, suspended: false, permissions: { screen_share: 'host_only', chat: true, self_unmute: true, rename_self: false, publish: 'allowed' } },
        e2ee: null,
        features: { hands: [] },
      };
      const noop = () => {};
      const call = new Proxy({ state }, { get: (t, k) => (k in t ? t[k] : noop) });
      const panel = createParticipantsPanel(call, { onClose: noop });
      const box = document.createElement('div');
      box.id = 'big-roster';
      box.style.cssText = 'position:fixed;inset:0 auto auto 0;width:380px;height:640px;display:flex;flex-direction:column;z-index:10;background:#fff';
      panel.el.style.flex = '1';
      panel.el.style.minHeight = '0';
      box.append(panel.el);
      document.body.replaceChildren(box);
      panel.update(state);
    }, COUNT);

    const roster = page.locator('#big-roster');
    const rows = roster.getByRole('list', { name: 'In the meeting' }).getByRole('listitem');
    await roster.getByText('Person 2', { exact: true }).waitFor();
    const shown = await rows.count();
    assert.ok(shown > 5 && shown <= 60, `${shown} rows in the DOM for ${COUNT} people`);
    assert.equal(await rows.first().getAttribute('aria-setsize'), String(COUNT));
    await screenshot(page, 'participant-list-top');

    // Scrolled to the bottom: the last person is there, the first is not, and still few rows.
    await roster.locator('.panel-body').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await roster.getByText(`Person ${COUNT}`, { exact: true }).waitFor();
    assert.equal(await roster.getByText('Person 2', { exact: true }).count(), 0);
    assert.ok((await rows.count()) <= 60, 'still bounded after scrolling');
    assert.equal(await roster.getByText(`Person ${COUNT}`, { exact: true }).locator('xpath=ancestor::li').getAttribute('aria-posinset'), String(COUNT));

    // Search, accents and case aside: one row, with its host controls.
    const search = roster.getByRole('searchbox', { name: 'Search participants' });
    await search.fill('zoe quarter');
    await eventually(() => rows.count(), (n) => n === 1, { what: 'one match' });
    assert.match(await rows.first().textContent(), /Zoë Quartermaine/);
    await rows.first().getByRole('button', { name: 'Allow to speak', exact: true }).waitFor();
    // Every word, anywhere in the name: 99, 199, …, 899 and 990 to 999.
    await search.fill('99 person');
    await eventually(() => rows.count(), (n) => n === 19, { what: 'nineteen matches' });
    await search.fill('nobody by this name');
    await roster.getByText('Nobody here by that name.').waitFor();
    assert.equal(await rows.count(), 0);
    await screenshot(page, 'participant-list-search');
  });

  it('keeps a waiting list of a thousand bounded, and the last one waiting is admitted by its button', async () => {
    const { page } = browser;
    await page.goto(`${server.url}/`);
    await page.evaluate(async (count) => {
      const { createParticipantsPanel } = await import('/assets/participants.js');
      const waiting = Array.from({ length: count }, (_, i) => ({
        id: 10_000 + i + 1,
        name: `Waiting ${i + 1}`,
        signed_in: i % 2 === 0,
        recording: false,
        same_network_as_removed: false,
      }));
      const state = {
        phase: 'joined',
        you: 1,
        role: 'host',
        participants: [{ id: 1, name: 'Hosting Hana', role: 'host', signed_in: false, audio: false, video: false, screen: false, presence: 'connected' }],
        waiting,
        meeting: { title: 'All hands', locked: false, suspended: false, permissions: { screen_share: 'host_only', chat: true, self_unmute: true, rename_self: false, publish: 'allowed' } },
        e2ee: null,
        features: { hands: [] },
      };
      const noop = () => {};
      // What the server does on an admit: that person leaves the waiting list.
      window.admitted = [];
      let panel;
      const admit = (id) => {
        window.admitted.push(id);
        state.waiting = state.waiting.filter((w) => w.id !== id);
        state.participants = [...state.participants, { id, name: `Admitted ${id}`, role: 'participant', signed_in: false, audio: false, video: false, screen: false, presence: 'connected' }];
        panel.update(state);
      };
      const call = new Proxy({ state, admit }, { get: (t, k) => (k in t ? t[k] : noop) });
      panel = createParticipantsPanel(call, { onClose: noop });
      const box = document.createElement('div');
      box.id = 'big-waiting';
      box.style.cssText = 'position:fixed;inset:0 auto auto 0;width:380px;height:640px;display:flex;flex-direction:column;z-index:10;background:#fff';
      panel.el.style.flex = '1';
      panel.el.style.minHeight = '0';
      box.append(panel.el);
      document.body.replaceChildren(box);
      panel.update(state);
    }, COUNT);

    const panel = page.locator('#big-waiting');
    const list = panel.getByRole('list', { name: 'People waiting' });
    const rows = list.getByRole('listitem');
    await panel.getByRole('heading', { name: `Waiting to join (${COUNT})` }).waitFor();
    await list.getByText('Waiting 2', { exact: true }).waitFor();
    const shown = await rows.count();
    assert.ok(shown > 3 && shown <= 60, `${shown} waiting rows in the DOM for ${COUNT} people`);
    assert.ok((await list.getByRole('button', { name: 'Admit', exact: true }).count()) <= 60, 'Admit buttons bounded too');
    assert.equal(await rows.first().getAttribute('aria-setsize'), String(COUNT));
    await panel.getByRole('button', { name: 'Admit all', exact: true }).waitFor();
    // The members stay in reach below the waiting list.
    await panel.getByText('Hosting Hana (you)', { exact: true }).waitFor();
    await screenshot(page, 'participant-list-waiting-top');

    // Scrolled to the end of the waiting list: the last one waiting is there, the first is not.
    await list.evaluate((el) => { const s = el.parentElement; s.scrollTop = s.scrollHeight; });
    const last = rows.filter({ hasText: `Waiting ${COUNT}` });
    await last.waitFor();
    assert.equal(await list.getByText('Waiting 2', { exact: true }).count(), 0);
    assert.ok((await rows.count()) <= 60, 'still bounded after scrolling');
    assert.equal(await last.getAttribute('aria-posinset'), String(COUNT));
    await screenshot(page, 'participant-list-waiting-end');

    // Admitted by the button a person clicks: that one, and only that one.
    await last.getByRole('button', { name: 'Admit', exact: true }).click();
    assert.deepEqual(await page.evaluate(() => window.admitted), [10_000 + COUNT]);
    await panel.getByRole('heading', { name: `Waiting to join (${COUNT - 1})` }).waitFor();
    await eventually(() => list.getByText(`Waiting ${COUNT}`, { exact: true }).count(), (n) => n === 0, { what: 'the admitted one gone from the waiting list' });
    await list.getByText(`Waiting ${COUNT - 1}`, { exact: true }).waitFor();
    assert.ok((await rows.count()) <= 60, 'still bounded after an admit');
  });
});
