// What to tell a person for each error the server can send (the codes of
// conclave-proto's ErrorCode and the HTTP API's error codes).

/** Seconds as words: "45 seconds", "2 minutes", "1 minute 5 seconds". */
export function duration(secs) {
  const s = Math.max(0, Math.ceil(secs));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  const mins = `${m} minute${m === 1 ? '' : 's'}`;
  return rest ? `${mins} ${rest} second${rest === 1 ? '' : 's'}` : mins;
}

const MEETING_ERRORS = {
  join_refused: 'We could not find that meeting, or the passcode is wrong. Check the invite link and the passcode.',
  locked: 'This meeting is locked: nobody new can join right now. Ask the host to unlock it.',
  full: 'This meeting is full.',
  banned: 'You were removed from this meeting and cannot rejoin it from this browser, or with this account.',
  sign_in_required: 'Only signed-in users can join this meeting. Sign in first.',
  organisation_only: 'Only people of this organisation, and outside people the host invited, can join this meeting. Sign in with your organisation’s account (or the address you were invited with).',
  invalid_name: 'Your name must have 1 to 64 characters.',
  not_permitted: 'You are not allowed to do that in this meeting.',
  unknown_participant: 'That person is no longer here.',
  not_joined: 'You have not joined the meeting yet.',
  already_joined: 'You are already in this meeting.',
  resume_failed: 'We could not reconnect you: your seat in the meeting has expired. Join again.',
  chat_too_large: 'That message is too long (16 KiB at most).',
  media_refused: 'The server refused the media settings.',
  timeout: 'The server did not hear from us in time. Try again.',
  shutting_down: 'The server is restarting. Try again in a moment.',
  unavailable: 'The service is temporarily unavailable. Try again in a moment.',
  internal: 'Something went wrong on the server; nothing was changed. Try again.',
  bad_message: 'The server did not understand a message from this page. Reload the page.',
  unknown_type: 'The server did not understand a message from this page. Reload the page.',
  too_large: 'A message was too large for the server.',
};

/** The sentence for a meeting `error` message ({code, message, retry_after}). */
export function meetingError(err) {
  if (err.code === 'too_many_attempts') {
    return err.retry_after
      ? `Too many attempts. Try again in ${duration(err.retry_after)}.`
      : 'Too many attempts. Try again later.';
  }
  if (err.code === 'flood') return 'You are doing that too fast. Slow down a little.';
  return MEETING_ERRORS[err.code] || err.message || 'Something went wrong.';
}

/** The sentence for an ApiError from api.js. */
export function apiError(e) {
  switch (e.code) {
    case 'bad_credentials': return 'Wrong username or password.';
    case 'bad_link': return 'This sign-in link is unknown, already used or expired. Ask for a new one, or sign in with your password.';
    case 'too_many_attempts':
      return e.retryAfter ? `Too many attempts. Try again in ${duration(e.retryAfter)}.` : 'Too many attempts. Try again later.';
    case 'unauthorized': return 'Your session has ended. Sign in again.';
    case 'not_found': return 'That meeting does not exist, or it is not yours.';
    case 'network': return e.message;
    case 'internal': return 'Something went wrong on the server. Try again.';
    case 'unavailable': return 'The service is temporarily unavailable. Try again in a moment.';
    default: return e.message || 'Something went wrong.';
  }
}

/** Why the meeting ended, from the `ended` message's reason. */
export function endReason(reason) {
  switch (reason) {
    case 'ended_by_host': return 'The host ended the meeting for everyone.';
    case 'deleted': return 'The host deleted this meeting.';
    case 'server_shutdown': return 'The server is shutting down, so the meeting ended.';
    default: return 'The meeting has ended.';
  }
}
