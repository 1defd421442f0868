// The state of one meeting session, in one place. It changes only through
// `reduce(state, event)`; views subscribe and render from it. An event is
// either a server message, as the server sent it (`joined`, `removed`, ...),
// or something that happened on this side, its type starting with `local:`
// (the socket dropped, the person left, a chat message was opened).
//
// The phase, all of its changes (everything else about a phase is in here too):
//
//   connecting --waiting--> waiting --joined--> joined
//   connecting --joined--> joined                      (a join, or a resume)
//   connecting, or waiting with the socket done --local:join_refused--> failed
//   connecting --local:resume_failed, after a reload--> failed
//   any other --local:resume_failed--> over
//   connecting --local:unreachable--> failed;  waiting --local:unreachable--> over
//   any --denied | removed | ended | local:left--> over
//
// `connection` follows the socket: local:reconnecting, local:connected,
// local:closed, and every change to 'over' or 'failed' but a refused join's.

/** Most chat messages kept in memory; older ones scroll away. */
const MAX_CHAT = 500;

export function initialState() {
  return {
    /** 'connecting' | 'waiting' | 'joined' | 'failed' (join refused) | 'over' */
    phase: 'connecting',
    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    connection: 'connecting',
    /** While reconnecting: when (ms since epoch) the server gives the seat away. */
    reconnectDeadline: null,
    you: null,
    role: null,
    /** MeetingState: {title, locked, suspended, permissions}. */
    meeting: null,
    /** Admitted members, in id order. */
    participants: [],
    /** The waiting room (moderators only). */
    waiting: [],
    /** While waiting: the server says a recorder is in the meeting (the one thing it says). */
    waitingRecorded: false,
    waitingForHost: false,
    /** Chat lines: {seq, from, name, text, at, mine}. */
    chat: [],
    chatSeq: 0,
    /** Last known name of every member seen, so chat from someone who left keeps a name. */
    names: {},
    activeSpeaker: null,
    /** For 'failed': {code, text, retryAfter}. */
    joinError: null,
    /** For 'over': {kind, reason?, byMe?}. */
    outcome: null,
    /** This member asked to end the meeting for everyone: an `ended` is theirs. */
    endedByMe: false,
  };
}

/** A tiny observable store: get(), update(fn), subscribe(fn) -> unsubscribe. */
export function createStore(initial) {
  let state = initial;
  const subscribers = new Set();
  return {
    get: () => state,
    update(fn) {
      const next = fn(state);
      if (next === state) return;
      const prev = state;
      state = next;
      for (const s of [...subscribers]) s(state, prev);
    },
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
  };
}

function byId(a, b) {
  return a.id - b.id;
}

function upsert(list, p) {
  const rest = list.filter((x) => x.id !== p.id);
  rest.push(p);
  return rest.sort(byId);
}

function rememberNames(names, people) {
  const next = { ...names };
  for (const p of people) next[p.id] = p.name;
  return next;
}

/** Applies one event: a server message or a `local:` one. Unknown and error messages leave the state as is. */
export function reduce(state, msg) {
  switch (msg.type) {
    case 'waiting':
      return { ...state, phase: 'waiting', connection: 'open', you: msg.you, joinError: null, waitingRecorded: msg.recording === true };
    case 'waiting_for_host':
      // Join before host is off and no host is in yet (docs/protocol.md).
      return { ...state, waitingForHost: true };
    case 'joined':
      return {
        ...state,
        phase: 'joined',
        connection: 'open',
        reconnectDeadline: null,
        joinError: null,
        you: msg.you,
        role: msg.role,
        meeting: msg.meeting,
        participants: [...msg.participants].sort(byId),
        waiting: msg.waiting || [],
        names: rememberNames(state.names, msg.participants),
      };
    case 'participant_joined':
    case 'participant_updated': {
      const p = msg.participant;
      return {
        ...state,
        participants: upsert(state.participants, p),
        names: rememberNames(state.names, [p]),
        role: p.id === state.you ? p.role : state.role,
      };
    }
    case 'participant_left':
      return {
        ...state,
        participants: state.participants.filter((p) => p.id !== msg.participant),
        activeSpeaker: state.activeSpeaker === msg.participant ? null : state.activeSpeaker,
      };
    case 'waiting_room':
      return { ...state, waiting: msg.waiting };
    case 'meeting_updated':
      return { ...state, meeting: msg.meeting };
    case 'local:chat': {
      // A chat message opened by the MLS group ({from, text}): the server's `chat` is ciphertext.
      const seq = state.chatSeq + 1;
      const line = {
        seq,
        from: msg.from,
        name: state.names[msg.from] || 'Someone',
        text: msg.text,
        at: Date.now(),
        mine: msg.from === state.you,
      };
      const chat = [...state.chat, line].slice(-MAX_CHAT);
      return { ...state, chat, chatSeq: seq };
    }
    case 'active_speaker':
      return { ...state, activeSpeaker: msg.participant };
    case 'denied':
      return { ...state, phase: 'over', connection: 'closed', outcome: { kind: 'denied' } };
    case 'removed':
      return { ...state, phase: 'over', connection: 'closed', outcome: { kind: 'removed' } };
    case 'ended': {
      const outcome = { kind: 'ended', reason: msg.reason };
      // "You ended the meeting" rather than "the host ended it".
      if (state.endedByMe) outcome.byMe = true;
      return { ...state, phase: 'over', connection: 'closed', outcome };
    }
    // --- on this side ---
    case 'local:end_for_all':
      return { ...state, endedByMe: true };
    case 'local:join_refused':
      // {error: {code, text, retryAfter}, final}: the server refused the join, or
      // (`final`, the socket done) the waiting room's re-join after a drop.
      // Anything later is a refusal of one request, not of the seat.
      if (state.phase !== 'connecting' && !(state.phase === 'waiting' && msg.final)) return state;
      return { ...state, phase: 'failed', joinError: msg.error };
    case 'local:resume_failed':
      // {fromReload, error}: the seat could not be taken back in time. A tab
      // that reloaded and never got back in shows the join form again.
      if (msg.fromReload && state.phase === 'connecting') {
        return { ...state, phase: 'failed', connection: 'closed', joinError: msg.error };
      }
      return { ...state, phase: 'over', connection: 'closed', outcome: { kind: 'resume_failed' } };
    case 'local:unreachable':
      // {error}: the socket never (or, from the waiting room, never again) reached the server.
      if (state.phase === 'waiting') return { ...state, phase: 'over', connection: 'closed', outcome: { kind: 'lost_waiting' } };
      if (state.phase === 'connecting') return { ...state, phase: 'failed', connection: 'closed', joinError: msg.error };
      return state;
    case 'local:left':
      return { ...state, phase: 'over', connection: 'closed', outcome: { kind: state.phase === 'waiting' ? 'left_waiting' : 'left' } };
    case 'local:reconnecting':
      // {deadline}: when (ms since epoch) the server gives the seat away.
      return { ...state, connection: 'reconnecting', reconnectDeadline: msg.deadline };
    case 'local:connected':
      return { ...state, connection: 'open', reconnectDeadline: null };
    case 'local:closed':
      return { ...state, connection: 'closed' };
    default:
      return state;
  }
}

/** The member record of this client, if admitted. */
export function self(state) {
  return state.participants.find((p) => p.id === state.you) || null;
}

/**
 * Whether the meeting is being recorded, as far as this client can know: a
 * recorder among the members, or, in the waiting room, the server's word.
 */
export function isRecorded(state) {
  if (state.phase === 'joined') return state.participants.some((p) => p.recording);
  if (state.phase === 'waiting') return state.waitingRecorded;
  return false;
}

export function isModerator(state) {
  return state.role === 'host' || state.role === 'cohost';
}
