// Raised hands, reactions and polls in a meeting of four browsers (a fifth
// joins late and is told what is still true): all of it
// travels as MLS application messages (web/appmsg.js) on the server's `app`
// relay, so the server relays ciphertext it cannot read, even with chat off. A guest who forges a host's action from their
// own page is ignored by everyone else, hostile poll text and names show as
// text, and no frame the server relayed (or any page sent) holds the
// plaintext of a reaction or a poll. Each step relies on the ones before it.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe } from 'node:test';
import { eventually, hostStartsMeeting, openBrowser, screenshot, startServer, storySteps } from './harness.js';

const HOST = 'ada';
const PASSWORD = 'correct horse battery staple';
const MARK = `PLAINMARK${crypto.randomBytes(6).toString('hex')}`;
const HOSTILE = '<img src=x onerror=alert(1)>';
const QUESTION = `${HOSTILE} Which ${MARK}?`;
const OPTIONS = ['<b>Red</b>', `Green ${MARK}`, 'Blue'];
const DAN = `Dan ${HOSTILE}`;

/** Records every text frame a page's sockets receive from the server. */
function recordReceived() {
  const Base = window.WebSocket;
  window.__received = [];
  window.WebSocket = class extends Base {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        if (typeof ev.data === 'string') window.__received.push(ev.data);
      });
    }
  };
}

describe('hands, reactions and polls, end to end encrypted', () => {
  let server;
  let invite;
  const b = {};
  const names = { host: HOST, bob: 'Bob', carol: 'Carol', dan: DAN };
  const all = () => Object.entries(b);
  const step = storySteps('features-', all);

  before(async () => {
    server = await startServer();
    server.createUser(HOST, PASSWORD);
    for (const who of Object.keys(names)) {
      b[who] = await openBrowser(`features-${who}`);
      await b[who].context.addInitScript(recordReceived);
    }
  });

  after(async () => {
    for (const x of Object.values(b)) if (x) await x.close();
    if (server) await server.stop('features-server.log');
  });

  const tileOf = (page, name) => page.locator('li.tile').filter({ has: page.locator('.tile-name', { hasText: name }) });
  const controls = (page) => page.getByRole('toolbar', { name: 'Meeting controls' });
  const handsList = (page) => page.getByRole('list', { name: 'Raised hands' });
  const others = (...not) => all().filter(([who]) => !not.includes(who));
  /** The names in a page's Raised hands list, in order. */
  const handOrder = (page) => page.evaluate(() => [...document.querySelectorAll('.hands-list:not([hidden]) .person-name')]
    .filter((el) => el.closest('.hands-box') && !el.closest('.hands-box').hidden).map((el) => el.textContent));
  /** Sends an application message from the page as-is, bypassing its UI (what a hostile member could do). */
  const forge = (page, msgs) => page.evaluate(async (list) => {
    const { currentFeatures } = await import('/assets/appmsg.js');
    const f = currentFeatures();
    for (const m of list) f.send(typeof m.participantName === 'string'
      ? { type: m.type, participant: f.call.state.participants.find((p) => p.name === m.participantName).id }
      : m);
  }, msgs);

  step('a host and three guests meet, all in the encrypted group', async () => {
    invite = await hostStartsMeeting(b.host.page, server.url, HOST, PASSWORD);
    for (const who of ['bob', 'carol', 'dan']) {
      const p = b[who].page;
      await p.goto(invite);
      await p.getByRole('textbox', { name: 'Your name', exact: true }).fill(names[who]);
      await p.getByRole('button', { name: 'Camera', exact: true }).click();
      await p.getByRole('button', { name: 'Join', exact: true }).click();
      await b.host.page.getByRole('listitem').filter({ hasText: names[who] }).getByRole('button', { name: 'Admit', exact: true }).click();
      await controls(p).waitFor();
    }
    for (const [who, x] of all()) {
      const inGroup = x.page.getByRole('list', { name: 'In the meeting' }).getByRole('img', { name: 'In the encrypted group', exact: true });
      await eventually(() => inGroup.count(), (n) => n === 4, { timeout: 30_000, what: `${who} sees four members in the group` });
    }
  });

  step('hands go up in order on every page and come down by their owner', async () => {
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    await controls(b.bob.page).getByRole('button', { name: 'Lower hand', exact: true }).waitFor();
    for (const [, x] of others('bob')) await tileOf(x.page, 'Bob').getByRole('img', { name: 'Hand raised', exact: true }).waitFor();
    await b.host.page.getByText('Bob raised their hand.').first().waitFor();
    await controls(b.carol.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [who, x] of all()) {
      const order = await eventually(() => handOrder(x.page), (o) => o.length === 2, { what: `${who} sees two hands` });
      assert.deepEqual(order.map((n) => n.replace(' (you)', '')), ['Bob', 'Carol'], `${who}: in the order raised`);
    }
    await screenshot(b.host.page, 'features-hands');
    await controls(b.bob.page).getByRole('button', { name: 'Lower hand', exact: true }).click();
    for (const [who, x] of all()) {
      await eventually(() => handOrder(x.page), (o) => o.length === 1 && o[0].startsWith('Carol'), { what: `${who}: only Carol's hand is up` });
      assert.equal(await tileOf(x.page, 'Bob').getByRole('img', { name: 'Hand raised', exact: true }).count(), 0);
    }
  });

  step('a guest sees no Lower hand for others; the host lowers Carol\'s hand for everyone', async () => {
    assert.equal(await handsList(b.bob.page).getByRole('button', { name: 'Lower hand', exact: true }).count(), 0);
    await handsList(b.host.page).getByRole('listitem').filter({ hasText: 'Carol' }).getByRole('button', { name: 'Lower hand', exact: true }).click();
    await b.carol.page.getByText('A host lowered your hand.').first().waitFor();
    await controls(b.carol.page).getByRole('button', { name: 'Raise hand', exact: true }).waitFor();
    for (const [who, x] of all()) {
      await eventually(() => handOrder(x.page), (o) => o.length === 0, { what: `${who}: no hands` });
    }
  });

  step('with chat off, a participant\'s hand still goes up (it rides its own `app` relay), and chat stays refused', async () => {
    await b.host.page.getByRole('switch', { name: 'Allow chat', exact: true }).uncheck();
    await b.bob.page.getByText('The host has turned chat off.').first().waitFor();
    const sentOf = (type) => b.bob.page.evaluate((t) => window.__sent.filter((m) => m.type === t).length, type);
    const chatsBefore = await sentOf('chat');
    const appsBefore = await sentOf('app');
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [who, x] of all()) {
      await eventually(() => handOrder(x.page), (o) => o.length === 1 && o[0].startsWith('Bob'), { what: `${who} sees Bob's hand with chat off` });
    }
    assert.equal(await sentOf('chat'), chatsBefore, 'the hand went as app, not chat');
    assert.ok((await sentOf('app')) > appsBefore, 'the hand went as app');
    assert.equal(await b.bob.page.getByText('The host has turned chat off, and with it hands, reactions and polls.').count(), 0);
    await controls(b.bob.page).getByRole('button', { name: 'Lower hand', exact: true }).click();
    for (const [who, x] of all()) await eventually(() => handOrder(x.page), (o) => o.length === 0, { what: `${who}: Bob's hand down` });
    // A message the server refuses (sent past the client's own check) must not
    // shift the echo of Bob's later messages onto the wrong text.
    await b.bob.page.evaluate(() => import('/assets/appmsg.js').then((m) => m.currentFeatures().call.e2ee.sendChat('refused line')));
    await eventually(() => b.bob.page.evaluate(() => window.__received.filter((f) => f.includes('"not_permitted"')).length), (n) => n > 0, { what: 'the server refused it' });
    await b.host.page.getByRole('switch', { name: 'Allow chat', exact: true }).check();
    await eventually(() => b.bob.page.getByRole('textbox', { name: 'Message', exact: true }).isEnabled(), (on) => on, { what: 'chat back on at Bob' });
    await b.bob.page.getByRole('textbox', { name: 'Message', exact: true }).fill('chat is back');
    await b.bob.page.getByRole('button', { name: 'Send', exact: true }).click();
    for (const [who, x] of all()) {
      const log = x.page.getByRole('log', { name: 'Chat history' });
      await log.getByText('chat is back', { exact: true }).waitFor();
      assert.equal(await log.getByText('refused line').count(), 0, `${who}: the refused line is nowhere`);
    }
  });

  step('a guest\'s forged host actions are ignored by everyone else', async () => {
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [, x] of all()) await tileOf(x.page, 'Bob').getByRole('img', { name: 'Hand raised', exact: true }).waitFor();
    // Dan, not a host, sends what only a host may: lower Bob's hand, ask a poll,
    // share results; then raises his own hand, which everyone sees after them
    // (the server relays in one order to all).
    await forge(b.dan.page, [
      { type: 'hand_lower', participantName: 'Bob' },
      { type: 'poll', id: '0123456789abcdef', question: `Forged ${MARK}`, options: ['a', 'b'] },
      { type: 'poll_results', id: '0123456789abcdef', counts: [9, 9] },
      { type: 'hand', raised: true },
    ]);
    for (const [who, x] of others('dan')) {
      await eventually(() => handOrder(x.page), (o) => o.length === 2, { what: `${who} sees Dan's hand after the forgeries` });
      const order = await handOrder(x.page);
      assert.equal(order[0].replace(' (you)', ''), 'Bob', `${who} keeps Bob's hand`);
      assert.equal(await x.page.getByRole('region', { name: 'Poll' }).count(), 0, `${who} shows no forged poll`);
    }
    // Through the client's own API (not a raw send) a guest is told no, and nothing is sent.
    const sent = await b.dan.page.evaluate(async () => {
      const { currentFeatures } = await import('/assets/appmsg.js');
      const f = currentFeatures();
      const before = window.__sent.length;
      const r = [f.lowerHand(f.call.state.participants.find((p) => p.name === 'Bob').id), f.askPoll('Q?', ['a', 'b']), window.__sent.length - before];
      return r;
    });
    assert.deepEqual(sent, [false, false, 0]);
    await b.dan.page.getByText('Only hosts and co-hosts can lower someone else\'s hand.').first().waitFor();
    await b.dan.page.getByText('Only hosts and co-hosts can ask a poll.').first().waitFor();
    await controls(b.bob.page).getByRole('button', { name: 'Lower hand', exact: true }).click();
    await controls(b.dan.page).getByRole('button', { name: 'Lower hand', exact: true }).click();
    for (const [who, x] of all()) await eventually(() => handOrder(x.page), (o) => o.length === 0, { what: `${who}: no hands` });
  });

  step('malformed, unknown and oversized application messages are dropped by every receiver', async () => {
    /** Seals each text behind the application-message tag, as a hostile page could. */
    const raw = (page, texts) => page.evaluate(async (list) => {
      const { APP_PREFIX, currentFeatures } = await import('/assets/appmsg.js');
      for (const t of list) currentFeatures().call.e2ee.sendChat(APP_PREFIX + t, 'app');
    }, texts);
    const j = (o) => JSON.stringify(o);
    // From the host, so that only the checks on content can drop them.
    await raw(b.host.page, [
      'not json',
      j([1, 2]),
      j({ type: 'unknown' }),
      j({ type: 'poll', id: '0123456789abcdef', question: 'x'.repeat(301), options: ['a', 'b'] }),
      j({ type: 'poll', id: '0123456789abcdef', question: `Seven ${MARK}?`, options: ['1', '2', '3', '4', '5', '6', '7'] }),
      j({ type: 'poll', id: 'NOT-HEX', question: `Id ${MARK}?`, options: ['a', 'b'] }),
      j({ type: 'poll', id: '0123456789abcdef', question: `Blank ${MARK}?`, options: ['a', '   '] }),
      j({ type: 'hand_lower', participant: '1' }),
    ]);
    await raw(b.dan.page, [
      j({ type: 'hand', raised: 'yes' }),
      j({ type: 'hand', raised: true, pad: 'x'.repeat(5000) }),
      j({ type: 'reaction', emoji: HOSTILE }),
      // The sentinel: valid, after all of the above in the server's one order.
      j({ type: 'reaction', emoji: '👏' }),
    ]);
    for (const [who, x] of others('dan')) {
      await tileOf(x.page, DAN).getByRole('img', { name: 'Reacted with clapping hands', exact: true }).waitFor({ timeout: 5000 });
      assert.deepEqual(await handOrder(x.page), [], `${who}: no hand from a malformed or oversized message`);
      assert.equal(await x.page.getByRole('region', { name: 'Poll' }).count(), 0, `${who}: no malformed poll`);
      assert.equal(await tileOf(x.page, DAN).locator('.reaction-float').count(), 1, `${who}: only the valid reaction floats`);
      assert.equal(await x.page.getByRole('log', { name: 'Chat history' }).getByRole('listitem').count(), 1, `${who}: nothing shown as chat but Bob's one line`);
    }
  });

  step('a reaction floats over the sender\'s tile on the others\' pages, and floods are cut', async () => {
    const c = b.carol.page;
    await controls(c).getByRole('button', { name: 'Reactions', exact: true }).click();
    await c.getByRole('button', { name: 'React with thumbs up', exact: true }).click();
    for (const [, x] of others('carol')) {
      await tileOf(x.page, 'Carol').getByRole('img', { name: 'Reacted with thumbs up', exact: true }).waitFor({ timeout: 3000 });
    }
    await screenshot(b.host.page, 'features-reaction');
    // The sender's own limit: four in five seconds; the fifth is refused on the spot.
    // Five hearts, so that it holds even when the thumbs up above has left the
    // window on a slow machine (then the fifth heart is the one refused).
    for (let i = 0; i < 5; i += 1) await c.getByRole('button', { name: 'React with heart', exact: true }).click();
    await c.getByText('Too many reactions: wait a moment.').first().waitFor();
    // The row stays open for more, and a press elsewhere puts it away.
    await c.getByRole('group', { name: 'Reactions' }).waitFor();
    await c.getByRole('heading', { name: 'Chat', exact: true }).click();
    await c.getByRole('group', { name: 'Reactions' }).waitFor({ state: 'hidden' });
    assert.equal(await controls(c).getByRole('button', { name: 'Reactions', exact: true }).getAttribute('aria-expanded'), 'false');
    // The receivers' limit holds against a sender who skips its own: Dan sends twelve at once.
    await forge(b.dan.page, Array.from({ length: 12 }, () => ({ type: 'reaction', emoji: '🎉' })));
    for (const [who, x] of others('dan')) {
      const floats = tileOf(x.page, 'Dan').getByRole('img', { name: 'Reacted with party popper', exact: true });
      await floats.first().waitFor({ timeout: 3000 });
      await new Promise((r) => setTimeout(r, 500));
      const n = await floats.count();
      assert.ok(n >= 1 && n <= 5, `${who} shows ${n} of Dan's twelve reactions (5 at most)`);
    }
  });

  step('the host asks a poll, three answer, the host shares the results, everyone sees them as text', async () => {
    const hp = b.host.page;
    await controls(hp).getByRole('button', { name: 'Poll', exact: true }).click();
    const form = hp.getByRole('region', { name: 'Poll' });
    await form.getByRole('textbox', { name: 'Question', exact: true }).fill(QUESTION);
    await form.getByRole('textbox', { name: 'Option 1', exact: true }).fill(OPTIONS[0]);
    await form.getByRole('textbox', { name: 'Option 2', exact: true }).fill(OPTIONS[1]);
    await form.getByRole('button', { name: 'Add option', exact: true }).click();
    await form.getByRole('textbox', { name: 'Option 3', exact: true }).fill(OPTIONS[2]);
    await form.getByRole('button', { name: 'Ask', exact: true }).click();
    await hp.getByRole('region', { name: 'Poll' }).getByText('0 answers so far').waitFor();
    const picks = { bob: 0, carol: 1, dan: 0 };
    for (const [who, choice] of Object.entries(picks)) {
      const card = b[who].page.getByRole('region', { name: 'Poll' });
      await card.getByText(QUESTION, { exact: true }).waitFor();
      await card.getByRole('radio', { name: OPTIONS[choice], exact: true }).check();
      await card.getByText('Your answer was sent.').waitFor();
    }
    const live = hp.getByRole('list', { name: 'Answers so far' });
    await hp.getByText('3 answers so far').waitFor();
    await live.getByRole('listitem').filter({ hasText: OPTIONS[0] }).getByText('2 votes').waitFor();
    await live.getByRole('listitem').filter({ hasText: OPTIONS[1] }).getByText('1 vote', { exact: true }).waitFor();
    await screenshot(hp, 'features-poll-host');
    await hp.getByRole('button', { name: 'Share results', exact: true }).click();
    for (const [who, x] of all()) {
      const results = x.page.getByRole('list', { name: 'Poll results' });
      await results.waitFor();
      const rows = await results.getByRole('listitem').allTextContents();
      assert.deepEqual(rows, [`${OPTIONS[0]}2 votes`, `${OPTIONS[1]}1 vote`, `${OPTIONS[2]}0 votes`], `${who} sees the results`);
      // Hostile text stays text: no element was made from it, no dialog opened.
      assert.equal(await x.page.locator('.poll-card img, .poll-card b, .hands-box img, .tile img').count(), 0, `${who}: no markup from the poll or names`);
    }
    await screenshot(b.bob.page, 'features-poll-results');
    await tileOf(b.host.page, DAN).waitFor();
  });

  step('a newcomer sees the hands still up and the poll with its results', async () => {
    await controls(b.bob.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [who, x] of all()) await eventually(() => handOrder(x.page), (o) => o.length === 1, { what: `${who} sees Bob's hand` });
    // Eve joins after all of it: MLS gives her nothing from before, so what is
    // still true is said again by whoever it is about.
    b.eve = await openBrowser('features-eve');
    await b.eve.context.addInitScript(recordReceived);
    const p = b.eve.page;
    await p.goto(invite);
    await p.getByRole('textbox', { name: 'Your name', exact: true }).fill('Eve');
    await p.getByRole('button', { name: 'Camera', exact: true }).click();
    await p.getByRole('button', { name: 'Join', exact: true }).click();
    await b.host.page.getByRole('listitem').filter({ hasText: 'Eve' }).getByRole('button', { name: 'Admit', exact: true }).click();
    await controls(p).waitFor();
    await eventually(() => handOrder(p), (o) => o.length === 1 && o[0] === 'Bob', { timeout: 20_000, what: 'Eve sees Bob\'s hand' });
    await tileOf(p, 'Bob').getByRole('img', { name: 'Hand raised', exact: true }).waitFor();
    const results = p.getByRole('list', { name: 'Poll results' });
    await results.waitFor();
    assert.deepEqual(await results.getByRole('listitem').allTextContents(), [`${OPTIONS[0]}2 votes`, `${OPTIONS[1]}1 vote`, `${OPTIONS[2]}0 votes`]);
    await p.getByRole('region', { name: 'Poll' }).getByText(QUESTION, { exact: true }).waitFor();
  });

  step('a member back after a reload is told again too', async () => {
    const p = b.carol.page;
    await p.reload();
    await controls(p).waitFor({ timeout: 20_000 });
    await eventually(() => handOrder(p), (o) => o.length === 1 && o[0] === 'Bob', { timeout: 20_000, what: 'Carol sees Bob\'s hand again' });
    await p.getByRole('list', { name: 'Poll results' }).waitFor();
    await controls(b.bob.page).getByRole('button', { name: 'Lower hand', exact: true }).click();
    for (const [who, x] of all()) await eventually(() => handOrder(x.page), (o) => o.length === 0, { what: `${who}: no hands` });
  });

  step('a raised hand comes down when its owner leaves', async () => {
    await controls(b.dan.page).getByRole('button', { name: 'Raise hand', exact: true }).click();
    for (const [who, x] of others('dan')) await eventually(() => handOrder(x.page), (o) => o.length === 1 && o[0] === DAN, { what: `${who} sees Dan's hand` });
    await controls(b.dan.page).getByRole('button', { name: 'Leave', exact: true }).click();
    for (const [who, x] of others('dan')) await eventually(() => handOrder(x.page), (o) => o.length === 0, { what: `${who}: Dan's hand went with him` });
  });

  step('the server relayed only ciphertext: no frame holds a reaction, poll or hand in the clear', async () => {
    let appFrames = 0;
    for (const [who, x] of all()) {
      const { received, sent } = await x.page.evaluate(() => ({ received: window.__received || [], sent: JSON.stringify(window.__sent || []) }));
      assert.ok(received.length > 0, `${who} recorded frames`);
      appFrames += received.filter((f) => f.includes('"type":"app"')).length;
      for (const [where, text] of [['received', received.join('\n')], ['sent', sent]]) {
        for (const needle of [MARK, 'conclave-app', '"reaction"', 'poll_answer', '"hand"', '👍', '\\ud83d\\udc4d', 'Red</b>']) {
          assert.ok(!text.toLowerCase().includes(needle.toLowerCase()), `${who}: ${where} frames hold ${JSON.stringify(needle)}`);
        }
      }
    }
    // Everything above went through the server as `app` frames: dozens of them.
    assert.ok(appFrames > 40, `app frames relayed: ${appFrames}`);
    for (const [who, x] of all()) {
      assert.deepEqual(x.alerts, [], `${who}: no dialog`);
      assert.deepEqual(x.errors, [], `${who}: no page error`);
    }
  });
});
