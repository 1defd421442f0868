// The screen after a meeting is over for this person: left, ended, removed,
// denied, or the connection could not be restored.

import { h } from './dom.js';
import { endReason } from './errors.js';
import { icon } from './icons.js';
import { linkClick } from './router.js';

function describe(outcome) {
  switch (outcome.kind) {
    case 'left':
      return { icon: 'leave', title: 'You left the meeting', text: 'You can rejoin while the meeting is still going.', rejoin: 'Rejoin' };
    case 'left_waiting':
      return { icon: 'leave', title: 'You left the waiting room', text: 'Nobody admitted you, and nothing of the meeting was shared with you.', rejoin: 'Ask to join again' };
    case 'denied':
      return { icon: 'x', title: 'The host did not let you in', text: 'A host declined your request to join this meeting.', rejoin: 'Ask to join again' };
    case 'removed':
      return {
        icon: 'userX',
        title: 'You were removed from the meeting',
        text: 'A host removed you from this meeting and banned you from it. You cannot rejoin it from this browser, or with your account if you were signed in. From this network, anyone new has to wait until a host lets them in.',
        rejoin: null,
      };
    case 'ended':
      return {
        icon: 'phoneOff',
        title: 'The meeting has ended',
        text: outcome.byMe ? 'You ended the meeting for everyone.' : endReason(outcome.reason),
        rejoin: null,
      };
    case 'resume_failed':
      return { icon: 'alert', title: 'Connection lost', text: 'We could not reconnect you in time, so your seat in the meeting was given up. Join again to get back in.', rejoin: 'Rejoin' };
    case 'lost_waiting':
      return { icon: 'alert', title: 'Connection lost', text: 'Your connection dropped while you were waiting, and we could not get you back in the waiting room.', rejoin: 'Ask to join again' };
    default:
      return { icon: 'alert', title: 'The meeting is over for you', text: '', rejoin: null };
  }
}

/** Shows the outcome; `onRejoin` starts a fresh join with the same name and passcode. */
export function mountOutcome(root, outcome, { onRejoin }) {
  document.body.dataset.theme = 'dark';
  const d = describe(outcome);
  document.title = `${d.title} · Conclave`;
  const heading = h('h1', { class: 'outcome-title', text: d.title, tabIndex: -1 });
  root.replaceChildren(h('main', { class: 'center-page' },
    h('div', { class: `outcome-card outcome-${outcome.kind}` },
      h('div', { class: 'outcome-icon' }, icon(d.icon)),
      heading,
      d.text ? h('p', { class: 'outcome-text', text: d.text }) : null,
      h('div', { class: 'outcome-actions' },
        d.rejoin ? h('button', { type: 'button', class: 'btn btn-primary', text: d.rejoin, onClick: onRejoin }) : null,
        h('a', { class: 'btn btn-dark', href: '/', onClick: linkClick, text: 'Back to home' })))));
  heading.focus();
}
