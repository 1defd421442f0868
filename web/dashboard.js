// The host's dashboard at / when signed in: their meetings, each with its
// invite link, and the buttons to create, change, delete and start them;
// above them the upcoming scheduled ones, each with its calendar file.

import * as api from './api.js';
import { page, topNav } from './chrome.js';
import { copyText, h, syncList, uid } from './dom.js';
import { apiError } from './errors.js';
import { icon } from './icons.js';
import { openMeetingForm } from './meeting-form.js';
import { linkClick, navigate } from './router.js';
import { toast } from './toast.js';

export function mountDashboard(root, user) {
  page('Your meetings', 'light');
  let alive = true;
  let meetings = [];
  let highlight = null;

  const list = h('ul', { class: 'meeting-list', 'aria-label': 'Your meetings' });
  const empty = h('div', { class: 'empty', hidden: true },
    h('div', { class: 'empty-icon' }, icon('video')),
    h('h2', { text: 'No meetings yet' }),
    h('p', { text: 'Create a meeting to get an invite link you can send to people.' }));
  const loading = h('div', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading your meetings…');
  const listError = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const upcomingHeadId = uid('up');
  const upcomingList = h('ul', { class: 'upcoming-list', 'aria-labelledby': upcomingHeadId });
  const upcoming = h('section', { class: 'upcoming', 'aria-labelledby': upcomingHeadId, hidden: true },
    h('h2', { id: upcomingHeadId, text: 'Upcoming meetings' }),
    h('p', { class: 'dash-sub', text: 'A calendar file (.ics) holds the invite link and with it the passcode: send it only to the people you invite.' }),
    upcomingList);

  const newButton = h('button', { type: 'button', class: 'btn btn-primary', onClick: create },
    icon('plus'), h('span', { text: 'New meeting' }));
  const signOutButton = h('button', { type: 'button', class: 'btn btn-ghost', text: 'Sign out', onClick: signOut });

  // Administrators manage accounts on /admin (the server checks the role).
  const accountsLink = user.is_admin
    ? h('a', { class: 'btn btn-ghost', href: '/admin', onClick: linkClick, text: 'Accounts' })
    : null;

  root.replaceChildren(
    topNav(
      accountsLink,
      h('span', { class: 'whoami' }, h('span', { class: 'whoami-avatar', 'aria-hidden': 'true', text: user.username.slice(0, 1).toUpperCase() }), h('span', { text: user.username })),
      signOutButton),
    h('main', { class: 'dashboard' },
      h('div', { class: 'dash-head' },
        h('div', {},
          h('h1', { text: 'Your meetings' }),
          h('p', { class: 'dash-sub', text: 'Meetings are private: unguessable IDs, a passcode and a waiting room by default.' })),
        newButton),
      listError, loading, upcoming, empty, list));

  async function load() {
    try {
      const ms = await api.listMeetings();
      if (!alive) return;
      meetings = ms.sort((a, b) => b.created_at - a.created_at);
      listError.hidden = true;
      render();
    } catch (e) {
      if (!alive) return;
      if (e.status === 401 || e.code === 'account_disabled') {
        api.signedOut();
        navigate(e.code === 'account_disabled' ? '/signin#oidc_error=disabled' : '/signin', { replace: true });
        return;
      }
      listError.textContent = apiError(e);
      listError.hidden = false;
    } finally {
      loading.hidden = true;
    }
  }

  function render() {
    renderUpcoming();
    empty.hidden = meetings.length > 0;
    syncList(list, meetings, (m) => m.id, createCard, updateCard);
    if (highlight) {
      const el = list.querySelector(`[data-meeting="${CSS.escape(highlight)}"]`);
      if (el) {
        el.classList.add('is-new');
        el.scrollIntoView({ block: 'nearest' });
      }
      highlight = null;
    }
  }

  /** Scheduled meetings not over yet, soonest first. */
  function renderUpcoming() {
    const now = Date.now() / 1000;
    const soon = meetings
      .filter((m) => m.starts_at != null && m.starts_at + (m.duration_minutes || 60) * 60 > now)
      .sort((a, b) => a.starts_at - b.starts_at);
    upcoming.hidden = soon.length === 0;
    upcomingList.replaceChildren(...soon.map((m) => h('li', { class: 'upcoming-item' },
      h('span', { class: 'upcoming-when', text: when(m) }),
      h('span', { class: 'upcoming-title', text: m.title }),
      calendarLink(m))));
  }

  async function create() {
    const saved = await openMeetingForm({ defaultTitle: `${user.username}'s meeting` });
    if (!saved || !alive) return;
    meetings = [saved, ...meetings.filter((m) => m.id !== saved.id)];
    highlight = saved.id;
    render();
    toast('Meeting created. Copy the invite link and send it to people.', 'success');
  }

  async function edit(m) {
    const saved = await openMeetingForm({ meeting: m });
    if (!saved || !alive) return;
    meetings = meetings.map((x) => (x.id === saved.id ? saved : x));
    render();
    toast('Settings saved.', 'success');
  }

  async function remove(m) {
    try {
      await api.deleteMeeting(m.id);
      if (!alive) return;
      meetings = meetings.filter((x) => x.id !== m.id);
      render();
      toast('Meeting deleted.');
    } catch (e) {
      toast(apiError(e), 'error');
    }
  }

  async function signOut() {
    signOutButton.disabled = true;
    let out = null;
    try {
      out = await api.signOut();
    } catch {
      // Signed out or not, go to the landing page.
    }
    // Signed in through a provider: end its session too (RP-initiated
    // logout); it sends the browser back to /signin.
    if (out?.redirect) {
      window.location.assign(out.redirect);
      return;
    }
    navigate('/');
  }

  function createCard(m) {
    const titleId = uid('mt');
    const linkId = uid('link');
    const el = h('li', { class: 'meeting-card', 'aria-labelledby': titleId, 'data-meeting': m.id });
    const refs = {
      title: h('h2', { class: 'mc-title', id: titleId }),
      live: h('span', { class: 'pill pill-live', text: 'In progress', hidden: true }),
      id: h('span', { class: 'mono' }),
      passcodeRow: h('div', { class: 'mc-fact' }),
      passcode: h('span', { class: 'mono' }),
      whenRow: h('div', { class: 'mc-fact' }),
      when: h('span'),
      link: h('output', { class: 'invite-link', id: linkId }),
      chips: h('ul', { class: 'chips', 'aria-label': 'Settings' }),
      actions: h('div', { class: 'mc-actions' }),
    };
    refs.passcodeRow.append(h('span', { class: 'mc-fact-label', text: 'Passcode' }), refs.passcode);
    refs.whenRow.append(h('span', { class: 'mc-fact-label', text: 'When' }), refs.when);
    const copy = h('button', { type: 'button', class: 'btn btn-secondary btn-sm', onClick: () => doCopy(el._m) },
      icon('copy'), h('span', { text: 'Copy invite link' }));
    el.append(
      h('div', { class: 'mc-main' },
        h('div', { class: 'mc-head' }, refs.title, refs.live),
        h('div', { class: 'mc-facts' },
          h('div', { class: 'mc-fact' }, h('span', { class: 'mc-fact-label', text: 'Meeting ID' }), refs.id),
          refs.passcodeRow, refs.whenRow),
        h('div', { class: 'invite' },
          h('label', { for: linkId, class: 'invite-label', text: 'Invite link' }),
          h('div', { class: 'invite-row' }, refs.link, copy)),
        refs.chips),
      refs.actions);
    el._refs = refs;
    return el;
  }

  function updateCard(el, m) {
    const r = el._refs;
    const changed = el._m !== m;
    el._m = m;
    if (!changed) return;
    r.title.textContent = m.title;
    r.live.hidden = !m.running;
    r.id.textContent = m.id;
    r.passcodeRow.hidden = !m.passcode;
    r.passcode.textContent = m.passcode || '';
    r.whenRow.hidden = m.starts_at == null;
    r.when.replaceChildren(...(m.starts_at == null ? [] : [when(m), ' ', calendarLink(m)]));
    r.link.textContent = m.invite_link;
    r.chips.replaceChildren(...chips(m.settings).map((t) => h('li', { class: 'chip', text: t })));
    showActions(el, m);
  }

  function showActions(el, m) {
    const r = el._refs;
    r.actions.replaceChildren(
      h('button', { type: 'button', class: 'btn btn-primary', onClick: () => start(m) }, icon('play'), h('span', { text: 'Start' })),
      h('button', { type: 'button', class: 'btn btn-ghost', onClick: () => edit(el._m) }, icon('edit'), h('span', { text: 'Edit' })),
      h('button', { type: 'button', class: 'btn btn-ghost btn-danger-text', onClick: () => confirmDelete(el, m) }, icon('trash'), h('span', { text: 'Delete' })));
  }

  function confirmDelete(el, m) {
    const r = el._refs;
    const cancel = h('button', { type: 'button', class: 'btn btn-ghost', text: 'Cancel', onClick: () => showActions(el, el._m) });
    r.actions.replaceChildren(
      h('p', { class: 'confirm-text', text: m.running ? 'Delete it? The meeting in progress ends for everyone.' : 'Delete this meeting?' }),
      h('button', { type: 'button', class: 'btn btn-danger', text: 'Delete meeting', onClick: () => remove(m) }),
      cancel);
    cancel.focus();
  }

  async function doCopy(m) {
    if (await copyText(m.invite_link)) toast('Invite link copied.', 'success');
    else toast('Could not copy. Select the link and copy it yourself.', 'error');
  }

  function start(m) {
    navigate(`/j/${encodeURIComponent(m.id)}`, { state: { autostart: true } });
  }

  load();
  return () => {
    alive = false;
  };
}

/** "Tue, 15 Jan 2030, 10:30 (45 min)", in this browser's time zone. */
function when(m) {
  const start = new Date(m.starts_at * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  return `${start} (${m.duration_minutes || 60} min)`;
}

/** The link that downloads the meeting's calendar file; it says the file holds the passcode. */
function calendarLink(m) {
  return h('a', {
    class: 'calendar-link',
    href: api.calendarUrl(m.id),
    download: 'meeting.ics',
    text: 'Add to calendar (.ics, contains the passcode)',
  });
}

function chips(s) {
  const out = [];
  out.push(s.passcode_required ? 'Passcode' : 'No passcode');
  out.push(s.waiting_room ? 'Waiting room' : 'No waiting room');
  out.push(s.screen_share === 'everyone' ? 'Anyone can share screen' : 'Hosts share screen');
  if (!s.chat) out.push('Chat off');
  if (s.only_signed_in) out.push('Signed-in users only');
  if (s.join_before_host === false) out.push('Waits for a host');
  out.push(`Up to ${s.max_participants} people`);
  return out;
}
