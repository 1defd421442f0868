// The dialog for a new meeting's settings, or for changing an existing one's.

import * as api from './api.js';
import { alertBox, field, h, toggle } from './dom.js';
import { apiError } from './errors.js';
import { icon } from './icons.js';

const PASSCODE_MIN = 8;
const PASSCODE_MAX = 64;
const TITLE_MAX = 200;
const MAX_PARTICIPANTS = 1000;
const MAX_INVITED = 100;
const MAX_DURATION = 1440;

/** Unix seconds as a datetime-local value, in this browser's time zone. */
function localInput(secs) {
  const d = new Date(secs * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** The server's join policy for new meetings, asked once. */
let defaultPolicy = null;
async function serverDefaultPolicy() {
  if (!defaultPolicy) {
    defaultPolicy = api.signInMethods().then((m) => m.default_who_may_join || 'anyone', () => 'anyone');
  }
  return defaultPolicy;
}

/**
 * Opens the dialog. With `meeting` it edits that meeting; without, it creates
 * one. Resolves with the saved meeting, or null when cancelled.
 */
export function openMeetingForm({ meeting = null, defaultTitle = '' } = {}) {
  return new Promise((resolve) => {
    const editing = !!meeting;
    const s = meeting?.settings || {
      passcode_required: true, waiting_room: true, screen_share: 'host_only', chat: true,
      self_unmute: true, rename_self: false, only_signed_in: false, who_may_join: null,
      invited_emails: [], max_participants: 100, join_before_host: true,
    };
    const titleId = `dlg-title-${Date.now()}`;

    const title = h('input', { type: 'text', maxLength: TITLE_MAX, value: meeting?.title || '', placeholder: defaultTitle, autocomplete: 'off' });
    const passcodeOn = toggle('Require a passcode', s.passcode_required, (on) => { passcodeBox.hidden = !on; },
      'The passcode rides in the invite link, after the #, so the server never logs it.');
    const customPasscode = h('input', { type: 'text', maxLength: PASSCODE_MAX, autocomplete: 'off', spellcheck: false, placeholder: editing ? 'Leave empty to keep the current one' : 'Leave empty to generate a strong one' });
    const regenerate = editing ? toggle('Generate a new passcode', false, (on) => { customPasscode.disabled = on; }) : null;
    const passcodeBox = h('div', { class: 'subfields', hidden: !s.passcode_required },
      field(editing ? 'New passcode' : 'Custom passcode', customPasscode),
      regenerate ? regenerate.label : null);

    const waitingRoom = toggle('Waiting room', s.waiting_room, null, 'A host admits each person who joins.');
    const screenShare = h('select', {},
      h('option', { value: 'host_only', text: 'Hosts only', selected: s.screen_share === 'host_only' }),
      h('option', { value: 'everyone', text: 'Everyone', selected: s.screen_share === 'everyone' }));
    // View-only attendees for lectures and all-hands (web/publishing.js).
    const publish = h('select', {},
      h('option', { value: 'everyone', text: 'Everyone', selected: s.publish !== 'allowed' }),
      h('option', { value: 'allowed', text: 'Only people the host allows', selected: s.publish === 'allowed' }));
    const chat = toggle('Chat', s.chat, null, 'Participants may send chat messages.');
    const selfUnmute = toggle('Participants can unmute themselves', s.self_unmute, null, 'After a host mutes them.');
    const rename = toggle('Participants can rename themselves', s.rename_self);
    // Who may join: checked by the server after the passcode (docs/security.md).
    const policy = h('select', {},
      h('option', { value: 'anyone', text: 'Anyone with the link' }),
      h('option', { value: 'signed_in', text: 'Signed-in people only' }),
      h('option', { value: 'organisation', text: 'People of this organisation only' }));
    policy.value = s.who_may_join || (s.only_signed_in ? 'signed_in' : 'anyone');
    if (!editing) serverDefaultPolicy().then((p) => { if (!policy.dataset.touched) { policy.value = p; showInvited(); } });
    const invited = h('textarea', { rows: 3, spellcheck: false, autocomplete: 'off',
      value: (s.invited_emails || []).join('\n'), placeholder: 'guest@partner.example' });
    const invitedBox = h('div', { class: 'subfields' },
      field('Invited outside people (email addresses)', invited,
        'One address a line. They join by signing in with a provider that vouches for that address.'));
    function showInvited() { invitedBox.hidden = policy.value !== 'organisation'; }
    policy.addEventListener('change', () => { policy.dataset.touched = '1'; showInvited(); });
    showInvited();
    // When: an optional start (in this browser's time zone) and length.
    const starts = h('input', { type: 'datetime-local', value: meeting?.starts_at ? localInput(meeting.starts_at) : '' });
    const duration = h('input', { type: 'number', min: 1, max: MAX_DURATION, step: 1, inputMode: 'numeric', value: String(meeting?.duration_minutes || 60) });
    const beforeHost = toggle('Guests can join before a host', s.join_before_host !== false, null,
      'When off, people who arrive before a host wait until one joins.');
    const maxP = h('input', { type: 'number', min: 2, max: MAX_PARTICIPANTS, step: 1, value: String(s.max_participants), inputMode: 'numeric' });

    const alert = alertBox();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', text: editing ? 'Save changes' : 'Create meeting' });
    const cancel = h('button', { type: 'button', class: 'btn btn-ghost', text: 'Cancel' });

    const form = h('form', { class: 'dialog-form', noValidate: true },
      h('header', { class: 'dialog-head' },
        h('h2', { id: titleId, text: editing ? 'Meeting settings' : 'New meeting' }),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close', onClick: () => close(null) }, icon('x'))),
      h('div', { class: 'dialog-body' },
        field('Title', title),
        h('fieldset', { class: 'group' },
          h('legend', { text: 'Security' }),
          passcodeOn.label, passcodeBox, waitingRoom.label,
          field('Who can join', policy, 'Passcode and waiting room still apply.'), invitedBox),
        h('fieldset', { class: 'group' },
          h('legend', { text: 'Schedule' }),
          field('Starts', starts, 'Leave empty for a meeting without a set time.'),
          field('Duration (minutes)', duration, `1 to ${MAX_DURATION}.`),
          beforeHost.label),
        h('fieldset', { class: 'group' },
          h('legend', { text: 'Participants' }),
          field('Who can share their screen', screenShare),
          field('Attendees may publish', publish, 'Camera, microphone and screen. Others watch and raise a hand to ask to speak.'),
          chat.label, selfUnmute.label, rename.label,
          field('Maximum participants', maxP, `2 to ${MAX_PARTICIPANTS}, hosts included.`)),
        alert.el),
      h('footer', { class: 'dialog-foot' }, cancel, submit));

    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId }, form);
    document.body.append(dialog);
    cancel.addEventListener('click', () => close(null));
    dialog.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      close(null);
    });

    function close(result) {
      dialog.close();
      dialog.remove();
      resolve(result);
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      alert.clear();
      const n = Number(maxP.value);
      if (!Number.isInteger(n) || n < 2 || n > MAX_PARTICIPANTS) {
        alert.show(`Maximum participants must be a whole number from 2 to ${MAX_PARTICIPANTS}.`);
        maxP.focus();
        return;
      }
      const code = customPasscode.value.trim();
      const wantPasscode = passcodeOn.input.checked;
      if (wantPasscode && code && !customPasscode.disabled && (code.length < PASSCODE_MIN || code.length > PASSCODE_MAX)) {
        alert.show(`A passcode has ${PASSCODE_MIN} to ${PASSCODE_MAX} characters.`);
        customPasscode.focus();
        return;
      }
      const emails = invited.value.split(/[\s,;]+/).map((e) => e.trim()).filter(Boolean);
      if (emails.length > MAX_INVITED) {
        alert.show(`Invite at most ${MAX_INVITED} addresses.`);
        invited.focus();
        return;
      }
      const bad = emails.find((e) => !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(e));
      if (bad) {
        alert.show(`"${bad}" is not an email address.`);
        invited.focus();
        return;
      }
      const minutes = Number(duration.value);
      let startsAt = null;
      if (starts.value) {
        startsAt = Math.floor(new Date(starts.value).getTime() / 1000);
        if (!Number.isFinite(startsAt) || startsAt < 0) {
          alert.show('The start is not a date and time.');
          starts.focus();
          return;
        }
        if (!Number.isInteger(minutes) || minutes < 1 || minutes > MAX_DURATION) {
          alert.show(`The duration is a whole number of minutes from 1 to ${MAX_DURATION}.`);
          duration.focus();
          return;
        }
      }
      const body = {
        settings: {
          passcode_required: wantPasscode,
          waiting_room: waitingRoom.input.checked,
          screen_share: screenShare.value,
          publish: publish.value,
          chat: chat.input.checked,
          self_unmute: selfUnmute.input.checked,
          rename_self: rename.input.checked,
          who_may_join: policy.value,
          invited_emails: emails,
          max_participants: n,
          join_before_host: beforeHost.input.checked,
        },
      };
      if (startsAt !== null) {
        body.starts_at = startsAt;
        body.duration_minutes = minutes;
      } else if (editing && meeting.starts_at != null) {
        body.unschedule = true;
      }
      const t = title.value.trim();
      if (t) body.title = t;
      if (wantPasscode) {
        if (regenerate && regenerate.input.checked) body.regenerate_passcode = true;
        else if (code) body.passcode = code;
      }
      submit.disabled = true;
      try {
        const saved = editing ? await api.updateMeeting(meeting.id, body) : await api.createMeeting(body);
        close(saved);
      } catch (e) {
        submit.disabled = false;
        alert.show(apiError(e));
      }
    });

    dialog.showModal();
    title.focus();
  });
}
