// One meeting session: the signaling socket, the state it feeds, and the
// actions the views call (mute, admit, chat, ...). Views render from
// `call.store`; they never touch the socket.

import { E2ee, initialE2ee } from './e2ee.js';
import { Signaling } from './signaling.js';
import { initialMedia, Streams } from './streams.js';
import { createStore, initialState, isModerator, reduce, self } from './state.js';
import { meetingError } from './errors.js';
import { toast } from './toast.js';

/** Largest chat payload the server relays, in bytes of UTF-8. */
export const MAX_CHAT_BYTES = 16 * 1024;
/** Largest chat text, in bytes of UTF-8: its MLS ciphertext in base64 must fit MAX_CHAT_BYTES. */
const MAX_CHAT_TEXT_BYTES = 12 * 1024 - 512;

const seatKey = (meetingId) => `conclave.seat.${meetingId}`;

function readSeat(meetingId) {
  try {
    const seat = JSON.parse(sessionStorage.getItem(seatKey(meetingId)) || 'null');
    if (!seat || typeof seat.token !== 'string') return null;
    return seat;
  } catch {
    return null;
  }
}

function writeSeat(meetingId, seat) {
  try {
    if (seat) sessionStorage.setItem(seatKey(meetingId), JSON.stringify(seat));
    else sessionStorage.removeItem(seatKey(meetingId));
  } catch {
    // Storage may be unavailable (private mode); resuming after a reload is a nicety.
  }
}

/** A seat this tab held a moment ago (before a reload), if it may still be kept. */
export function recentSeat(meetingId) {
  const seat = readSeat(meetingId);
  if (!seat) return null;
  const windowMs = (seat.window || 30) * 1000;
  if (Date.now() - seat.savedAt > windowMs - 2000) {
    writeSeat(meetingId, null);
    return null;
  }
  return seat;
}

export class Call {
  /**
   * meetingId; name and passcode for `join`; media: what to send on arrival
   * ({audio, video}); owner: whether this account owns the meeting.
   */
  constructor({ meetingId, name, passcode = '', media = { audio: true, video: true }, owner = false }) {
    this.meetingId = meetingId;
    this.name = name;
    this.passcode = passcode;
    this.media = media;
    this.owner = owner;
    this.store = createStore({ ...initialState(), media: initialMedia(), e2ee: initialE2ee() });
    this.streams = null; // the media, from the first `joined` on
    this.e2ee = new E2ee(this); // the MLS group and the media keys
    this.intent = null; // what the last request was, to explain a refusal
    this.expectOff = new Set(); // kinds this client turned off itself
    this.endedByMe = false;
    this.lostNotices = []; // "a host muted you" and the like, shown after a short wait
    this.lostTimer = null;
    this.waitingNotices = new Map(); // [waiting ids] -> toast, dismissed once they are not waiting
    this.resumedFromReload = false;
    this.joinedOnce = false;
    this.sig = new Signaling(meetingId, {
      onMessage: (m) => this.onMessage(m),
      onStatus: (s) => this.onStatus(s),
    });
    this.sig.resumeState = () => this.e2ee.resumeState();
    this.onPageHide = () => {
      const seat = readSeat(this.meetingId);
      if (seat) writeSeat(this.meetingId, { ...seat, savedAt: Date.now() });
    };
    window.addEventListener('pagehide', this.onPageHide);
  }

  get state() {
    return this.store.get();
  }

  start() {
    this.sig.join(this.name, this.passcode);
  }

  /** Takes back the seat of `seat` (from recentSeat) after a reload. */
  resume(seat) {
    this.resumedFromReload = true;
    this.joinedOnce = true;
    this.sig.resume(seat.token, seat.window || 30);
  }

  /** Stops listening; the socket closes without a leave (used when the page goes). */
  dispose() {
    window.removeEventListener('pagehide', this.onPageHide);
    this.streams?.close();
    this.e2ee.close();
    this.sig.close();
  }

  // --- from the server -----------------------------------------------------

  onMessage(msg) {
    const before = this.state;
    if (msg.type === 'media_offer') {
      this.streams?.onOffer(msg);
      return;
    }
    if (msg.type === 'media_answer') {
      this.streams?.onAnswer(msg);
      return;
    }
    if (msg.type === 'error') {
      if (!this.e2ee.onError(msg)) this.onError(msg);
      return;
    }
    if (msg.type.startsWith('mls_')) {
      this.e2ee.onServer(msg);
      return;
    }
    if (msg.type === 'chat') {
      // Chat is an MLS application message: shown once opened, as text.
      this.e2ee.openChat(msg).then((line) => {
        if (line) this.store.update((s) => reduce(s, { type: 'chat', from: line.from, payload: line.text }));
      });
      return;
    }
    if (msg.type === 'waiting' || msg.type === 'joined') this.e2ee.onSeat(msg.you);
    this.store.update((s) => {
      const next = reduce(s, msg);
      // "You ended the meeting" rather than "the host ended it".
      if (msg.type === 'ended' && this.endedByMe) return { ...next, outcome: { ...next.outcome, byMe: true } };
      return next;
    });
    const after = this.state;
    switch (msg.type) {
      case 'joined':
        writeSeat(this.meetingId, { token: msg.resume_token, window: msg.resume_window, name: this.name, savedAt: Date.now() });
        if (this.streams) {
          // Resumed after a drop: the old peer connection went with the old socket.
          this.streams.connect();
        } else {
          this.streams = new Streams(this);
          const arriving = !this.joinedOnce;
          this.joinedOnce = true;
          this.streams.start(arriving ? this.media : {}).then((on) => {
            if (Object.keys(on).length && this.state.phase === 'joined') this.send({ type: 'set_media', ...on }, { kind: 'arrival' });
          });
        }
        break;
      case 'waiting_room':
        this.announceWaiting(before.waiting, after.waiting);
        break;
      case 'participant_updated':
        this.announceSelfChange(before, msg.participant);
        break;
      case 'participant_left': {
        const name = before.names[msg.participant];
        if (name && msg.reason === 'removed') toast(`${name} was removed from the meeting.`);
        else if (name && msg.reason === 'timed_out') toast(`${name} lost their connection.`);
        break;
      }
      case 'meeting_updated':
        this.announceMeetingChange(before.meeting, msg.meeting);
        break;
      case 'security_notice':
        if (isModerator(after)) {
          toast(`${msg.failed_attempts} wrong passcodes were tried in the last ${msg.window_secs} seconds. Consider locking the meeting.`, 'error');
        }
        break;
      case 'denied':
      case 'removed':
      case 'ended':
        writeSeat(this.meetingId, null);
        break;
      default:
        break;
    }
  }

  onError(err) {
    const s = this.state;
    if (err.code === 'resume_failed') return; // reported by onStatus
    if (s.phase === 'connecting' || (s.phase === 'waiting' && this.sig.done)) {
      this.store.update((st) => ({
        ...st,
        phase: 'failed',
        joinError: { code: err.code, text: meetingError(err), retryAfter: err.retry_after || 0 },
      }));
      return;
    }
    if (err.code === 'media_refused') {
      this.streams?.onRefused('media_refused');
      toast('The server could not use this browser\'s audio or video settings: others may not see or hear you.', 'error');
      return;
    }
    if (err.code === 'not_permitted') {
      this.streams?.onRefused('not_permitted');
      if (this.intent?.kind === 'screen') this.streams?.dropPendingScreen();
      toast(this.explainRefusal(), 'error');
      return;
    }
    if (err.code === 'full' && isModerator(s)) {
      toast('The meeting is full: nobody more can be admitted.', 'error');
      return;
    }
    toast(meetingError(err), 'error');
  }

  onStatus(st) {
    const s = this.state;
    if (st.status === 'reconnecting') {
      this.store.update((x) => ({ ...x, connection: 'reconnecting', reconnectDeadline: st.deadline }));
    } else if (st.status === 'open') {
      if (s.connection === 'reconnecting' && s.phase === 'joined') toast('Reconnected.', 'success');
      this.store.update((x) => ({ ...x, connection: 'open', reconnectDeadline: null }));
    } else if (st.status === 'closed') {
      window.removeEventListener('pagehide', this.onPageHide);
      if (st.reason === 'resume_failed') {
        writeSeat(this.meetingId, null);
        if (this.resumedFromReload && s.phase === 'connecting') {
          this.store.update((x) => ({ ...x, phase: 'failed', connection: 'closed', joinError: { code: 'resume_failed', text: 'Your seat in the meeting has expired. Join again.' } }));
        } else {
          this.store.update((x) => ({ ...x, phase: 'over', connection: 'closed', outcome: { kind: 'resume_failed' } }));
        }
      } else if (st.reason === 'unreachable') {
        if (s.phase === 'waiting') {
          this.store.update((x) => ({ ...x, phase: 'over', connection: 'closed', outcome: { kind: 'lost_waiting' } }));
        } else if (s.phase === 'connecting') {
          this.store.update((x) => ({ ...x, phase: 'failed', connection: 'closed', joinError: { code: 'unreachable', text: 'Cannot reach the server. Check your connection and try again.' } }));
        }
      } else if (st.reason === 'left') {
        writeSeat(this.meetingId, null);
      } else {
        this.store.update((x) => ({ ...x, connection: 'closed' }));
      }
    }
  }

  announceWaiting(before, after) {
    // Take back notices about people who are no longer waiting.
    const still = new Set(after.map((w) => w.id));
    for (const [ids, notice] of this.waitingNotices) {
      if (!ids.some((id) => still.has(id))) {
        notice.dismiss();
        this.waitingNotices.delete(ids);
      }
    }
    if (!isModerator(this.state)) return;
    const known = new Set(before.map((w) => w.id));
    const arrived = after.filter((w) => !known.has(w.id));
    let notice = null;
    // Someone on the network of a person removed from this meeting waits even
    // with the waiting room off: say why, it may be that person again.
    const flagged = arrived.filter((w) => w.same_network_as_removed).length;
    const why = flagged === 0 ? ''
      : arrived.length === 1 ? ' They share a network with someone removed from this meeting.'
        : ` ${flagged} of them share a network with someone removed from this meeting.`;
    if (arrived.length === 1) notice = toast(`${arrived[0].name} is waiting to join.${why}`);
    else if (arrived.length > 1) notice = toast(`${arrived.length} people are waiting to join.${why}`);
    if (notice) this.waitingNotices.set(arrived.map((w) => w.id), notice);
  }

  announceSelfChange(before, p) {
    if (p.id !== before.you) return;
    const old = self(before);
    if (!old) return;
    const lost = (kind, text) => {
      if (old[kind] && !p[kind]) {
        if (this.expectOff.has(kind)) this.expectOff.delete(kind);
        else this.lostNotices.push(text);
      }
    };
    lost('audio', 'A host muted you.');
    lost('video', 'A host turned off your video.');
    lost('screen', 'Your screen share was stopped.');
    if (this.lostNotices.length && !this.lostTimer) {
      // A suspension turns everything off first and is announced just after:
      // wait a moment, and let its one notice speak for all of it.
      this.lostTimer = setTimeout(() => {
        this.lostTimer = null;
        const notices = this.lostNotices;
        this.lostNotices = [];
        if (this.state.meeting?.suspended || this.state.phase !== 'joined') return;
        for (const text of notices) toast(text);
      }, 250);
    }
    if (old.role !== p.role) {
      if (p.role === 'host') toast('You are now the host.', 'success');
      else if (p.role === 'cohost') toast('You are now a co-host.', 'success');
      else toast('You are no longer a co-host.');
    }
  }

  announceMeetingChange(before, after) {
    if (!before) return;
    if (before.suspended !== after.suspended) {
      toast(after.suspended ? 'A host suspended participant activities.' : 'Participant activities resumed.');
    } else if (before.locked !== after.locked) {
      toast(after.locked ? 'The meeting is locked: nobody new can join.' : 'The meeting is unlocked.');
    }
    if (isModerator(this.state)) return;
    const b = before.permissions;
    const a = after.permissions;
    if (b.screen_share !== a.screen_share) toast(a.screen_share === 'everyone' ? 'Everyone may now share their screen.' : 'Only hosts may share their screen now.');
    if (b.chat !== a.chat) toast(a.chat ? 'The host turned chat on.' : 'The host turned chat off.');
    if (b.rename_self !== a.rename_self) toast(a.rename_self ? 'You may now rename yourself.' : 'Renaming is turned off.');
  }

  explainRefusal() {
    const s = this.state;
    const suspended = s.meeting?.suspended;
    switch (this.intent?.kind) {
      case 'audio':
        return suspended ? 'Participant activities are suspended: you cannot unmute now.'
          : 'A host muted you, and this meeting does not let participants unmute themselves.';
      case 'video':
        return suspended ? 'Participant activities are suspended: you cannot start video now.'
          : 'A host turned off your video. Ask a host to let you start it again.';
      case 'screen':
        if (suspended) return 'Participant activities are suspended: you cannot share now.';
        return s.meeting?.permissions.screen_share === 'everyone'
          ? 'A host stopped your screen share. Ask a host to let you share again.'
          : 'Only hosts can share their screen in this meeting.';
      case 'arrival':
        return suspended ? 'Participant activities are suspended: you joined muted, with video off.'
          : 'You joined muted: a host has to allow you to unmute.';
      case 'chat':
        return suspended ? 'Participant activities are suspended: chat is paused.' : 'The host has turned chat off.';
      case 'rename':
        return 'Renaming is turned off in this meeting.';
      default:
        return 'You are not allowed to do that in this meeting.';
    }
  }

  // --- to the server -------------------------------------------------------

  send(msg, intent = null) {
    this.intent = intent;
    if (!this.sig.send(msg)) {
      toast('Not connected right now. Try again in a moment.', 'error');
      return false;
    }
    return true;
  }

  /** Turns one of this member's media kinds on or off; a screen is captured before it is offered. */
  async setMedia(kind, on) {
    const s = this.state;
    if (on && !isModerator(s)) {
      if (s.meeting?.suspended) {
        toast(`Participant activities are suspended: you cannot ${kind === 'audio' ? 'unmute' : kind === 'video' ? 'start video' : 'share your screen'} now.`, 'error');
        return;
      }
      if (kind === 'screen' && s.meeting?.permissions.screen_share !== 'everyone') {
        toast('Only hosts can share their screen in this meeting.', 'error');
        return;
      }
    }
    if (kind === 'screen' && on && !(this.streams && await this.streams.shareScreen())) return;
    if (!on) this.expectOff.add(kind);
    if (!this.send({ type: 'set_media', [kind]: on }, { kind }) && kind === 'screen') this.streams?.dropPendingScreen();
  }

  /** Sends a chat message, encrypted for the group; false when it cannot go. */
  chat(text) {
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > MAX_CHAT_TEXT_BYTES) {
      toast('That message is too long (12 KiB at most).', 'error');
      return false;
    }
    if (this.state.connection !== 'open') {
      toast('Not connected right now. Try again in a moment.', 'error');
      return false;
    }
    this.intent = { kind: 'chat' };
    this.e2ee.sendChat(text, MAX_CHAT_BYTES).then((r) => {
      if (r === 'too_long') toast('That message is too long once encrypted.', 'error');
      else if (r === 'failed') toast('The message could not be sent. Try again in a moment.', 'error');
    });
    return true;
  }

  rename(name, participant) {
    const msg = { type: 'rename', name };
    if (participant !== undefined) msg.participant = participant;
    return this.send(msg, { kind: 'rename' });
  }

  admit(id) { this.send({ type: 'admit', participant: id }); }
  deny(id) { this.send({ type: 'deny', participant: id }); }
  admitAll() { this.send({ type: 'admit_all' }); }
  remove(id) { this.send({ type: 'remove', participant: id }); }
  stopMedia(id, kind) { this.send({ type: 'stop_media', participant: id, kind }); }
  muteAll() { this.send({ type: 'mute_all' }); }
  setRole(id, role) { this.send({ type: 'set_role', participant: id, role }); }
  lock() { this.send({ type: 'lock' }); }
  unlock() { this.send({ type: 'unlock' }); }
  suspend() { this.send({ type: 'suspend_activities' }); }
  resumeActivities() { this.send({ type: 'resume_activities' }); }
  setPermissions(patch) { this.send({ type: 'set_permissions', permissions: patch }); }

  endForAll() {
    this.endedByMe = true;
    this.send({ type: 'end_meeting' });
  }

  leave() {
    writeSeat(this.meetingId, null);
    this.streams?.close();
    this.e2ee.close();
    this.sig.leave();
    this.store.update((s) => ({ ...s, phase: 'over', connection: 'closed', outcome: { kind: s.phase === 'waiting' ? 'left_waiting' : 'left' } }));
  }
}
