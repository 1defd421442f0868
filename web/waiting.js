// The waiting screen. A waiting person gets nothing from the meeting (no
// roster, no chat, no title) but one fact, whether it is being recorded, so
// this shows their own name and status, and that fact.

import { h, hueOf, initials, setText } from './dom.js';
import { isRecorded } from './state.js';

export function mountWaiting(root, call) {
  document.body.dataset.theme = 'dark';
  document.title = 'Waiting room · Conclave';
  const status = h('p', { class: 'waiting-status', role: 'status' });
  const recording = h('div', { class: 'waiting-rec', role: 'status', 'aria-label': 'Recording', hidden: true },
    h('span', { class: 'badge badge-rec' }, h('span', { class: 'rec-dot', 'aria-hidden': 'true' }), h('span', { text: 'Recording' })),
    h('p', { text: 'This meeting is being recorded. Once you are admitted, what you say and show is recorded.' }));
  const title = h('h1', { class: 'waiting-title' });
  const text = h('p', { class: 'waiting-text' });
  const leave = h('button', { type: 'button', class: 'btn btn-dark', text: 'Leave', onClick: () => call.leave() });
  root.replaceChildren(h('main', { class: 'center-page' },
    h('section', { class: 'waiting-card', 'aria-label': 'Waiting room' },
      h('div', { class: 'waiting-pulse' },
        h('span', { class: `avatar avatar-xl hue-${hueOf(call.name)}`, 'aria-hidden': 'true', text: initials(call.name) })),
      title,
      text,
      h('p', { class: 'waiting-who' }, 'Joining as ', h('strong', { text: call.name })),
      recording,
      status,
      leave)));

  function render(state) {
    setText(status, state.connection === 'reconnecting' ? 'Connection lost. Getting back in the waiting room…' : '');
    recording.hidden = !isRecorded(state);
    if (state.waitingForHost) {
      setText(title, 'The meeting has not started yet');
      setText(text, 'The host has not joined yet. You will be let in as soon as a host arrives; keep this page open.');
    } else {
      setText(title, 'Waiting for the host to let you in');
      setText(text, 'You are in the waiting room. Until a host admits you, nobody in the meeting sees or hears you, and you see nothing of the meeting.');
    }
  }
  render(call.state);
  return call.store.subscribe(render);
}
