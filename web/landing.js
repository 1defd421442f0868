// / when not signed in: what this is, a sign-in link, and "join by ID".

import { page, topNav } from './chrome.js';
import { alertBox, field, h } from './dom.js';
import { icon } from './icons.js';
import { linkClick, navigate } from './router.js';

/** A meeting ID or an invite link, as typed, to the join page's path (and fragment). */
export function joinTarget(text) {
  const t = text.trim();
  if (!t) return null;
  const m = /\/j\/([^/?#\s]+)(#\S*)?/.exec(t);
  if (m) return `/j/${encodeURIComponent(decodeURIComponent(m[1]))}${m[2] || ''}`;
  const id = t.replace(/\s+/g, '-');
  if (!/^[A-Za-z0-9_-]{4,64}$/.test(id)) return null;
  return `/j/${encodeURIComponent(id)}`;
}

export function mountLanding(root) {
  page('', 'light');
  const input = h('input', { type: 'text', autocomplete: 'off', spellcheck: false, placeholder: 'abcd-efgh-jkmn-pqrs', autocapitalize: 'none' });
  const alert = alertBox();
  const form = h('form', { class: 'join-by-id card', noValidate: true },
    h('h2', { text: 'Join a meeting' }),
    h('p', { class: 'muted', text: 'Open the invite link you were sent, or enter the meeting ID.' }),
    field('Meeting ID or invite link', input),
    alert.el,
    h('button', { type: 'submit', class: 'btn btn-primary btn-block', text: 'Join' }));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const target = joinTarget(input.value);
    if (!target) {
      alert.show('Enter a meeting ID like abcd-efgh-jkmn-pqrs, or paste the whole invite link.');
      input.focus();
      return;
    }
    navigate(target);
  });

  const signIn = h('a', { class: 'btn btn-ghost', href: '/signin', onClick: linkClick, text: 'Sign in' });
  root.replaceChildren(
    topNav(signIn),
    h('main', { class: 'landing' },
      h('section', { class: 'hero' },
        h('h1', { text: 'Video meetings on your own server' }),
        h('p', { class: 'hero-sub', text: 'Unguessable meeting links, a waiting room and a lock on every meeting, and hosts who stay in control. No account needed to join.' }),
        h('ul', { class: 'hero-points' },
          point('shield', 'Secure by default', 'Strong passcodes, rate-limited joins, waiting room on.'),
          point('users', 'Hosts in control', 'Admit, remove, mute, lock, or suspend everything at once.'),
          point('lock', 'Self-hosted', 'One binary, your data stays on your server.')),
        h('p', { class: 'hero-cta' },
          h('a', { class: 'btn btn-primary', href: '/signin', onClick: linkClick, text: 'Host a meeting' }))),
      form));
  input.focus();
}

function point(iconName, title, text) {
  return h('li', { class: 'hero-point' },
    h('span', { class: 'hero-point-icon' }, icon(iconName)),
    h('span', {}, h('strong', { text: title }), h('span', { class: 'muted', text: ` ${text}` })));
}
