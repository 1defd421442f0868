// The meeting's control bar: own microphone, camera and screen share, the
// panel toggles, Leave, and "End meeting for all" for the host.

import { h, setAttr, setText } from './dom.js';
import { icon } from './icons.js';
import { self } from './state.js';
import { createViewOnlyNote } from './publishing.js';

function controlButton(extraClass) {
  const iconBox = h('span', { class: 'ctl-icon' });
  const label = h('span', { class: 'ctl-label' });
  const button = h('button', { type: 'button', class: `ctl ${extraClass || ''}` }, iconBox, label);
  let shown = null;
  return {
    el: button,
    /** Sets the visible label (which is the accessible name) and the icon. */
    set(text, iconName) {
      setText(label, text);
      if (shown !== iconName) {
        shown = iconName;
        iconBox.replaceChildren(icon(iconName));
      }
    },
  };
}

/**
 * handlers: {onMedia(kind, on), onLeave(), onEnd(), onTogglePanel(name)}.
 * Returns {el, update(state, panels)} where panels = {participants, chat, unread}.
 */
export function createToolbar(handlers) {
  const mic = controlButton();
  const cam = controlButton();
  const share = controlButton();
  const leave = controlButton('ctl-leave');
  leave.set('Leave', 'leave');
  const end = controlButton('ctl-end');
  end.set('End meeting for all', 'phoneOff');

  const peopleCount = h('span', { class: 'ctl-count', 'aria-hidden': 'true' });
  const people = h('button', { type: 'button', class: 'ctl ctl-panel', 'aria-label': 'Participants', 'aria-controls': 'panel-participants' },
    h('span', { class: 'ctl-icon' }, icon('users'), peopleCount), h('span', { class: 'ctl-label', text: 'Participants', 'aria-hidden': 'true' }));
  const unread = h('span', { class: 'ctl-dot', 'aria-hidden': 'true', hidden: true });
  const chat = h('button', { type: 'button', class: 'ctl ctl-panel', 'aria-label': 'Chat', 'aria-controls': 'panel-chat' },
    h('span', { class: 'ctl-icon' }, icon('chat'), unread), h('span', { class: 'ctl-label', text: 'Chat', 'aria-hidden': 'true' }));

  const clock = h('time', { class: 'toolbar-clock' });
  const tick = () => setText(clock, new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  tick();
  const clockTimer = setInterval(tick, 10_000);

  const viewOnly = createViewOnlyNote();
  const el = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Meeting controls' },
    h('div', { class: 'toolbar-side' }, clock),
    h('div', { class: 'toolbar-main' }, viewOnly.el, mic.el, cam.el, share.el, h('span', { class: 'toolbar-sep', 'aria-hidden': 'true' }), leave.el, end.el),
    h('div', { class: 'toolbar-side toolbar-right' }, people, chat));

  let me = null;
  mic.el.addEventListener('click', () => me && handlers.onMedia('audio', !me.audio));
  cam.el.addEventListener('click', () => me && handlers.onMedia('video', !me.video));
  share.el.addEventListener('click', () => me && handlers.onMedia('screen', !me.screen));
  leave.el.addEventListener('click', () => handlers.onLeave());
  end.el.addEventListener('click', () => handlers.onEnd());
  people.addEventListener('click', () => handlers.onTogglePanel('participants'));
  chat.addEventListener('click', () => handlers.onTogglePanel('chat'));

  function update(state, panels) {
    me = self(state);
    const audio = !!me?.audio;
    const video = !!me?.video;
    const screen = !!me?.screen;
    mic.set(audio ? 'Mute' : 'Unmute', audio ? 'mic' : 'micOff');
    mic.el.classList.toggle('is-off', !audio);
    cam.set(video ? 'Stop video' : 'Start video', video ? 'video' : 'videoOff');
    cam.el.classList.toggle('is-off', !video);
    share.set(screen ? 'Stop sharing' : 'Share screen', screen ? 'screenOff' : 'screen');
    share.el.classList.toggle('is-active', screen);
    end.el.hidden = state.role !== 'host';
    viewOnly.update(state, [mic.el, cam.el, share.el]);
    setText(peopleCount, String(state.participants.length));
    setAttr(people, 'aria-expanded', String(!!panels.participants));
    setAttr(chat, 'aria-expanded', String(!!panels.chat));
    people.classList.toggle('is-active', !!panels.participants);
    chat.classList.toggle('is-active', !!panels.chat);
    unread.hidden = !panels.unread;
  }

  return { el, update, destroy: () => clearInterval(clockTimer) };
}
