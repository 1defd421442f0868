// /j/{id}#p={passcode}: the join page, then whatever the meeting session is
// showing: the waiting room, the meeting, or how it ended.

import * as api from './api.js';
import { Call, recentSeat } from './call.js';
import { brand } from './chrome.js';
import { alertBox, field, h, hueOf, initials, lockout, setText } from './dom.js';
import { createDevicePicker } from './devices.js';
import { duration } from './errors.js';
import { icon } from './icons.js';
import { afterBreakout, breakoutPass, forgetBreakoutPass } from './breakout.js';
import { mountMeeting } from './meeting.js';
import { mountOutcome } from './outcome.js';
import { linkClick } from './router.js';
import { clearToasts } from './toast.js';
import { mountWaiting } from './waiting.js';
import { keyBoundStartUrl } from './openpubkey.js';

const NAME_KEY = 'conclave.name';
const passKey = (id) => `conclave.pass.${id}`;

function storedName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

function storeName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Remembering the name is a convenience only.
  }
}

/** The passcode from the link's fragment (#p=...), or one kept while signing in. */
function passcodeFor(id) {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('p');
  if (fromLink) return fromLink;
  try {
    return sessionStorage.getItem(passKey(id)) || '';
  } catch {
    return '';
  }
}

export function mountJoin(root, meetingId) {
  document.body.dataset.theme = 'dark';
  document.title = 'Join meeting · Conclave';
  const autostart = !!history.state?.autostart;
  if (autostart) history.replaceState(null, '', location.pathname + location.search + location.hash);

  let alive = true;
  let user = null;
  let owned = null; // the meeting record, when this account owns it
  let call = null;
  let view = { phase: null, cleanup: null };
  let unsubscribe = null;
  let stopLockout = null;
  const media = { audio: true, video: true };
  let lastName = '';
  let lastPasscode = passcodeFor(meetingId);
  let passcodeInput = null;
  let ticket = null; // a breakout ticket into (or back into) this meeting

  root.replaceChildren(h('main', { class: 'center-page' },
    h('div', { class: 'join-loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: 'Loading…' }))));

  async function load() {
    try {
      user = await api.me();
      if (user) {
        try {
          owned = await api.getMeeting(meetingId);
        } catch {
          owned = null; // not this account's meeting: join like a guest
        }
      }
    } catch {
      user = null;
    }
    if (!alive) return;
    const seat = recentSeat(meetingId);
    const pass = breakoutPass(meetingId);
    if (seat) {
      lastName = seat.name;
      begin({ resumeSeat: seat });
    } else if (pass) {
      lastName = pass.name;
      ticket = pass.ticket;
      begin();
    } else if (autostart && owned) {
      lastName = storedName() || user.username;
      begin();
    } else {
      showForm();
    }
  }

  function showForm(joinError) {
    clearView();
    document.body.dataset.theme = 'dark';
    document.title = owned ? `${owned.title} · Conclave` : 'Join meeting · Conclave';
    const name = h('input', { type: 'text', autocomplete: 'name', maxLength: 64, required: true, value: lastName || storedName() || user?.username || '' });
    const passcode = h('input', { type: 'text', autocomplete: 'off', spellcheck: false, autocapitalize: 'none', value: lastPasscode });
    passcodeInput = owned ? null : passcode;
    const alert = alertBox();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block btn-lg', text: 'Join' });

    const previewAvatar = h('span', { class: 'avatar avatar-xl', 'aria-hidden': 'true' });
    const previewState = h('p', { class: 'preview-state' });
    const micBtn = h('button', { type: 'button', class: 'preview-btn', 'aria-label': 'Microphone' });
    const camBtn = h('button', { type: 'button', class: 'preview-btn', 'aria-label': 'Camera' });
    const renderPreview = () => {
      const n = name.value.trim() || '?';
      setText(previewAvatar, initials(n));
      previewAvatar.className = `avatar avatar-xl hue-${hueOf(n)}`;
      micBtn.setAttribute('aria-pressed', String(media.audio));
      micBtn.title = media.audio ? 'Microphone on' : 'Microphone off';
      micBtn.classList.toggle('is-off', !media.audio);
      micBtn.replaceChildren(icon(media.audio ? 'mic' : 'micOff'));
      camBtn.setAttribute('aria-pressed', String(media.video));
      camBtn.title = media.video ? 'Camera on' : 'Camera off';
      camBtn.classList.toggle('is-off', !media.video);
      camBtn.replaceChildren(icon(media.video ? 'video' : 'videoOff'));
      setText(previewState, `Microphone ${media.audio ? 'on' : 'off'} · Camera ${media.video ? 'on' : 'off'}`);
    };
    micBtn.addEventListener('click', () => { media.audio = !media.audio; renderPreview(); });
    camBtn.addEventListener('click', () => { media.video = !media.video; renderPreview(); });
    name.addEventListener('input', renderPreview);
    renderPreview();

    const heading = owned ? owned.title : 'Join a meeting';
    const who = owned
      ? h('p', { class: 'join-note' }, icon('star'), h('span', { text: 'You are the host of this meeting: no passcode needed.' }))
      : user
        ? h('p', { class: 'join-note' }, h('span', { text: `Signed in as ${user.username}.` }))
        : h('p', { class: 'join-note' }, h('span', { text: 'Hosting this meeting? ' }),
          h('a', { href: `/signin?next=${encodeURIComponent(location.pathname)}`, onClick: (ev) => { keepPasscode(); linkClick(ev); }, text: 'Sign in' }));

    const form = h('form', { class: 'join-card', noValidate: true },
      h('h1', { class: 'join-title', text: heading }),
      h('p', { class: 'join-id' }, 'Meeting ID ', h('span', { class: 'mono', text: owned ? owned.id : meetingId })),
      field('Your name', name),
      owned ? null : field('Passcode', passcode, 'From the invite link, or ask the host.'),
      alert.el,
      submit,
      who);

    root.replaceChildren(
      h('main', { class: 'join-page' },
        h('div', { class: 'join-brand' }, brand()),
        h('div', { class: 'join-grid' },
          h('div', { class: 'preview' },
            h('div', { class: 'preview-stage' }, previewAvatar, previewState),
            h('div', { class: 'preview-controls' }, micBtn, camBtn),
            createDevicePicker().el),
          form)));

    if (joinError) showJoinError(joinError, alert, submit, { name, passcode });
    else if (!name.value) name.focus();
    else if (!owned && !passcode.value) passcode.focus();
    else submit.focus();

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      alert.clear();
      const n = name.value.trim();
      if (!n) {
        alert.show('Enter your name: people in the meeting will see it.');
        name.focus();
        return;
      }
      if ([...n].length > 64) {
        alert.show('Your name must have 1 to 64 characters.');
        name.focus();
        return;
      }
      if (!owned && !passcode.value.trim()) {
        alert.show('Enter the passcode. It is in the invite link, or ask the host.');
        passcode.focus();
        return;
      }
      lastName = n;
      lastPasscode = owned ? '' : passcode.value.trim();
      submit.disabled = true;
      setText(submit, 'Joining…');
      begin();
    });
  }

  function showJoinError(err, alert, submit, inputs) {
    if (err.code === 'too_many_attempts' && err.retryAfter) {
      stopLockout = lockout(alert, submit, err.retryAfter, (s) => `Too many attempts. Try again in ${duration(s)}.`);
      return;
    }
    alert.show(err.text);
    if (err.code === 'sign_in_required' || err.code === 'organisation_only') {
      // Signing in helps: offer each provider, and the sign-in page for a
      // password. Back here afterwards, with the passcode kept.
      const here = location.pathname;
      api.signInMethods().then(({ password, providers }) => {
        const buttons = providers.map((p) => h('button', {
          type: 'button', class: 'btn btn-secondary', text: `Sign in with ${p.name}`,
          onClick: () => {
            keepPasscode();
            try { sessionStorage.setItem('conclave.next', here); } catch { /* back to the dashboard then */ }
            keyBoundStartUrl(p.start_url).then((url) => location.assign(url));
          },
        }));
        const links = password ? [h('a', {
          href: `/signin?next=${encodeURIComponent(here)}`,
          onClick: (ev) => { keepPasscode(); linkClick(ev); },
          text: providers.length ? 'Sign in with a password' : 'Sign in',
        })] : [];
        if (buttons.length || links.length) alert.el.append(h('div', { class: 'signin-offer' }, ...buttons, ...links));
      }).catch(() => {});
    }
    if (err.code === 'join_refused') inputs.passcode.select();
    if (err.code === 'invalid_name') inputs.name.focus();
  }

  function keepPasscode() {
    try {
      const p = passcodeInput?.value.trim() || lastPasscode;
      if (p) sessionStorage.setItem(passKey(meetingId), p);
    } catch {
      // Without storage the passcode is typed again after signing in.
    }
  }

  function begin({ resumeSeat = null } = {}) {
    if (call) call.dispose();
    if (unsubscribe) unsubscribe();
    view.phase = null;
    call = new Call({ meetingId, name: lastName, passcode: lastPasscode, media: { ...media }, owner: !!owned, ticket });
    unsubscribe = call.store.subscribe(onState);
    if (resumeSeat) {
      root.replaceChildren(h('main', { class: 'center-page' },
        h('div', { class: 'join-loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: 'Reconnecting to the meeting…' }))));
      call.resume(resumeSeat);
    } else {
      if (autostart && owned && !root.querySelector('.join-card')) {
        root.replaceChildren(h('main', { class: 'center-page' },
          h('div', { class: 'join-loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: 'Starting the meeting…' }))));
      }
      call.start();
    }
  }

  function clearView() {
    if (view.cleanup) view.cleanup();
    view = { phase: null, cleanup: null };
    if (stopLockout) {
      stopLockout();
      stopLockout = null;
    }
  }

  function onState(state) {
    if (!alive || state.phase === view.phase) return;
    if (state.phase === 'connecting') return;
    clearView();
    clearToasts();
    view.phase = state.phase;
    if (ticket && state.phase !== 'waiting') {
      // Used or refused: a refused ticket falls back to the join form.
      forgetBreakoutPass(meetingId);
      ticket = null;
    }
    switch (state.phase) {
      case 'failed':
        showForm(state.joinError);
        view.phase = 'failed';
        break;
      case 'waiting':
        storeName(lastName);
        view.cleanup = mountWaiting(root, call);
        break;
      case 'joined':
        storeName(lastName);
        try {
          sessionStorage.removeItem(passKey(meetingId));
        } catch {
          // Nothing kept, nothing to remove.
        }
        view.cleanup = mountMeeting(root, call, { inviteLink: owned?.invite_link || null });
        break;
      case 'over':
        if (afterBreakout(meetingId, state.outcome, lastName)) break;
        mountOutcome(root, state.outcome, { onRejoin: () => { view.phase = null; begin(); } });
        break;
      default:
        break;
    }
  }

  load();
  return () => {
    alive = false;
    clearView();
    if (unsubscribe) unsubscribe();
    if (call) {
      const phase = call.state.phase;
      if (phase === 'joined' || phase === 'waiting') call.leave();
      else call.dispose();
    }
  };
}
