// The meeting WebSocket: opens it, sends `join` or `resume` first, hands every
// server message on, and when an admitted member's socket drops, takes the
// seat back with `resume` inside the server's resume window.
//
// Status reports (onStatus): {status: 'connecting' | 'open' | 'reconnecting' | 'closed', ...}
//   reconnecting: {deadline} (ms since epoch) when the seat will be given away;
//   closed: {reason} one of 'final' (the server said denied/removed/ended or
//   refused the join), 'left', 'resume_failed', 'unreachable'.

import { meetingSocketUrl } from './api.js';

/** Delays between reconnect attempts, in ms; the last one repeats. */
const BACKOFF_MS = [300, 1000, 2000, 3000, 4000];
/** How long to keep trying to get back into the waiting room after a drop. */
const WAITING_REJOIN_MS = 30_000;
/** A leave the server does not close within this time is closed by us. */
const LEAVE_CLOSE_MS = 1500;


export class Signaling {
  constructor(meetingId, { onMessage, onStatus }) {
    this.meetingId = meetingId;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.ws = null;
    this.first = null; // the message that opens each connection
    this.member = false; // admitted: a drop is resumed
    this.waiting = false; // in the waiting room: a drop is re-joined
    this.token = null;
    this.resumeState = () => ({}); // more for a `resume` (what MLS took in)
    this.windowSecs = 30;
    this.deadline = null;
    this.attempt = 0;
    this.timer = null;
    this.done = false;
    this.onOnline = () => {
      if (this.deadline && !this.done) this.reconnectNow();
    };
    window.addEventListener('online', this.onOnline);
  }

  /** Opens the socket and asks for a seat. */
  join(name, passcode, ticket = null) {
    // A breakout ticket (breakout.js) stands for the passcode and the waiting room.
    this.first = ticket ? { type: 'breakout_join', name, ticket } : { type: 'join', name };
    if (passcode && !ticket) this.first.passcode = passcode;
    this.open('connecting');
  }

  /** Opens the socket and takes back a seat held for `token` (after a page reload). */
  resume(token, windowSecs = 30) {
    this.token = token;
    this.windowSecs = windowSecs;
    this.member = true;
    this.deadline = Date.now() + windowSecs * 1000;
    this.first = null;
    this.open('connecting');
  }

  /** Sends a message if the socket is up; returns whether it was sent. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Leaves the meeting (or the waiting room) for good. */
  leave() {
    const sent = this.send({ type: 'leave' });
    const ws = this.ws;
    this.ws = null;
    this.finish('left');
    if (ws) {
      if (sent) setTimeout(() => ws.close(), LEAVE_CLOSE_MS);
      else ws.close();
    }
  }

  /** Stops everything without telling the server (the seat stays for its window). */
  close() {
    const ws = this.ws;
    this.ws = null;
    this.finish('left', false);
    if (ws) ws.close();
  }

  reconnectNow() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.ws || this.ws.readyState === WebSocket.CLOSED) this.open('reconnecting');
  }

  open(status) {
    if (this.done) return;
    const opening = this.member ? { type: 'resume', token: this.token, ...this.resumeState() } : this.first;
    let ws;
    try {
      ws = new WebSocket(meetingSocketUrl(this.meetingId));
    } catch {
      this.dropped(null);
      return;
    }
    this.ws = ws;
    this.answered = false;
    this.report({ status, deadline: this.deadline });
    ws.addEventListener('open', () => {
      if (ws === this.ws) ws.send(JSON.stringify(opening));
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws || typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(msg, ws);
    });
    ws.addEventListener('close', () => {
      if (ws === this.ws) this.dropped(ws);
    });
  }

  handle(msg, ws) {
    switch (msg.type) {
      case 'joined':
        this.member = true;
        this.waiting = false;
        this.token = msg.resume_token;
        this.windowSecs = msg.resume_window || 30;
        this.deadline = null;
        this.attempt = 0;
        this.answered = true;
        this.report({ status: 'open' });
        break;
      case 'waiting':
        // The answer to this socket's join, not a later status update.
        this.freshWaiting = !this.answered;
        this.waiting = true;
        this.deadline = null;
        this.attempt = 0;
        this.answered = true;
        this.report({ status: 'open' });
        break;
      case 'denied':
      case 'removed':
      case 'ended':
        this.finish('final');
        break;
      case 'error':
        if (!this.answered) {
          // The opening message was refused.
          if (this.member) {
            if (msg.code === 'too_many_attempts' && msg.retry_after) {
              // Blocked for a while: try again then, if the seat is still kept.
              this.retryAt(msg.retry_after * 1000);
              ws.close();
              return;
            }
            if (msg.code === 'unavailable' || msg.code === 'shutting_down') {
              // The meeting's server died, or is draining, and another has
              // not taken it over yet (or the cluster's Redis is away): the
              // seat is kept there.
              this.retryAt(this.nextDelay());
              ws.close();
              return;
            }
            this.finish('resume_failed');
            ws.close();
            this.onMessage(msg);
            return;
          }
          if (this.waiting && (msg.code === 'unavailable' || msg.code === 'shutting_down')) {
            // Back to the waiting room of a meeting whose server died: the
            // place is kept until another server has taken the meeting over.
            this.retryAt(this.nextDelay());
            ws.close();
            return;
          }
          // A refused join (or re-join of the waiting room) ends this attempt.
          this.finish('final');
          ws.close();
        }
        break;
      default:
        break;
    }
    this.onMessage(msg);
  }

  dropped(ws) {
    if (this.done) return;
    if (ws && ws !== this.ws) return;
    this.ws = null;
    if (this.member) {
      if (!this.deadline) this.deadline = Date.now() + this.windowSecs * 1000;
      this.retryAt(this.nextDelay());
    } else if (this.waiting) {
      // A waiting place cannot be resumed: ask again with the same name and passcode.
      if (!this.deadline) this.deadline = Date.now() + WAITING_REJOIN_MS;
      this.retryAt(this.nextDelay());
    } else {
      this.finish('unreachable');
    }
  }

  nextDelay() {
    const d = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    return d;
  }

  retryAt(delayMs) {
    if (Date.now() + delayMs >= this.deadline) {
      this.finish(this.member ? 'resume_failed' : 'unreachable');
      return;
    }
    this.report({ status: 'reconnecting', deadline: this.deadline });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open('reconnecting');
    }, delayMs);
  }

  finish(reason, report = true) {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    window.removeEventListener('online', this.onOnline);
    if (report) this.report({ status: 'closed', reason });
  }

  report(status) {
    this.onStatus(status);
  }
}
