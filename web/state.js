// The state of one meeting session, in one place. The server's messages change
// it only through `reduce`; views subscribe and render from it.

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
    /** Chat lines: {seq, from, name, text, at, mine}. */
    chat: [],
    chatSeq: 0,
    /** Last known name of every member seen, so chat from someone who left keeps a name. */
    names: {},
    activeSpeaker: null,
    /** For 'failed': {code, text, retryAfter}. */
    joinError: null,
    /** For 'over': {kind, reason?}. */
    outcome: null,
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

/** Applies one server message. Unknown and error messages leave the state as is. */
export function reduce(state, msg) {
  switch (msg.type) {
    case 'waiting':
      return { ...state, phase: 'waiting', connection: 'open', you: msg.you, joinError: null };
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
    case 'chat': {
      const seq = state.chatSeq + 1;
      const line = {
        seq,
        from: msg.from,
        name: state.names[msg.from] || 'Someone',
        text: msg.payload,
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
    case 'ended':
      return { ...state, phase: 'over', connection: 'closed', outcome: { kind: 'ended', reason: msg.reason } };
    default:
      return state;
  }
}

/** The member record of this client, if admitted. */
export function self(state) {
  return state.participants.find((p) => p.id === state.you) || null;
}

export function isModerator(state) {
  return state.role === 'host' || state.role === 'cohost';
}
