// Breakout rooms in the browser. A room is a meeting of its own (its own
// page at /j/{room}, socket, media and MLS group): moving there is leaving
// this meeting and joining that one with the ticket the server handed this
// member alone; coming back is the same with the return ticket. Tickets and
// where to come back to are kept in sessionStorage, so a reload inside a
// room still knows its way back.
//
// Hosts and co-hosts get a "Breakout rooms" panel to plan, open, visit,
// broadcast to and close the rooms; members in a room see which room they
// are in, the host's messages and the closing countdown.

import { h, replace, setText } from './dom.js';
import { icon } from './icons.js';
import { navigate } from './router.js';
import { isModerator } from './state.js';
import { toast } from './toast.js';

const PASS = 'conclave.breakout.pass.'; // meeting -> {ticket, name}: a ticket for entering it
const ROOM = 'conclave.breakout.room.'; // room -> {roomName, parent, returnTicket, allowReturn}
const MAX_ROOMS = 20;

function load(key) {
  try {
    return JSON.parse(sessionStorage.getItem(key) || 'null');
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    if (value) sessionStorage.setItem(key, JSON.stringify(value));
    else sessionStorage.removeItem(key);
  } catch {
    // Without storage a reload inside a room loses the way back: join again.
  }
}

/** The ticket this page may enter `meetingId` with ({ticket, name}), or null. */
export function breakoutPass(meetingId) {
  return load(PASS + meetingId);
}

/** The ticket was used (or refused): it is not offered again. */
export function forgetBreakoutPass(meetingId) {
  store(PASS + meetingId, null);
}

/** The breakout room `meetingId` is, for this page ({roomName, parent, ...}), or null. */
export function roomContext(meetingId) {
  return load(ROOM + meetingId);
}

function goTo(room, { ticket, name }) {
  store(PASS + room, { ticket, name });
  navigate(`/j/${room}`);
}

function goBack(meetingId, name) {
  const ctx = roomContext(meetingId);
  if (!ctx) return false;
  store(ROOM + meetingId, null);
  goTo(ctx.parent, { ticket: ctx.returnTicket, name });
  return true;
}

/**
 * A room's meeting is over: when the rooms closed, back to the main meeting
 * at once. True when it navigated.
 */
export function afterBreakout(meetingId, outcome, name) {
  if (outcome?.kind !== 'ended' || outcome.reason !== 'breakout_closed') return false;
  return goBack(meetingId, name);
}

/**
 * The breakout controls of the meeting screen for `call`: the moderators'
 * panel (toggled from the toolbar) and, inside a room, its banner.
 * Returns {update(state), destroy()}.
 */
export function mountBreakout(call, { toolbar, stage }) {
  const inRoom = roomContext(call.meetingId);
  let rooms = []; // as the server last listed them (moderators)
  let allowReturn = false;
  let closesAt = null;
  let ticker = null;
  let state = call.state;
  const assignment = new Map(); // participant id -> room index (or -1: main room)

  // --- everyone: what the server says about rooms ---------------------------
  call.onBreakout = (msg) => {
    switch (msg.type) {
      case 'breakout_move':
        // A room's member is moved only once; a host may also visit.
        store(ROOM + msg.room, { roomName: msg.name, parent: call.meetingId, returnTicket: msg.return_ticket, allowReturn: !!msg.allow_return });
        goTo(msg.room, { ticket: msg.ticket, name: call.name });
        break;
      case 'breakout_rooms':
        rooms = Array.isArray(msg.rooms) ? msg.rooms : [];
        allowReturn = !!msg.allow_return;
        closesAt = rooms.length && msg.closing_in ? Date.now() + msg.closing_in * 1000 : null;
        renderPanel();
        tick();
        break;
      case 'breakout_broadcast':
        setText(notice, `Message from ${msg.from}: ${msg.text}`);
        notice.hidden = false;
        banner.hidden = false;
        toast(`Message from ${msg.from}: ${msg.text}`, 'info');
        break;
      case 'breakout_closing':
        closesAt = Date.now() + msg.seconds * 1000;
        tick();
        break;
      default:
        break;
    }
  };

  const notice = h('p', { class: 'breakout-notice', role: 'status', hidden: true });
  const countdown = h('p', { class: 'breakout-countdown', role: 'status', hidden: true });
  function tick() {
    if (!closesAt) {
      countdown.hidden = true;
      if (ticker) clearInterval(ticker);
      ticker = null;
      return;
    }
    const left = Math.max(0, Math.ceil((closesAt - Date.now()) / 1000));
    setText(countdown, `Breakout rooms close in ${left} second${left === 1 ? '' : 's'}.`);
    countdown.hidden = false;
    banner.hidden = false;
    if (!ticker) ticker = setInterval(tick, 1000);
  }

  // --- inside a room: its name and the way back ---------------------------
  const banner = h('div', { class: 'breakout-banner', hidden: !inRoom });
  if (inRoom) {
    const back = inRoom.allowReturn
      ? h('button', { type: 'button', class: 'btn btn-secondary btn-sm', text: 'Return to main room', onClick: () => goBack(call.meetingId, call.name) })
      : null;
    replace(banner,
      h('p', { role: 'status', text: `You are in breakout room ${inRoom.roomName}` }),
      back);
  }
  banner.append(notice, countdown);

  // --- moderators of the main meeting: plan, open, visit, broadcast, close --
  const toggle = h('button', {
    type: 'button', class: 'ctl ctl-panel', 'aria-label': 'Breakout rooms', 'aria-expanded': 'false', hidden: true,
  }, h('span', { class: 'ctl-icon' }, icon('users')), h('span', { class: 'ctl-label', text: 'Rooms', 'aria-hidden': 'true' }));
  const panel = h('section', { class: 'breakout-panel', role: 'dialog', 'aria-label': 'Breakout rooms', hidden: true });
  toggle.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute('aria-expanded', String(!panel.hidden));
    renderPanel();
  });

  const count = h('input', { type: 'number', min: 1, max: MAX_ROOMS, value: 2, 'aria-label': 'Number of rooms' });
  count.addEventListener('input', () => renderPanel());
  const mayReturn = h('input', { type: 'checkbox', id: 'breakout-may-return' });
  const closeAfter = h('input', { type: 'number', min: 0, max: 120, value: 10, 'aria-label': 'Close after (seconds)' });
  const message = h('input', { type: 'text', maxLength: 500, 'aria-label': 'Message to all rooms' });

  const roomCount = () => Math.min(MAX_ROOMS, Math.max(1, Number.parseInt(count.value, 10) || 1));
  const roomName = (i) => `Room ${i + 1}`;
  const movable = () => state.participants.filter((p) => p.id !== state.you && p.role === 'participant' && !p.recording);

  function planEditor() {
    const n = roomCount();
    const people = movable();
    const rows = people.map((p) => {
      const select = h('select', { 'aria-label': `Room for ${p.name}` },
        h('option', { value: '-1', text: 'Main room' }),
        Array.from({ length: n }, (_, i) => h('option', { value: String(i), text: roomName(i) })));
      select.value = String(Math.min(assignment.get(p.id) ?? -1, n - 1));
      select.addEventListener('change', () => assignment.set(p.id, Number(select.value)));
      return h('li', {}, h('span', { class: 'person-name', text: p.name }), select);
    });
    const auto = h('button', {
      type: 'button', class: 'btn btn-secondary btn-sm', text: 'Assign automatically',
      onClick: () => {
        people.forEach((p, i) => assignment.set(p.id, i % n));
        renderPanel();
      },
    });
    const open = h('button', {
      type: 'button', class: 'btn btn-primary', text: 'Open rooms',
      onClick: () => {
        const plan = Array.from({ length: n }, (_, i) => ({ name: roomName(i), participants: [] }));
        for (const p of movable()) {
          const i = assignment.get(p.id) ?? -1;
          if (i >= 0 && i < n) plan[i].participants.push(p.id);
        }
        call.send({ type: 'breakout_open', rooms: plan, allow_return: mayReturn.checked });
      },
    });
    return [
      h('label', { class: 'field-inline' }, h('span', { text: 'Number of rooms' }), count),
      people.length
        ? h('ul', { class: 'breakout-assign', 'aria-label': 'Assignments' }, rows)
        : h('p', { text: 'Nobody to assign yet.' }),
      auto,
      h('label', { class: 'field-inline', for: 'breakout-may-return' }, mayReturn, h('span', { text: 'Let participants return to the main room' })),
      open,
    ];
  }

  function openRooms() {
    const list = h('ul', { class: 'breakout-rooms', 'aria-label': 'Open rooms' },
      rooms.map((r) => h('li', {},
        h('span', { class: 'room-name', text: r.name }),
        h('span', { class: 'room-people', text: r.assigned.length ? r.assigned.join(', ') : 'Nobody assigned' }),
        h('button', { type: 'button', class: 'btn btn-secondary btn-sm', text: `Visit ${r.name}`, onClick: () => call.send({ type: 'breakout_visit', room: r.room }) }))));
    const broadcast = h('button', {
      type: 'button', class: 'btn btn-secondary btn-sm', text: 'Broadcast',
      onClick: () => {
        const text = message.value.trim();
        if (!text) return;
        call.send({ type: 'breakout_broadcast', text });
        message.value = '';
      },
    });
    const close = h('button', {
      type: 'button', class: 'btn btn-danger', text: 'Close rooms',
      onClick: () => call.send({ type: 'breakout_close', countdown_secs: Math.max(0, Math.min(120, Number.parseInt(closeAfter.value, 10) || 0)) }),
    });
    return [
      list,
      h('p', { text: allowReturn ? 'Participants may return to the main room.' : 'Participants stay in their rooms until they close.' }),
      h('div', { class: 'field-inline' }, message, broadcast),
      h('div', { class: 'field-inline' }, h('label', { text: 'Close after (seconds)' }), closeAfter, close),
    ];
  }

  function renderPanel() {
    if (panel.hidden) return;
    replace(panel, h('h2', { text: 'Breakout rooms' }), rooms.length ? openRooms() : planEditor(), countdown.hidden ? null : h('p', { text: countdown.textContent }));
  }

  if (!document.querySelector('link[data-breakout-css]')) {
    document.head.append(h('link', { rel: 'stylesheet', href: '/assets/breakout.css', 'data-breakout-css': '' }));
  }
  toolbar.querySelector('.toolbar-right')?.prepend(toggle);
  // A row of its own above the stage (as the reconnect banner), not over the tiles.
  const body = stage.closest('.meeting-body');
  if (body) body.before(banner);
  else stage.prepend(banner);
  stage.append(panel);

  function update(next) {
    const grew = movable().length;
    state = next;
    const host = !inRoom && isModerator(state);
    toggle.hidden = !host;
    if (!host) panel.hidden = true;
    banner.hidden = !inRoom && notice.hidden && countdown.hidden;
    // Rebuild the plan only when who may be assigned changed, not on every
    // state change (a select being chosen would lose its focus).
    if (!rooms.length && movable().length !== grew) renderPanel();
  }

  return {
    update,
    destroy() {
      call.onBreakout = null;
      if (ticker) clearInterval(ticker);
      toggle.remove();
      banner.remove();
      panel.remove();
    },
  };
}
