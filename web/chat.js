// The "Chat" panel. Messages are shown as text only. For now the payload is
// the text itself; the E2EE change will encrypt it (chat as MLS application
// messages) in `call.chat` and decrypt it before it reaches the state.

import { h, setText, syncList, uid } from './dom.js';
import { icon } from './icons.js';
import { isModerator } from './state.js';

/** Messages from one sender this close together are grouped under one name. */
const GROUP_MS = 2 * 60 * 1000;

export function createChatPanel(call, { onClose }) {
  const log = h('ol', { class: 'chat-log', role: 'log', 'aria-label': 'Chat history', 'aria-live': 'polite' });
  const empty = h('p', { class: 'chat-empty', text: 'No messages yet. Messages are seen by people in the meeting now; nothing is kept afterwards.' });
  const input = h('input', { type: 'text', id: uid('msg'), autocomplete: 'off', maxLength: 4000, placeholder: 'Message everyone' });
  const send = h('button', { type: 'submit', class: 'send-btn', 'aria-label': 'Send', title: 'Send' }, icon('send'));
  const note = h('p', { class: 'chat-note', hidden: true });
  const form = h('form', { class: 'chat-form' },
    h('label', { for: input.id, class: 'sr-only', text: 'Message' }),
    input, send);
  const scroller = h('div', { class: 'chat-scroll' }, empty, log);

  const el = h('section', { class: 'panel panel-chat', id: 'panel-chat', 'aria-label': 'Chat' },
    h('header', { class: 'panel-head' },
      h('h2', { text: 'Chat' }),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close panel', title: 'Close panel', onClick: onClose }, icon('x'))),
    scroller, note, form);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (call.chat(text)) input.value = '';
    input.focus();
  });

  let shown = 0;
  function update(state) {
    const blocked = !isModerator(state) && state.meeting
      && (state.meeting.suspended || !state.meeting.permissions.chat);
    input.disabled = !!blocked;
    send.disabled = !!blocked;
    note.hidden = !blocked;
    if (blocked) {
      setText(note, state.meeting.suspended ? 'Participant activities are suspended: chat is paused.' : 'The host has turned chat off.');
    }
    empty.hidden = state.chat.length > 0;
    if (state.chat.length === shown && log.childElementCount === shown) return;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    syncList(log, state.chat, (c) => c.seq, createLine, () => {});
    groupLines(state.chat);
    shown = state.chat.length;
    const last = state.chat[state.chat.length - 1];
    if (atBottom || (last && last.mine)) scroller.scrollTop = scroller.scrollHeight;
  }

  function groupLines(lines) {
    const els = log.children;
    for (let i = 0; i < lines.length; i += 1) {
      const prev = lines[i - 1];
      const cont = !!prev && prev.from === lines[i].from && lines[i].at - prev.at < GROUP_MS;
      els[i].classList.toggle('is-cont', cont);
    }
  }

  return { el, update, focus: () => input.focus() };
}

function createLine(c) {
  const time = new Date(c.at);
  return h('li', { class: `chat-line${c.mine ? ' is-mine' : ''}` },
    h('div', { class: 'chat-meta' },
      h('span', { class: 'chat-who', text: c.mine ? 'You' : c.name }),
      h('time', { class: 'chat-time', dateTime: time.toISOString(), text: time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) })),
    h('p', { class: 'chat-text', text: c.text }));
}
