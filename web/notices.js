// What a meeting session tells the person, as text: the notices (toasts) for
// server messages and state changes, the explanation of a refusal, and why a
// join failed when the server never said. Pure functions: the call decides
// when to show them. A notice is {text, kind} with kind 'info' | 'success' |
// 'error', or null when there is nothing to say.

import { meetingError } from './errors.js';

const info = (text) => Object.freeze({ text, kind: 'info' });
const success = (text) => Object.freeze({ text, kind: 'success' });
const error = (text) => Object.freeze({ text, kind: 'error' });

export const NOT_CONNECTED = error('Not connected right now. Try again in a moment.');
export const RECONNECTED = success('Reconnected.');
/**
 * A resume answered by another server, which rebuilt the meeting's
 * encryption group. `keep`: it stays until dismissed, as the new group's
 * forming brings several notices at once right after it.
 */
export const RECONNECTED_NEW_CODE = Object.freeze({ ...info('Reconnected — new security code: the meeting moved to another server and its encryption was set up again. Compare the code again.'), keep: true });
export const MEDIA_REFUSED = error('The server could not use this browser\'s audio or video settings: others may not see or hear you.');
export const MEETING_FULL = error('The meeting is full: nobody more can be admitted.');
export const CHAT_TOO_LONG = error('That message is too long (12 KiB at most).');
export const CHAT_TOO_LONG_ENCRYPTED = error('That message is too long once encrypted.');
export const CHAT_FAILED = error('The message could not be sent. Try again in a moment.');
export const SCREEN_HOSTS_ONLY = error('Only hosts can share their screen in this meeting.');

/** For the join form (state.joinError): a seat kept over a reload that the server no longer holds. */
export const SEAT_EXPIRED = Object.freeze({ code: 'resume_failed', text: 'Your seat in the meeting has expired. Join again.' });
/** For the join form: the socket never reached the server. */
export const UNREACHABLE = Object.freeze({ code: 'unreachable', text: 'Cannot reach the server. Check your connection and try again.' });

/** For the join form: the server refused the join ({code, text, retryAfter}). */
export function joinRefused(err) {
  return { code: err.code, text: meetingError(err), retryAfter: err.retry_after || 0 };
}

/** Any other error from the server. */
export function serverError(err) {
  return error(meetingError(err));
}

/** Someone left: said only when they were removed or lost their connection. */
export function participantLeft(name, reason) {
  if (!name) return null;
  if (reason === 'removed') return info(`${name} was removed from the meeting.`);
  if (reason === 'timed_out') return info(`${name} lost their connection.`);
  return null;
}

/** `security_notice`: wrong passcodes tried (for moderators). */
export function passcodeGuessing(msg) {
  return error(`${msg.failed_attempts} wrong passcodes were tried in the last ${msg.window_secs} seconds. Consider locking the meeting.`);
}

/** People who just arrived in the waiting room ([{name, recording, same_network_as_removed}]). */
export function waitingArrived(arrived) {
  // Someone on the network of a person removed from this meeting waits even
  // with the waiting room off: say why, it may be that person again.
  const flagged = arrived.filter((w) => w.same_network_as_removed).length;
  const why = flagged === 0 ? ''
    : arrived.length === 1 ? ' They share a network with someone removed from this meeting.'
      : ` ${flagged} of them share a network with someone removed from this meeting.`;
  // Admitting a recorder starts a recording: the notice says so.
  const recorders = arrived.filter((w) => w.recording).length;
  if (arrived.length === 1 && recorders === 1) return info(`${arrived[0].name} is waiting to join, to record the meeting.${why}`);
  const recording = recorders === 0 ? '' : ` ${recorders === 1 ? 'One of them' : `${recorders} of them`} would record the meeting.`;
  if (arrived.length === 1) return info(`${arrived[0].name} is waiting to join.${why}`);
  if (arrived.length > 1) return info(`${arrived.length} people are waiting to join.${recording}${why}`);
  return null;
}

/**
 * A recorder came or went (`recorded` now), or this person arrived in a
 * meeting that is already recorded (`arriving`).
 */
export function recordingChanged(recorded, arriving) {
  if (recorded) {
    return info(arriving ? 'This meeting is being recorded.' : 'Recording started: this meeting is being recorded.');
  }
  return info('Recording stopped.');
}

/** Someone else turned off one of this member's media kinds. */
export function mediaLost(kind) {
  switch (kind) {
    case 'audio': return info('A host muted you.');
    case 'video': return info('A host turned off your video.');
    default: return info('Your screen share was stopped.');
  }
}

/** This member's role changed to `role`. */
export function roleChanged(role) {
  if (role === 'host') return success('You are now the host.');
  if (role === 'cohost') return success('You are now a co-host.');
  return info('You are no longer a co-host.');
}

/** What changed in the meeting's state, as notices; permissions only for `moderator` false. */
export function meetingChanged(before, after, moderator) {
  const out = [];
  if (before.suspended !== after.suspended) {
    out.push(info(after.suspended ? 'A host suspended participant activities.' : 'Participant activities resumed.'));
  } else if (before.locked !== after.locked) {
    out.push(info(after.locked ? 'The meeting is locked: nobody new can join.' : 'The meeting is unlocked.'));
  }
  if (moderator) return out;
  const b = before.permissions;
  const a = after.permissions;
  if (b.screen_share !== a.screen_share) out.push(info(a.screen_share === 'everyone' ? 'Everyone may now share their screen.' : 'Only hosts may share their screen now.'));
  if (b.chat !== a.chat) out.push(info(a.chat ? 'The host turned chat on.' : 'The host turned chat off.'));
  if (b.rename_self !== a.rename_self) out.push(info(a.rename_self ? 'You may now rename yourself.' : 'Renaming is turned off.'));
  return out;
}

/** Turning `kind` on was stopped here: participant activities are suspended. */
export function suspendedCannot(kind) {
  const what = kind === 'audio' ? 'unmute' : kind === 'video' ? 'start video' : 'share your screen';
  return error(`Participant activities are suspended: you cannot ${what} now.`);
}

/** `not_permitted` for the last request (`intent`: {kind} or null), in the meeting as it is. */
export function refusal(intent, meeting) {
  return error(refusalText(intent, meeting));
}

function refusalText(intent, meeting) {
  const suspended = meeting?.suspended;
  switch (intent?.kind) {
    case 'audio':
      return suspended ? 'Participant activities are suspended: you cannot unmute now.'
        : 'A host muted you, and this meeting does not let participants unmute themselves.';
    case 'video':
      return suspended ? 'Participant activities are suspended: you cannot start video now.'
        : 'A host turned off your video. Ask a host to let you start it again.';
    case 'screen':
      if (suspended) return 'Participant activities are suspended: you cannot share now.';
      return meeting?.permissions.screen_share === 'everyone'
        ? 'A host stopped your screen share. Ask a host to let you share again.'
        : 'Only hosts can share their screen in this meeting.';
    case 'arrival':
      return suspended ? 'Participant activities are suspended: you joined muted, with video off.'
        : 'You joined muted: a host has to allow you to unmute.';
    case 'chat':
      return suspended ? 'Participant activities are suspended: chat is paused.' : 'The host has turned chat off.';
    case 'rename':
      return suspended ? 'Participant activities are suspended: you cannot rename yourself now.' : 'Renaming is turned off in this meeting.';
    default:
      return 'You are not allowed to do that in this meeting.';
  }
}
