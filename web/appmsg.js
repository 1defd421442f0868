// Raised hands, reactions and polls: small typed messages that members send
// each other inside the MLS group, as application messages, the way chat
// travels (e2ee.js seals them, the server relays an `app` payload it cannot
// read, every member opens it). `app` is its own relay so that turning chat
// off leaves hands, reactions and polls working; only suspension stops them.
// The server never learns that a hand went up or what a poll asks; the
// members do all the checking:
//
// - the sender is the MLS sender, authenticated by the group (e2ee.js refuses
//   a payload whose MLS sender is not the `from` the server relayed);
// - anything malformed, unknown or oversized is dropped, and reactions are
//   rate-limited per sender;
// - the moderation actions (lowering someone else's hand, asking a poll,
//   sharing its results) count only from a member whom the server's roster
//   shows as host or co-host (docs/security.md, "Hands, reactions and polls").
//
// The plaintext is APP_PREFIX followed by JSON: chat text never starts with a
// NUL character (the chat box cannot type one), so the two cannot be confused.
// See docs/protocol.md, "Application messages inside the group".

import { isModerator } from './state.js';
import { toast } from './toast.js';

export const APP_PREFIX = '\u0000conclave-app:';
/** Largest application message accepted, in UTF-16 code units of the whole plaintext. */
export const MAX_APP_CHARS = 4096;
export const POLL_MAX_QUESTION = 300;
export const POLL_MAX_OPTION = 100;
export const POLL_MIN_OPTIONS = 2;
export const POLL_MAX_OPTIONS = 6;
/** A reaction floats over its sender's tile this long. */
export const REACTION_SHOW_MS = 4000;
/** Reactions a receiver shows per sender within RATE_WINDOW_MS; more are dropped. */
export const RECEIVE_REACTIONS = 5;
/** Reactions this client sends within RATE_WINDOW_MS (below the receivers' limit). */
export const SEND_REACTIONS = 4;
export const RATE_WINDOW_MS = 5000;

/** The reactions on offer; anything else received is dropped. */
export const REACTIONS = Object.freeze([
  { emoji: '👍', name: 'thumbs up' },
  { emoji: '👏', name: 'clapping hands' },
  { emoji: '😂', name: 'laughter' },
  { emoji: '❤️', name: 'heart' },
  { emoji: '🎉', name: 'party popper' },
]);
const REACTION_NAMES = new Map(REACTIONS.map((r) => [r.emoji, r.name]));

export function reactionName(emoji) {
  return REACTION_NAMES.get(emoji) || '';
}

const POLL_ID = /^[0-9a-f]{16}$/;

function isId(v) {
  return Number.isSafeInteger(v) && v >= 0;
}

function text(v, max) {
  if (typeof v !== 'string') return null;
  const t = v.trim();
  return t.length > 0 && t.length <= max ? t : null;
}

/**
 * The message `raw` (parsed JSON) as this client understands it, or null: the
 * same checks whoever sent it, a hostile member included.
 */
export function validate(raw) {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return null;
  switch (raw.type) {
    case 'hand':
      return typeof raw.raised === 'boolean' ? { type: 'hand', raised: raw.raised } : null;
    case 'hand_lower':
      return isId(raw.participant) ? { type: 'hand_lower', participant: raw.participant } : null;
    case 'reaction':
      return REACTION_NAMES.has(raw.emoji) ? { type: 'reaction', emoji: raw.emoji } : null;
    case 'poll': {
      if (typeof raw.id !== 'string' || !POLL_ID.test(raw.id)) return null;
      const question = text(raw.question, POLL_MAX_QUESTION);
      if (!question || !Array.isArray(raw.options)) return null;
      if (raw.options.length < POLL_MIN_OPTIONS || raw.options.length > POLL_MAX_OPTIONS) return null;
      const options = raw.options.map((o) => text(o, POLL_MAX_OPTION));
      if (options.some((o) => o === null)) return null;
      return { type: 'poll', id: raw.id, question, options };
    }
    case 'poll_answer':
      if (typeof raw.id !== 'string' || !POLL_ID.test(raw.id)) return null;
      if (!Number.isInteger(raw.choice) || raw.choice < 0 || raw.choice >= POLL_MAX_OPTIONS) return null;
      return { type: 'poll_answer', id: raw.id, choice: raw.choice };
    case 'poll_results':
      if (typeof raw.id !== 'string' || !POLL_ID.test(raw.id) || !Array.isArray(raw.counts)) return null;
      if (raw.counts.length < POLL_MIN_OPTIONS || raw.counts.length > POLL_MAX_OPTIONS) return null;
      if (!raw.counts.every((c) => Number.isInteger(c) && c >= 0 && c <= 100_000)) return null;
      return { type: 'poll_results', id: raw.id, counts: [...raw.counts] };
    case 'spotlight':
      return raw.participant === null || isId(raw.participant) ? { type: 'spotlight', participant: raw.participant } : null;
    default:
      return null;
  }
}

/** The plaintext for `msg`. */
export function encode(msg) {
  return APP_PREFIX + JSON.stringify(msg);
}

/**
 * What an opened group message is: undefined for chat (no prefix), null for an
 * application message this client drops, the validated message otherwise.
 */
export function decode(plaintext) {
  if (typeof plaintext !== 'string' || !plaintext.startsWith(APP_PREFIX)) return undefined;
  if (plaintext.length > MAX_APP_CHARS) return null;
  try {
    return validate(JSON.parse(plaintext.slice(APP_PREFIX.length)));
  } catch {
    return null;
  }
}

export function initialFeatures() {
  return {
    /** Participant ids with a raised hand, in the order the group saw them raised. */
    hands: [],
    /** Reactions showing: {key, from, emoji, at}. */
    reactions: [],
    /**
     * The poll shown, or null: {id, from, question, options, answers: {participant: choice},
     * mine: this member's choice or null, results: counts shared by a host, or null}.
     */
    poll: null,
    /** The member a host shows big to everyone, or null: {participant, from}. */
    spotlight: null,
  };
}

function pollId() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** The live session's features, for the page console and the tests (see `send`). */
let current = null;
export function currentFeatures() {
  return current;
}

/**
 * One session's hands, reactions and poll: sends through the call's E2EE,
 * applies what the group delivers (our own messages too, when the server
 * echoes them, so every member applies the same messages in the same order).
 */
export class Features {
  constructor(call) {
    this.call = call;
    this.received = new Map(); // sender id -> times of their recent reactions
    this.sentAt = []; // times of our recent reactions
    this.timers = new Set();
    this.set(() => initialFeatures());
    this.unsubscribe = call.store.subscribe((s, prev) => this.onState(s, prev));
    current = this;
  }

  close() {
    this.unsubscribe();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (current === this) current = null;
  }

  get state() {
    return this.call.state.features || initialFeatures();
  }

  set(fn) {
    this.call.store.update((s) => ({ ...s, features: fn(s.features || initialFeatures()) }));
  }

  // --- what the group delivers ---------------------------------------------

  /** An opened group message; true when it was an application message (shown or dropped). */
  take(from, plaintext) {
    const msg = decode(plaintext);
    if (msg === undefined) return false;
    if (msg === null) {
      console.warn('application message dropped: malformed or too large');
      return true;
    }
    const s = this.call.state;
    const sender = s.participants.find((p) => p.id === Number(from));
    if (!sender) return true; // gone, or never announced: nothing of theirs to show
    const moderator = sender.role === 'host' || sender.role === 'cohost';
    switch (msg.type) {
      case 'hand':
        // Hosts are told, once: a repeat for a newcomer finds the hand already up.
        if (msg.raised && isModerator(s) && sender.id !== s.you && !this.state.hands.includes(sender.id)) {
          toast(`${sender.name} raised their hand.`, 'info');
        }
        this.setHand(sender.id, msg.raised);
        break;
      case 'hand_lower':
        if (!moderator) {
          console.warn(`hand_lower from ${sender.id}, who is not a host, ignored`);
          break;
        }
        if (msg.participant === s.you && this.state.hands.includes(s.you) && sender.id !== s.you) {
          toast('A host lowered your hand.', 'info');
        }
        this.setHand(msg.participant, false);
        break;
      case 'reaction':
        this.onReaction(sender.id, msg.emoji);
        break;
      case 'poll':
        if (!moderator) {
          console.warn(`poll from ${sender.id}, who is not a host, ignored`);
          break;
        }
        this.set((f) => {
          // The same poll again (sent for a newcomer) keeps what we know of it.
          if (f.poll && f.poll.id === msg.id && f.poll.from === sender.id) return f;
          return { ...f, poll: { id: msg.id, from: sender.id, question: msg.question, options: msg.options, answers: {}, mine: null, results: null } };
        });
        break;
      case 'poll_answer':
        this.set((f) => {
          if (!f.poll || f.poll.id !== msg.id || msg.choice >= f.poll.options.length) return f;
          const poll = { ...f.poll, answers: { ...f.poll.answers, [sender.id]: msg.choice } };
          if (sender.id === s.you) poll.mine = msg.choice;
          return { ...f, poll };
        });
        break;
      case 'poll_results':
        if (!moderator) {
          console.warn(`poll_results from ${sender.id}, who is not a host, ignored`);
          break;
        }
        this.set((f) => {
          if (!f.poll || f.poll.id !== msg.id || msg.counts.length !== f.poll.options.length) return f;
          return { ...f, poll: { ...f.poll, results: msg.counts } };
        });
        break;
      case 'spotlight':
        if (!moderator) {
          console.warn(`spotlight from ${sender.id}, who is not a host, ignored`);
          break;
        }
        if (msg.participant !== null && !s.participants.some((p) => p.id === msg.participant)) break;
        this.set((f) => {
          const spot = msg.participant === null ? null : { participant: msg.participant, from: sender.id };
          if (f.spotlight?.participant === spot?.participant && f.spotlight?.from === spot?.from) return f;
          return { ...f, spotlight: spot };
        });
        break;
      default:
        break;
    }
    return true;
  }

  setHand(id, raised) {
    this.set((f) => {
      const has = f.hands.includes(id);
      if (raised === has) return f;
      return { ...f, hands: raised ? [...f.hands, id] : f.hands.filter((x) => x !== id) };
    });
  }

  onReaction(from, emoji) {
    const now = Date.now();
    const recent = (this.received.get(from) || []).filter((t) => now - t < RATE_WINDOW_MS);
    if (recent.length >= RECEIVE_REACTIONS) {
      this.received.set(from, recent);
      return; // a flood: dropped, not queued
    }
    recent.push(now);
    this.received.set(from, recent);
    const key = `${from}:${now}:${Math.random()}`;
    this.set((f) => ({ ...f, reactions: [...f.reactions, { key, from, emoji, at: now }] }));
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.set((f) => ({ ...f, reactions: f.reactions.filter((r) => r.key !== key) }));
    }, REACTION_SHOW_MS);
    this.timers.add(t);
  }

  /** Keeps hands and reactions to members present; re-announces ours to members who just joined the group. */
  onState(s, prev) {
    if (s.participants !== prev.participants) {
      const here = new Set(s.participants.map((p) => p.id));
      const f = this.state;
      if (f.hands.some((id) => !here.has(id)) || f.reactions.some((r) => !here.has(r.from))) {
        this.set((x) => ({ ...x, hands: x.hands.filter((id) => here.has(id)), reactions: x.reactions.filter((r) => here.has(r.from)) }));
      }
      // A spotlight ends when the spotlit member or the host who set it leaves.
      if (f.spotlight && !(here.has(f.spotlight.participant) && here.has(f.spotlight.from))) {
        this.set((x) => ({ ...x, spotlight: null }));
      }
    }
    const epoch = s.e2ee?.epoch ?? null;
    const was = prev.e2ee?.epoch ?? null;
    if (epoch !== was && was !== null && s.e2ee?.status === 'active') {
      // A newcomer cannot read what was sent before they joined the group,
      // nor can a member back after a reload (a new leaf under the same ID,
      // which the roster of IDs does not show): after every commit, what is
      // still true is said again (receivers take repeats as no change).
      const f = this.state;
      if (f.hands.includes(s.you)) this.send({ type: 'hand', raised: true });
      if (f.spotlight && f.spotlight.from === s.you) this.send({ type: 'spotlight', participant: f.spotlight.participant });
      if (f.poll && f.poll.from === s.you) {
        this.send({ type: 'poll', id: f.poll.id, question: f.poll.question, options: f.poll.options });
        if (f.poll.results) this.send({ type: 'poll_results', id: f.poll.id, counts: f.poll.results });
      }
    }
  }

  // --- what this member does ----------------------------------------------

  /**
   * Seals `msg` for the group, unchecked: the UI's checks are for this
   * member's own sake, receivers check everything themselves. False when it
   * cannot go (the server would refuse it: activities are suspended).
   */
  send(msg) {
    const s = this.call.state;
    if (s.phase !== 'joined' || s.connection !== 'open') {
      toast('Not connected right now. Try again in a moment.', 'error');
      return false;
    }
    // These travel as the server's `app`, which it refuses to participants
    // only while activities are suspended (docs/protocol.md).
    if (!isModerator(s) && s.meeting?.suspended) {
      toast('Participant activities are suspended.', 'error');
      return false;
    }
    this.call.e2ee.sendChat(encode(msg), 'app').then((r) => {
      if (r === 'failed' || r === 'too_long') toast('That could not be sent. Try again in a moment.', 'error');
    });
    return true;
  }

  raiseHand(raised) {
    return this.send({ type: 'hand', raised });
  }

  lowerHand(participant) {
    if (!this.hostsOnly('lower someone else\'s hand')) return false;
    return this.send({ type: 'hand_lower', participant });
  }

  /** Whether this member may do a host's action; says so when not (the others would ignore it). */
  hostsOnly(what) {
    if (isModerator(this.call.state)) return true;
    toast(`Only hosts and co-hosts can ${what}.`, 'error');
    return false;
  }

  react(emoji) {
    if (!REACTION_NAMES.has(emoji)) return false;
    const now = Date.now();
    this.sentAt = this.sentAt.filter((t) => now - t < RATE_WINDOW_MS);
    if (this.sentAt.length >= SEND_REACTIONS) {
      toast('Too many reactions: wait a moment.', 'info');
      return false;
    }
    this.sentAt.push(now);
    return this.send({ type: 'reaction', emoji });
  }

  /** Asks a poll (moderators): question and options as typed; false with a notice when they do not fit. */
  askPoll(question, options) {
    if (!this.hostsOnly('ask a poll')) return false;
    const msg = validate({ type: 'poll', id: pollId(), question, options: options.map((o) => o.trim()).filter(Boolean) });
    if (!msg) {
      toast(`A poll needs a question (${POLL_MAX_QUESTION} characters at most) and ${POLL_MIN_OPTIONS} to ${POLL_MAX_OPTIONS} options (${POLL_MAX_OPTION} characters each).`, 'error');
      return false;
    }
    return this.send(msg);
  }

  answerPoll(choice) {
    const poll = this.state.poll;
    if (!poll) return false;
    return this.send({ type: 'poll_answer', id: poll.id, choice });
  }

  shareResults() {
    const poll = this.state.poll;
    if (!poll || !this.hostsOnly('share a poll\'s results')) return false;
    return this.send({ type: 'poll_results', id: poll.id, counts: tally(poll) });
  }

  /** Hides the poll on this page only. */
  dismissPoll() {
    this.set((f) => ({ ...f, poll: null }));
  }
}

/** The count of answers per option. */
export function tally(poll) {
  const counts = poll.options.map(() => 0);
  for (const c of Object.values(poll.answers)) if (c < counts.length) counts[c] += 1;
  return counts;
}
