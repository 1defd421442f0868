// The "Participants" panel: who is here, who is waiting, and for hosts and
// co-hosts the controls over each of them and over the meeting.

import { h, hueOf, initials, replace, setText, syncList, toggle, uid } from './dom.js';
import { icon } from './icons.js';
import { isModerator } from './state.js';
import { publishButton } from './publishing.js';
import { createVirtualList, matchesSearch } from './virtual-list.js';

const ROLE_LABEL = { host: 'Host', cohost: 'Co-host', participant: '' };
/** How long a permission switch shows a choice the server has not confirmed (it may have refused it). */
const PENDING_MS = 2000;

/**
 * A permission switch: it shows what the moderator just chose until the
 * server's state changes to it, as other updates re-render the panel in
 * between; a choice never confirmed gives way to the server's after PENDING_MS.
 */
function permissionSwitch(labelText, accessibleName, send) {
  const sw = toggle(labelText, false, (on) => {
    sw.pending = true;
    clearTimeout(sw.timer);
    sw.timer = setTimeout(() => {
      sw.pending = false;
      sw.input.checked = sw.server;
    }, PENDING_MS);
    send(on);
  }, null, accessibleName);
  sw.server = undefined;
  sw.pending = false;
  /** The server's value, on each render. */
  sw.show = (value) => {
    if (value !== sw.server) {
      sw.server = value;
      sw.pending = false;
      clearTimeout(sw.timer);
    }
    if (!sw.pending) sw.input.checked = value;
  };
  return sw;
}

function iconButton(label, iconName, onClick, extra = '') {
  return h('button', { type: 'button', class: `row-btn ${extra}`, 'aria-label': label, title: label, onClick }, icon(iconName));
}

function textButton(label, onClick, extra = 'btn-secondary') {
  return h('button', { type: 'button', class: `btn btn-sm ${extra}`, text: label, onClick });
}

/**
 * What vouches for a member's name (docs/security.md §15): the provider, end
 * to end, checked by this page; or only the server.
 */
function whoVouches(p, state) {
  const n = state.e2ee?.names?.[String(p.id)];
  if (n?.badge === 'verified') {
    let host = '';
    try { host = new URL(n.issuer).host; } catch { /* shown without it */ }
    // The provider's name for them when the server shows another (their username, say).
    return [`Verified by ${n.provider}${host ? ` (${host})` : ''}`, n.name !== p.name ? n.name : '', n.email].filter(Boolean).join(' · ');
  }
  if (n?.badge === 'refused' && n.notPinned) return `Name from the server · provider not trusted (${n.notPinned})`;
  if (n?.badge === 'refused') return 'Name from the server · sign-in proof refused';
  return p.signed_in ? 'Name from the server' : 'Guest';
}

export function createParticipantsPanel(call, { onClose }) {
  const headingId = uid('ph');
  const count = h('span', { class: 'panel-count' });

  // Host tools: the lock, mute all, suspension and the permissions.
  const lockBtn = h('button', { type: 'button', class: 'tool' });
  const muteAllBtn = h('button', { type: 'button', class: 'tool' }, icon('micOff'), h('span', { text: 'Mute all' }));
  const suspendBtn = h('button', { type: 'button', class: 'tool tool-danger' });
  lockBtn.addEventListener('click', () => (call.state.meeting?.locked ? call.unlock() : call.lock()));
  muteAllBtn.addEventListener('click', () => call.muteAll());
  suspendBtn.addEventListener('click', () => (call.state.meeting?.suspended ? call.resumeActivities() : call.suspend()));

  // Visible labels are short; the accessible names say what the switch allows.
  const perm = {
    screen: permissionSwitch('Screen sharing', 'Allow screen sharing', (on) => call.setPermissions({ screen_share: on ? 'everyone' : 'host_only' })),
    chat: permissionSwitch('Chat', 'Allow chat', (on) => call.setPermissions({ chat: on })),
    unmute: permissionSwitch('Self-unmute', 'Allow self-unmute', (on) => call.setPermissions({ self_unmute: on })),
    rename: permissionSwitch('Renaming', 'Allow renaming', (on) => call.setPermissions({ rename_self: on })),
    publish: permissionSwitch('Camera and mic', 'Allow everyone to publish', (on) => call.setPermissions({ publish: on ? 'everyone' : 'allowed' })),
  };
  const tools = h('div', { class: 'host-tools', hidden: true },
    h('div', { class: 'tool-row' }, lockBtn, muteAllBtn),
    suspendBtn,
    h('p', { class: 'perm-caption', text: 'Participants may use' }),
    h('div', { class: 'perm-grid', role: 'group', 'aria-label': 'What participants may do' },
      perm.screen.label, perm.chat.label, perm.unmute.label, perm.rename.label, perm.publish.label));

  // The waiting room, as moderators see it.
  const waitingCount = h('span', { class: 'section-count' });
  const waitingList = h('ul', { class: 'people', 'aria-label': 'People waiting' });
  const admitAll = textButton('Admit all', () => call.admitAll(), 'btn-primary');
  // A thousand waiting: only the rows in view are in the DOM, as for the
  // members, in a scroller of its own so that the members stay in reach.
  const waitingScroll = h('div', { class: 'waiting-scroll' }, waitingList);
  const waitingBox = h('div', { class: 'waiting-box', hidden: true },
    h('div', { class: 'section-head' },
      h('h3', {}, 'Waiting to join ', waitingCount),
      admitAll),
    waitingScroll);

  // The members.
  const memberCount = h('span', { class: 'section-count' });
  const memberList = h('ul', { class: 'people people-members', 'aria-label': 'In the meeting' });
  // A thousand members: only the rows in view are in the DOM (virtual-list.js), found by name.
  const search = h('input', { type: 'search', class: 'people-search', 'aria-label': 'Search participants', placeholder: 'Search participants', autocomplete: 'off' });
  const noMatch = h('p', { class: 'people-none', text: 'Nobody here by that name.', hidden: true });
  search.addEventListener('input', () => update(call.state));
  // Members of the MLS group the server never announced: a warning, never hidden.
  const strangerList = h('ul', { class: 'people', 'aria-label': 'Not announced by the server' });
  const strangerBox = h('div', { class: 'stranger-box', role: 'alert', hidden: true },
    h('div', { class: 'section-head' }, h('h3', { text: 'Not announced by the server' })),
    strangerList);

  const el = h('section', { class: 'panel', id: 'panel-participants', 'aria-label': 'Participants' },
    h('header', { class: 'panel-head' },
      h('h2', { id: headingId }, 'Participants ', count),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close panel', title: 'Close panel', onClick: onClose }, icon('x'))),
    h('div', { class: 'panel-body' },
      tools,
      waitingBox,
      h('div', { class: 'section-head' }, h('h3', {}, 'In the meeting ', memberCount)),
      search,
      noMatch,
      memberList,
      strangerBox));
  const waiting = createVirtualList(waitingList, waitingScroll, {
    keyOf: (w) => w.id,
    create: createWaitingRow,
    update: updateWaitingRow,
  });
  const members = createVirtualList(memberList, el.querySelector('.panel-body'), {
    keyOf: (p) => p.id,
    create: createMemberRow,
    update: (row, p) => updateMemberRow(row, p, call.state),
  });

  let renaming = false;
  /** The member whose removal awaits confirmation, if any. */
  let confirmingRemoval = null;

  function update(state) {
    const mod = isModerator(state);
    const m = state.meeting;
    setText(count, `(${state.participants.length})`);

    tools.hidden = !mod;
    if (mod && m) {
      setTool(lockBtn, m.locked ? 'Unlock meeting' : 'Lock meeting', m.locked ? 'unlock' : 'lock');
      lockBtn.classList.toggle('is-on', m.locked);
      setTool(suspendBtn, m.suspended ? 'Resume participant activities' : 'Suspend participant activities', m.suspended ? 'play' : 'pause');
      suspendBtn.classList.toggle('is-on', m.suspended);
      perm.screen.show(m.permissions.screen_share === 'everyone');
      perm.chat.show(m.permissions.chat);
      perm.unmute.show(m.permissions.self_unmute);
      perm.rename.show(m.permissions.rename_self);
      perm.publish.show(m.permissions.publish !== 'allowed');
    }

    waitingBox.hidden = !mod || state.waiting.length === 0;
    setText(waitingCount, `(${state.waiting.length})`);
    waiting.render(mod ? state.waiting : []);

    setText(memberCount, `(${state.participants.length})`);
    const query = search.value.trim();
    const shown = query ? state.participants.filter((p) => matchesSearch(p.name, query)) : state.participants;
    noMatch.hidden = shown.length > 0;
    members.render(shown);

    // An id the group holds twice is listed twice: keyed by its place, not its id.
    const strangers = (state.e2ee?.status === 'active' ? state.e2ee.notAnnounced : []).map((id, i) => ({ id, key: `${id}#${i}` }));
    strangerBox.hidden = strangers.length === 0;
    syncList(strangerList, strangers, (x) => x.key, ({ id }) => h('li', { class: 'person is-unverified' },
      h('span', { class: 'avatar avatar-sm avatar-warn', 'aria-hidden': 'true' }, icon('alert')),
      h('span', { class: 'person-text' },
        h('span', { class: 'person-name', text: `Unannounced member ${id}` }),
        h('span', { class: 'person-sub', text: 'In the encrypted group, but the server does not list them' }))), () => {});
  }

  function createWaitingRow(w) {
    const name = h('span', { class: 'person-name' });
    const avatar = h('span', { class: 'avatar avatar-sm', 'aria-hidden': 'true' });
    const row = h('li', { class: `person${w.same_network_as_removed ? ' is-flagged' : ''}${w.recording ? ' is-recorder' : ''}` },
      avatar,
      h('span', { class: 'person-text' }, name, h('span', { class: 'person-sub', text: w.signed_in ? 'Signed in' : 'Guest' }),
        // Admitting a recorder starts a recording: said in full, never cut short.
        w.recording
          ? h('span', { class: 'badge badge-rec' }, h('span', { class: 'rec-dot', 'aria-hidden': 'true' }), h('span', { text: 'Records the meeting' }))
          : null,
        // Held although the waiting room may be off; see docs/security.md §8.
        w.same_network_as_removed
          ? h('span', { class: 'person-sub person-warn', text: 'Same network as someone removed from this meeting' })
          : null),
      h('span', { class: 'person-actions' },
        textButton('Admit', () => call.admit(w.id), 'btn-primary'),
        textButton('Deny', () => call.deny(w.id), 'btn-ghost')));
    row._refs = { name, avatar };
    return row;
  }

  function updateWaitingRow(row, w) {
    setText(row._refs.name, w.name);
    row._refs.name.title = w.name;
    setText(row._refs.avatar, initials(w.name));
    row._refs.avatar.className = `avatar avatar-sm hue-${hueOf(w.id)}`;
  }

  function createMemberRow(p) {
    const refs = {
      avatar: h('span', { class: 'avatar avatar-sm', 'aria-hidden': 'true' }),
      name: h('span', { class: 'person-name' }),
      sub: h('span', { class: 'person-sub' }),
      flags: h('span', { class: 'person-flags' }),
      actions: h('span', { class: 'person-actions' }),
      body: null,
      sig: '',
    };
    refs.body = h('span', { class: 'person-text' }, refs.name, refs.sub);
    const row = h('li', { class: 'person' }, refs.avatar, refs.body, refs.flags, refs.actions);
    row._refs = refs;
    return row;
  }

  function updateMemberRow(row, p, state) {
    const r = row._refs;
    const mine = p.id === state.you;
    setText(r.avatar, initials(p.name));
    r.avatar.className = `avatar avatar-sm hue-${hueOf(p.id)}`;
    setText(r.name, mine ? `${p.name} (you)` : p.name);
    r.name.title = p.name;
    // A recorder says so under its name, where a long name cannot push it out of sight.
    const sub = [p.recording ? 'Records the meeting' : '', ROLE_LABEL[p.role], p.presence === 'reconnecting' ? 'Reconnecting…' : '', whoVouches(p, state)]
      .filter(Boolean).join(' · ');
    setText(r.sub, sub);
    row.classList.toggle('is-reconnecting', p.presence === 'reconnecting');

    // Whether the MLS group holds this member: the roster shown is the group's.
    const e = state.e2ee;
    const inGroup = e?.status === 'active' && e.roster.includes(String(p.id));
    const outOfGroup = e?.status === 'active' && e.notInGroup.includes(String(p.id));
    row.classList.toggle('is-unverified', outOfGroup);
    const flagSig = `${p.audio}${p.video}${p.screen}${inGroup}${outOfGroup}`;
    if (r.flags.dataset.sig !== flagSig) {
      r.flags.dataset.sig = flagSig;
      replace(r.flags,
        outOfGroup ? flag('alert', 'Not in the encrypted group', false, 'flag-warn') : null,
        inGroup ? flag('lock', 'In the encrypted group', false, 'flag-ok') : null,
        p.screen ? flag('screen', 'Sharing screen') : null,
        flag(p.video ? 'video' : 'videoOff', p.video ? 'Camera on' : 'Camera off', !p.video),
        flag(p.audio ? 'mic' : 'micOff', p.audio ? 'Microphone on' : 'Muted', !p.audio));
    }

    // Rebuild the actions only when something they depend on changed, so a
    // button under the pointer or the keyboard focus is left alone.
    const canRename = mine && (isModerator(state) || state.meeting?.permissions.rename_self);
    const confirming = confirmingRemoval === p.id && isModerator(state) && !mine && p.role !== 'host';
    const confirmSig = confirming ? `${p.name}|${p.signed_in}` : '';
    if (r.confirmSig !== confirmSig) {
      r.confirmSig = confirmSig;
      r.confirm?.remove();
      r.confirm = confirming ? removalConfirmation(p) : null;
      if (r.confirm) row.append(r.confirm);
      row.classList.toggle('is-confirming', confirming);
      // Cancel has the focus, as in the dashboard's delete: Enter does no harm.
      r.confirm?.querySelector('.btn-ghost')?.focus();
    }
    const sig = [state.role, p.role, p.audio, p.video, p.screen, mine, canRename, renaming && mine,
      state.meeting?.permissions.publish, p.publish_allowed].join('|');
    if (r.sig === sig) return;
    r.sig = sig;
    r.actions.replaceChildren(...actionsFor(p, state, mine, canRename, row));
  }

  /**
   * Asks before a removal, saying what the ban that comes with it does and
   * does not stop (docs/security.md §8).
   */
  function removalConfirmation(p) {
    const titleId = uid('rm');
    const settle = (remove) => {
      confirmingRemoval = null;
      if (remove) call.remove(p.id);
      update(call.state);
    };
    return h('div', { class: 'remove-confirm', role: 'group', 'aria-labelledby': titleId },
      h('p', { class: 'remove-confirm-title', id: titleId, text: `Remove ${p.name} and ban them from this meeting?` }),
      h('p', { class: 'remove-confirm-detail', text: banScope(p.signed_in) }),
      h('div', { class: 'remove-confirm-actions' },
        textButton('Remove and ban', () => settle(true), 'btn-danger'),
        textButton('Cancel', () => settle(false), 'btn-ghost')));
  }

  function actionsFor(p, state, mine, canRename, row) {
    if (mine) {
      return canRename ? [iconButton('Rename', 'edit', () => startRename(row, p))] : [];
    }
    const myRole = state.role;
    if (!isModerator(state) || (myRole === 'cohost' && p.role === 'host')) return [];
    const out = [];
    const speak = publishButton(call, state, p);
    if (speak) out.push(speak);
    if (p.audio) out.push(iconButton('Mute', 'micOff', () => call.stopMedia(p.id, 'audio')));
    if (p.video) out.push(iconButton('Turn off video', 'videoOff', () => call.stopMedia(p.id, 'video')));
    if (p.screen) out.push(iconButton('Stop screen share', 'screenOff', () => call.stopMedia(p.id, 'screen')));
    if (myRole === 'host') {
      if (p.role === 'participant') out.push(iconButton('Make co-host', 'star', () => call.setRole(p.id, 'cohost')));
      else if (p.role === 'cohost') out.push(iconButton('Make participant', 'star', () => call.setRole(p.id, 'participant'), 'is-on'));
    }
    if (p.role !== 'host') {
      out.push(iconButton('Remove', 'userX', () => {
        confirmingRemoval = p.id;
        update(call.state);
      }, 'row-btn-danger'));
    }
    return out;
  }

  function startRename(row, p) {
    renaming = true;
    const r = row._refs;
    const input = h('input', { type: 'text', value: p.name, maxLength: 64, class: 'rename-input', autocomplete: 'off' });
    const form = h('form', { class: 'rename-form' },
      h('label', { class: 'sr-only', for: (input.id = uid('rn')), text: 'New name' }),
      input,
      h('button', { type: 'submit', class: 'row-btn', 'aria-label': 'Save name', title: 'Save name' }, icon('check')),
      h('button', { type: 'button', class: 'row-btn', 'aria-label': 'Cancel', title: 'Cancel', onClick: finish }, icon('x')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = input.value.trim();
      if (name && name !== p.name) call.rename(name);
      finish();
    });
    r.body.replaceChildren(form);
    r.actions.replaceChildren();
    input.focus();
    input.select();

    function finish() {
      renaming = false;
      r.body.replaceChildren(r.name, r.sub);
      r.sig = '';
      update(call.state);
    }
  }

  return { el, update };
}

/** What a ban holds on to, and what gets past it, for the host who is about to issue one. */
function banScope(signedIn) {
  return [
    signedIn ? 'Their account and this browser of theirs are banned.' : 'This browser of theirs is banned.',
    'Anyone new from the same network (IP address) must wait for a host, even with the waiting room off; people sharing that network wait too.',
    signedIn
      ? 'Signed out, in another browser on another network, they would arrive as a new guest: the waiting room and the lock stop that.'
      : 'In another browser, or with cookies cleared, on another network, they would arrive as a new guest: the waiting room and the lock stop that.',
  ].join(' ');
}

function setTool(button, label, iconName) {
  if (button.dataset.label === label) return;
  button.dataset.label = label;
  button.replaceChildren(icon(iconName), h('span', { text: label }));
}

function flag(iconName, label, off = false, extra = '') {
  return h('span', { class: `flag${off ? ' flag-off' : ''}${extra ? ` ${extra}` : ''}`, role: 'img', 'aria-label': label, title: label }, icon(iconName));
}
