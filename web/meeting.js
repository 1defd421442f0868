// The meeting screen: top bar, the participant grid, the side panels and the
// control bar, all rendered from the call's state.

import { mountBreakout } from './breakout.js';
import { createChatPanel } from './chat.js';
import { copyText, h, setText } from './dom.js';
import { createGrid } from './grid.js';
import { mountFeatures } from './features.js';
import { createLayoutControl, loadLayoutStyles } from './layout.js';
import { icon, logo } from './icons.js';
import { createParticipantsPanel } from './participants.js';
import { createSecurityPanel } from './security.js';
import { isRecorded } from './state.js';
import { createToolbar } from './toolbar.js';
import { toast } from './toast.js';

/** Below this width the side panels cover the stage instead of sitting beside it. */
const WIDE_PX = 1000;

/** Mounts the meeting for `call` into `root`; `inviteLink` is known to the owner. Returns cleanup. */
export function mountMeeting(root, call, { inviteLink = null } = {}) {
  document.body.dataset.theme = 'dark';
  const wide = window.innerWidth >= WIDE_PX;
  const panels = { participants: wide, chat: wide, unread: 0 };
  let seenChat = call.state.chat.length;

  loadLayoutStyles();
  const layout = createLayoutControl(call, () => render(call.state));
  const grid = createGrid({
    onViewSize: (participant, kind, w, hgt) => call.streams?.viewSize(participant, kind, w, hgt),
    onPin: (participant) => layout.pin(participant),
    onSpotlight: (participant, on) => layout.spotlight(participant, on),
  });
  const participants = createParticipantsPanel(call, { onClose: () => togglePanel('participants', false) });
  const chat = createChatPanel(call, { onClose: () => togglePanel('chat', false) });
  const security = createSecurityPanel();
  const toolbar = createToolbar({
    onMedia: (kind, on) => call.setMedia(kind, on),
    onLeave: () => call.leave(),
    onEnd: () => call.endForAll(),
    onTogglePanel: (name) => togglePanel(name),
  });

  const title = h('h1', { class: 'mt-title' });
  const lockedBadge = h('span', { class: 'badge badge-warn', hidden: true }, icon('lock'), h('span', { text: 'Locked' }));
  const suspendedBadge = h('span', { class: 'badge badge-danger', hidden: true }, icon('pause'), h('span', { text: 'Activities suspended' }));
  // While a recorder is a member, for everyone (the server lists it like anyone).
  const recordingBadge = h('span', { class: 'badge badge-rec', role: 'status', 'aria-label': 'Recording', hidden: true },
    h('span', { class: 'rec-dot', 'aria-hidden': 'true' }), h('span', { text: 'Recording' }));
  const copyLink = inviteLink
    ? h('button', {
      type: 'button',
      class: 'btn btn-dark btn-sm',
      onClick: async () => {
        if (await copyText(inviteLink)) toast('Invite link copied.', 'success');
        else toast('Could not copy the invite link.', 'error');
      },
    }, icon('link'), h('span', { text: 'Copy invite link' }))
    : null;

  const bannerText = h('span');
  const banner = h('div', { class: 'reconnect-banner', role: 'alert', hidden: true },
    h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), bannerText);

  const mediaErrorText = h('span');
  const mediaError = h('div', { class: 'media-error', role: 'alert', hidden: true }, mediaErrorText,
    h('button', { type: 'button', class: 'btn btn-dark btn-sm', text: 'Dismiss', onClick: () => call.streams?.dismissError() }));

  const sidebar = h('aside', { class: 'sidebar', 'aria-label': 'Side panels' }, participants.el, chat.el);
  const screen = h('div', { class: 'meeting' },
    h('header', { class: 'meeting-top' },
      h('div', { class: 'mt-left' }, logo(), title, recordingBadge, lockedBadge, suspendedBadge),
      h('div', { class: 'mt-right' }, security.el, copyLink)),
    banner,
    mediaError,
    h('div', { class: 'meeting-body' },
      h('main', { class: 'stage-wrap' }, grid.el),
      sidebar),
    toolbar.el);
  root.replaceChildren(screen);
  toolbar.el.querySelector('.toolbar-right')?.prepend(layout.el);
  const features = mountFeatures(call, {
    toolbar: toolbar.el, stage: screen.querySelector('.stage-wrap'), participantsBody: participants.el.querySelector('.panel-body'), grid: grid.el,
  });

  const breakout = mountBreakout(call, { toolbar: toolbar.el, stage: screen.querySelector('.stage-wrap') });

  function togglePanel(name, open = !panels[name]) {
    panels[name] = open;
    if (name === 'chat' && open) {
      panels.unread = 0;
      seenChat = call.state.chat.length;
    }
    render(call.state);
    if (name === 'chat' && open) chat.focus();
  }

  let bannerTimer = null;
  function renderBanner(state) {
    const reconnecting = state.connection === 'reconnecting';
    banner.hidden = !reconnecting;
    if (reconnecting) {
      const left = Math.max(0, Math.ceil((state.reconnectDeadline - Date.now()) / 1000));
      setText(bannerText, `Connection lost. Reconnecting… Your place is kept for ${left} more second${left === 1 ? '' : 's'}.`);
      if (!bannerTimer) bannerTimer = setInterval(() => renderBanner(call.state), 1000);
    } else if (bannerTimer) {
      clearInterval(bannerTimer);
      bannerTimer = null;
    }
  }

  function render(state) {
    if (state.phase !== 'joined') return;
    const m = state.meeting;
    setText(title, m.title);
    document.title = `${m.title} · Conclave`;
    lockedBadge.hidden = !m.locked;
    suspendedBadge.hidden = !m.suspended;
    recordingBadge.hidden = !isRecorded(state);
    if (state.chat.length > seenChat) {
      const fresh = state.chat.slice(seenChat).filter((c) => !c.mine).length;
      if (!panels.chat) panels.unread += fresh;
      seenChat = state.chat.length;
    }
    participants.el.hidden = !panels.participants;
    chat.el.hidden = !panels.chat;
    sidebar.hidden = !panels.participants && !panels.chat;
    sidebar.classList.toggle('is-split', panels.participants && panels.chat);
    sidebar.classList.toggle('is-moderator', state.role === 'host' || state.role === 'cohost');
    layout.update(state);
    grid.update(state, layout.view);
    features.update(state);
    breakout.update(state);
    participants.update(state);
    chat.update(state);
    security.update(state);
    toolbar.update(state, panels);
    renderBanner(state);
    const err = state.media?.error || null;
    mediaError.hidden = !err;
    if (err) setText(mediaErrorText, err);
  }

  render(call.state);
  const unsubscribe = call.store.subscribe(render);
  return () => {
    unsubscribe();
    grid.destroy();
    layout.destroy();
    features.destroy();
    breakout.destroy();
    toolbar.destroy();
    if (bannerTimer) clearInterval(bannerTimer);
  };
}
