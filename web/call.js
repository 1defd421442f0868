// One meeting session: the signaling socket, the state it feeds, and the
// actions the views call (mute, admit, chat, ...). Views render from
// `call.store`; they never touch the socket. Every change of state is an
// event for state.js's `reduce`; what to say is notices.js's, when to say it
// is decided here.

import { Features } from './appmsg.js';
import { E2ee, initialE2ee, MAX_CHAT_TEXT_BYTES } from './e2ee.js';
import * as notices from './notices.js';
import { Signaling } from './signaling.js';
import { initialMedia, Streams } from './streams.js';
import { mayPublish, publishNotice, VIEW_ONLY_REASON } from './publishing.js';
import { createStore, initialState, isModerator, isRecorded, reduce, self } from './state.js';
import { toast } from './toast.js';

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
  constructor({ meetingId, name, passcode = '', media = { audio: true, video: true }, owner = false, ticket = null }) {
    this.meetingId = meetingId;
    this.ticket = ticket; // a breakout ticket (breakout.js), instead of the passcode
    this.onBreakout = null; // breakout_* messages, for breakout.js
    this.name = name;
    this.passcode = passcode;
    this.media = media;
    this.owner = owner;
    this.store = createStore({ ...initialState(), media: initialMedia(), e2ee: initialE2ee() });
    this.streams = null; // the media, from the first `joined` on
    this.e2ee = new E2ee(this.lend()); // the MLS group and the media keys
    this.features = new Features(this); // hands, reactions and polls, through the group
    this.intent = null; // what the last request was, to explain a refusal
    this.expectOff = new Set(); // kinds this client turned off itself
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

  /** Applies one event (a server message or a `local:` one, see state.js); returns the new state. */
  dispatch(event) {
    this.store.update((s) => reduce(s, event));
    return this.state;
  }

  /** Shows a notice from notices.js (nothing for null); returns {dismiss()} or null. */
  notify(notice) {
    return notice ? toast(notice.text, notice.kind, { keep: notice.keep === true }) : null;
  }

  /** What E2ee and Streams may use of this session: the socket's send and the store. */
  lend() {
    return {
      send: (msg) => this.sig.send(msg),
      getState: () => this.store.get(),
      update: (fn) => this.store.update(fn),
      subscribe: (fn) => this.store.subscribe(fn),
    };
  }

  start() {
    this.sig.join(this.name, this.passcode, this.ticket);
  }

  /** Takes back the seat of `seat` (from recentSeat) after a reload. */
  resume(seat) {
    this.resumedFromReload = true;
    this.joinedOnce = true;
    // The group the seat was in before the reload: if the meeting moved to
    // another server meanwhile, the `joined` names another, and is told.
    if (typeof seat.group === 'string') this.e2ee.rememberGroup(seat.group);
    this.sig.resume(seat.token, seat.window || 30);
  }

  /** Stops listening; the socket closes without a leave (used when the page goes). */
  dispose() {
    window.removeEventListener('pagehide', this.onPageHide);
    this.streams?.close();
    this.features.close();
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
    if (msg.type === 'layers_wanted') {
      this.streams?.onLayersWanted(msg);
      return;
    }
    if (msg.type === 'video_paused') {
      this.streams?.onVideoPaused(msg);
      return;
    }
    if (msg.type === 'error') {
      if (!this.e2ee.onError(msg)) this.onError(msg);
      return;
    }
    if (msg.type.startsWith('breakout_')) {
      this.onBreakout?.(msg);
      return;
    }
    if (msg.type.startsWith('mls_')) {
      this.e2ee.onServer(msg);
      return;
    }
    if (msg.type === 'chat' || msg.type === 'app') {
      // Chat is an MLS application message: shown once opened, as text.
      // Hands, reactions and polls travel the same way on their own relay,
      // `app` (appmsg.js); one that arrives as chat is still taken as such.
      this.e2ee.openChat(msg).then((line) => {
        if (!line) return;
        if (this.features.take(line.from, line.text)) return;
        if (msg.type === 'chat') this.dispatch({ type: 'local:chat', from: line.from, text: line.text });
      });
      return;
    }
    const rebuilt = msg.type === 'joined' && this.e2ee.onGroupSetup(msg.e2ee);
    if (msg.type === 'waiting' || msg.type === 'joined') this.e2ee.onSeat(msg.you, msg.type === 'waiting' && this.sig.freshWaiting);
    const after = this.dispatch(msg);
    // Once for each `joined` that names another group than the last (a
    // resume on the server that took the meeting over, also after a
    // reload). The notice stays until dismissed: the new group's forming
    // brings other notices at once, which pushed it out of toast.js's four
    // within a fraction of a second. The Security panel keeps saying it.
    if (rebuilt) this.notify(notices.RECONNECTED_NEW_CODE);
    this.announceRecording(before, after);
    switch (msg.type) {
      case 'joined':
        // Fresh relay credentials come with every `joined`; a resume's new
        // peer connection uses them.
        this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
        writeSeat(this.meetingId, { token: msg.resume_token, window: msg.resume_window, name: this.name, group: msg.e2ee?.group_id, savedAt: Date.now() });
        if (this.streams) {
          // Resumed after a drop: the old peer connection went with the old socket.
          this.streams.connect();
        } else {
          this.streams = new Streams({
            ...this.lend(),
            setMedia: (kind, on) => this.setMedia(kind, on),
            encrypts: () => !!this.e2ee.worker,
            transform: (direction, kind, mid) => this.e2ee.transform(direction, kind, mid),
            setTrackSenders: (tracks) => this.e2ee.setTrackSenders(tracks),
            iceServers: () => this.iceServers,
          });
          const arriving = !this.joinedOnce;
          this.joinedOnce = true;
          // A view-only attendee arrives with camera and microphone off.
          this.streams.start(arriving && mayPublish(this.state) ? this.media : {}).then((on) => {
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
      case 'participant_left':
        this.notify(notices.participantLeft(before.names[msg.participant], msg.reason));
        break;
      case 'meeting_updated':
        this.announceMeetingChange(before.meeting, msg.meeting);
        break;
      case 'security_notice':
        if (isModerator(after)) this.notify(notices.passcodeGuessing(msg));
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
    // A refusal of the join itself ends it (the state says when it is one).
    const after = this.dispatch({ type: 'local:join_refused', error: notices.joinRefused(err), final: this.sig.done });
    if (after.phase !== s.phase) return;
    if (err.code === 'media_refused') {
      this.streams?.onRefused('media_refused');
      this.notify(notices.MEDIA_REFUSED);
      return;
    }
    if (err.code === 'not_permitted') {
      this.streams?.onRefused('not_permitted');
      if (this.intent?.kind === 'screen') this.streams?.dropPendingScreen();
      this.notify(notices.refusal(this.intent, s.meeting));
      return;
    }
    if (err.code === 'full' && isModerator(s)) {
      this.notify(notices.MEETING_FULL);
      return;
    }
    this.notify(notices.serverError(err));
  }

  onStatus(st) {
    const s = this.state;
    if (st.status === 'reconnecting') {
      this.dispatch({ type: 'local:reconnecting', deadline: st.deadline });
    } else if (st.status === 'open') {
      if (s.connection === 'reconnecting' && s.phase === 'joined') this.notify(notices.RECONNECTED);
      this.dispatch({ type: 'local:connected' });
    } else if (st.status === 'closed') {
      window.removeEventListener('pagehide', this.onPageHide);
      if (st.reason === 'resume_failed') {
        writeSeat(this.meetingId, null);
        this.dispatch({ type: 'local:resume_failed', fromReload: this.resumedFromReload, error: notices.SEAT_EXPIRED });
      } else if (st.reason === 'unreachable') {
        this.dispatch({ type: 'local:unreachable', error: notices.UNREACHABLE });
      } else if (st.reason === 'left') {
        writeSeat(this.meetingId, null);
      } else {
        this.dispatch({ type: 'local:closed' });
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
    const notice = this.notify(notices.waitingArrived(arrived));
    if (notice) this.waitingNotices.set(arrived.map((w) => w.id), notice);
  }

  /** Says when a recording starts or stops, and on arrival in a recorded meeting. */
  announceRecording(before, after) {
    if (after.phase !== 'joined' && after.phase !== 'waiting') return;
    const was = isRecorded(before);
    const now = isRecorded(after);
    if (was === now) return;
    // Told in the waiting room already? Then the seat changes nothing.
    const arriving = before.phase !== after.phase;
    this.notify(notices.recordingChanged(now, arriving));
  }

  announceSelfChange(before, p) {
    if (p.id !== before.you) return;
    const old = self(before);
    if (!old) return;
    const turn = publishNotice(before, old, p);
    if (turn) this.notify(turn);
    for (const kind of ['audio', 'video', 'screen']) {
      if (old[kind] && !p[kind]) {
        if (this.expectOff.has(kind)) this.expectOff.delete(kind);
        else this.lostNotices.push(notices.mediaLost(kind));
      }
    }
    if (this.lostNotices.length && !this.lostTimer) {
      // A suspension turns everything off first and is announced just after:
      // wait a moment, and let its one notice speak for all of it.
      this.lostTimer = setTimeout(() => {
        this.lostTimer = null;
        const lost = this.lostNotices;
        this.lostNotices = [];
        if (this.state.meeting?.suspended || this.state.phase !== 'joined') return;
        for (const notice of lost) this.notify(notice);
      }, 250);
    }
    if (old.role !== p.role) this.notify(notices.roleChanged(p.role));
  }

  announceMeetingChange(before, after) {
    if (!before) return;
    for (const notice of notices.meetingChanged(before, after, isModerator(this.state))) this.notify(notice);
  }

  // --- to the server -------------------------------------------------------

  send(msg, intent = null) {
    this.intent = intent;
    if (!this.sig.send(msg)) {
      this.notify(notices.NOT_CONNECTED);
      return false;
    }
    return true;
  }

  /** Turns one of this member's media kinds on or off; a screen is captured before it is offered. */
  async setMedia(kind, on) {
    const s = this.state;
    if (on && !isModerator(s)) {
      if (!mayPublish(s)) {
        this.notify({ text: VIEW_ONLY_REASON, kind: 'error' });
        return;
      }
      if (s.meeting?.suspended) {
        this.notify(notices.suspendedCannot(kind));
        return;
      }
      if (kind === 'screen' && s.meeting?.permissions.screen_share !== 'everyone') {
        this.notify(notices.SCREEN_HOSTS_ONLY);
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
      this.notify(notices.CHAT_TOO_LONG);
      return false;
    }
    if (this.state.connection !== 'open') {
      this.notify(notices.NOT_CONNECTED);
      return false;
    }
    this.intent = { kind: 'chat' };
    this.e2ee.sendChat(text).then((r) => {
      if (r === 'too_long') this.notify(notices.CHAT_TOO_LONG_ENCRYPTED);
      else if (r === 'failed') this.notify(notices.CHAT_FAILED);
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
  allowPublish(id, allowed) { this.send({ type: 'allow_publish', participant: id, allowed }); }
  setRole(id, role) { this.send({ type: 'set_role', participant: id, role }); }
  lock() { this.send({ type: 'lock' }); }
  unlock() { this.send({ type: 'unlock' }); }
  suspend() { this.send({ type: 'suspend_activities' }); }
  resumeActivities() { this.send({ type: 'resume_activities' }); }
  setPermissions(patch) { this.send({ type: 'set_permissions', permissions: patch }); }

  endForAll() {
    this.dispatch({ type: 'local:end_for_all' });
    this.send({ type: 'end_meeting' });
  }

  leave() {
    writeSeat(this.meetingId, null);
    this.streams?.close();
    this.features.close();
    this.e2ee.close();
    this.sig.leave();
    this.dispatch({ type: 'local:left' });
  }
}
