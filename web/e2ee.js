// The meeting's end-to-end encryption on the page: this member's end of the
// MLS group (the wasm module's `Member`), driven by the server's `mls_*`
// messages, and the media worker it feeds with each epoch's SFrame keys.
// Chat goes through here too: MLS application messages, sealed before they
// leave and opened when they arrive.
//
// The server only orders and relays. What the page shows about the group —
// the security code and who is in it — comes from the MLS state alone, and
// any difference from what the server announces is put into the state for
// the views to flag.

import { issuerHost, leafMember, onProvidersChanged, trustedProviders, unpinnedProviders } from './openpubkey.js';

/** The wasm module (crates/conclave-e2ee-wasm), loaded once for the page. */
let wasm = null;
/** The server's MLS messages a resume counts (docs/protocol.md, `resume`). */
const MLS_COUNTED = new Set(['mls_create_group', 'mls_message', 'mls_welcome', 'mls_commit_request', 'mls_update_request']);

function loadWasm() {
  if (!wasm) {
    wasm = import('/e2ee/conclave_e2ee.js').then(async (mod) => {
      await mod.default();
      return mod;
    });
  }
  return wasm;
}

/** A member the server announces but the group lacks (or the reverse) is flagged after this long. */
export const ROSTER_GRACE_MS = 6000;

/** Largest chat payload the server relays, in bytes of UTF-8 (base64 of the MLS ciphertext). */
export const MAX_CHAT_BYTES = 16 * 1024;
/** Largest `app` payload the server relays (hands, reactions, polls), base64 bytes. */
export const MAX_APP_BYTES = 8 * 1024;
/** Largest chat text, in bytes of UTF-8: its MLS ciphertext in base64 must fit MAX_CHAT_BYTES. */
export const MAX_CHAT_TEXT_BYTES = 12 * 1024 - 512;

/** Chat encrypted while a proposal waits is impossible in MLS; at most this many wait for the commit. */
const MAX_QUEUED_CHAT = 20;

export function initialE2ee() {
  return {
    /** 'starting' | 'waiting' (for the group) | 'active' | 'failed' | 'unsupported' */
    status: 'starting',
    epoch: null,
    code: '',
    /** When the code last changed (ms), after the first one. */
    codeChangedAt: null,
    /** Why it last changed: 'rebuilt' (the first code of a group set up again after a move), or 'members'. */
    codeChangedBy: null,
    /** When this member last found the meeting on another server with a new group (ms), or null. */
    rebuiltAt: null,
    /** The MLS group's members, participant ids as the group's credentials say (strings). */
    roster: [],
    /** Ids announced by the server but not in the group, and in the group but not announced. */
    notInGroup: [],
    notAnnounced: [],
    /** id -> {badge: 'verified'|'server'|'refused', provider, issuer, name, email, warnings}: what vouches for each name. */
    names: {},
    /** The server's providers this browser has not pinned: [{name, issuer, clientId}] (openpubkey.js). */
    unpinned: [],
    error: null,
    /** Frame counts from the media worker: {sent, received, unsentNoKey, undecryptable, ...}. */
    frames: null,
  };
}

function toB64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromB64(text) {
  if (typeof text !== 'string') throw new Error('not base64');
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i += 1) out[i] = s.charCodeAt(i);
  return out;
}

/** Whether this browser can run the media transform (encoded frames in a worker). */
export function transformSupported() {
  return typeof window.RTCRtpScriptTransform === 'function';
}

export class E2ee {
  /**
   * session: what the meeting session lends it, and nothing more:
   * send(msg) -> whether it went, getState(), update(fn), subscribe(fn).
   */
  constructor(session) {
    this.session = session;
    this.member = null;
    this.memberId = null; // the participant id the Member was made for
    // MLS messages taken in for the seat, counted as they arrive: a resume
    // tells the server, which sends the ones after them again.
    this.seatId = null;
    this.mlsReceived = 0;
    this.groupId = null; // the group id of the last `joined`: another one means a rebuilt group
    this.rebuilding = false; // a rebuilt group's first epoch is still to come
    this.inGroup = false;
    this.committing = false; // our commit is out, its echo not yet back
    this.commitTimer = null;
    this.mustCommit = false; // a proposal named us
    this.proposalPending = false; // a proposal waits for a commit: chat must wait
    this.chatQueue = []; // {text, type} to encrypt once the commit is in
    // Our messages on their way, {payload, text}, shown when the server echoes that
    // payload. Matched by payload, not by place: a message the server refused (chat
    // turned off meanwhile) would otherwise shift every later echo onto the wrong text.
    this.sentChat = [];
    this.firstSeen = new Map(); // id -> when a roster difference was first seen
    this.rosterTimer = null;
    this.queue = Promise.resolve();
    this.wasm = null;
    this.ready = loadWasm().then((mod) => { this.wasm = mod; }, (err) => {
      // Without the module nothing can be encrypted: no media, no chat, and it says so.
      this.set({ status: 'failed', error: `The encryption module could not be loaded (${err?.message || err}).` });
      throw err;
    });
    this.worker = null;
    if (transformSupported()) {
      this.worker = new Worker('/assets/e2ee-worker.js', { type: 'module' });
      this.worker.addEventListener('message', (ev) => this.onWorker(ev.data));
    }
    this.set(transformSupported() ? {} : { status: 'unsupported', error: 'This browser cannot encrypt media end to end.' });
    const unsubscribeRoster = session.subscribe((s, prev) => {
      if (s.participants !== prev.participants) this.checkRoster();
    });
    // The user trusted another provider: its members' names are checked again.
    const unsubscribePins = onProvidersChanged(() => this.checkNames());
    this.unsubscribe = () => { unsubscribeRoster(); unsubscribePins(); };
  }

  /** A transform for one sender or receiver ('send' | 'recv', 'audio' | 'video', its mid), or null without support. */
  transform(direction, kind, mid = null) {
    if (!this.worker) return null;
    return new RTCRtpScriptTransform(this.worker, { direction, kind, mid });
  }

  /** The server's track list: a receiver opens frames only as the participant on its mid. */
  setTrackSenders(tracks) {
    const list = (tracks || []).map((t) => ({ mid: String(t.mid), participant: String(t.participant) }));
    this.worker?.postMessage({ type: 'senders', tracks: list });
  }

  close() {
    this.unsubscribe();
    clearTimeout(this.commitTimer);
    clearTimeout(this.rosterTimer);
    this.worker?.terminate();
    this.worker = null;
    this.member?.free?.();
    this.member = null;
  }

  // --- from the server ---------------------------------------------------------

  /**
   * `waiting` or `joined` named this client: a Member for that id, and its key package to the server.
   * `waitingAgain`: a `waiting` on a new socket (the key package goes again if the id is the same).
   */
  onSeat(you, waitingAgain = false) {
    if (you === null || you === undefined) return;
    const id = String(you);
    if (this.seatId !== id) {
      this.seatId = id;
      this.mlsReceived = 0;
    }
    if (this.memberId === id && this.member) {
      // The same waiting place given back by the server that took the
      // meeting over (its node died): that server has not seen our key
      // package, and admitting us needs it. The same one: it was never used.
      if (waitingAgain) this.run(async () => { if (!this.inGroup && this.keyPackage) this.session.send({ type: 'mls_key_package', key_package: this.keyPackage }); });
      return;
    }
    this.run(async () => {
      if (this.memberId === id && this.member) return;
      this.member?.free?.();
      this.member = leafMember(this.wasm, id);
      this.memberId = id;
      this.inGroup = false;
      this.committing = false;
      this.set({ status: 'waiting', roster: [], epoch: null });
      this.keyPackage = toB64(this.member.keyPackage());
      this.session.send({ type: 'mls_key_package', key_package: this.keyPackage });
    });
  }

  /**
   * The group setup a `joined` carries. The same seat answered with another
   * group id was taken back on a node that rebuilt the meeting (its node
   * died): this client's group is gone there, so it starts again with a new
   * member and key package, as at its first join, and the security code
   * changes. Returns whether that happened.
   */
  onGroupSetup(setup) {
    const id = setup?.group_id ?? null;
    const before = this.groupId;
    this.groupId = id;
    if (!before || !id || before === id) return false;
    // Said in the Security panel for the rest of the meeting, not only in a notice.
    this.set({ rebuiltAt: Date.now() });
    // onSeat, next, makes the new member; nothing of the old group is kept.
    this.memberId = null;
    this.mlsReceived = 0;
    this.run(async () => {
      // After anything of the old group still queued: the next epoch is the new group's first.
      this.rebuilding = true;
      this.proposalPending = false;
      this.mustCommit = false;
      // Chat the old node took and never echoed is sealed again in the new group.
      const unanswered = this.sentChat.map(({ text, type }) => ({ text, type }));
      this.sentChat = [];
      this.chatQueue.unshift(...unanswered);
    });
    return true;
  }

  /**
   * The group id this seat's page was in before it was reloaded (kept with
   * the seat): a `joined` naming another is a rebuilt group like any other,
   * whether the move happened before or during the reload.
   */
  rememberGroup(id) {
    if (!this.groupId && id) this.groupId = id;
  }

  /** What a `resume` says of MLS: how many messages this seat took in (none known after a reload). */
  resumeState() {
    return this.seatId === null ? {} : { mls_received: this.mlsReceived };
  }

  onServer(msg) {
    if (MLS_COUNTED.has(msg.type)) this.mlsReceived += 1;
    this.run(async () => {
      if (!this.member) return;
      switch (msg.type) {
        case 'mls_create_group': {
          const setup = msg.e2ee;
          const info = this.member.createGroup(fromB64(setup.group_id), fromB64(setup.external_sender));
          this.inGroup = true;
          this.session.send({ type: 'mls_group_info', group_info: toB64(info) });
          this.newEpoch();
          break;
        }
        case 'mls_welcome':
          // The tree comes from the server; join refuses one the Welcome does not vouch for.
          this.member.join(fromB64(msg.welcome), fromB64(msg.ratchet_tree));
          this.inGroup = true;
          this.newEpoch();
          break;
        case 'mls_message':
          this.onHandshake(msg);
          break;
        case 'mls_commit_request':
          // The member named in this epoch's proposals did not commit in
          // time: they are ours to commit now.
          if (this.inGroup && this.proposalPending) {
            this.mustCommit = true;
            this.commitNow();
          }
          break;
        case 'mls_update_request':
          // We joined since we last committed, or members who left blanked parents on our
          // path: a fresh path fills the tree, so later commits stay small.
          if (this.inGroup && !this.committing) this.sendCommit(this.member.update());
          break;
        default:
          break;
      }
    });
  }

  /** Tells the member who the server says is here: it commits Adds only for them. */
  announce() {
    if (this.member) this.member.setAnnounced(this.session.getState().participants.map((p) => String(p.id)));
  }

  onHandshake(msg) {
    if (!this.inGroup) return;
    this.announce();
    let r;
    try {
      r = this.member.handle(fromB64(msg.message));
    } catch (err) {
      console.warn('MLS message refused:', err);
      return;
    }
    if (r.kind === 'proposal') {
      this.proposalPending = true;
      if (msg.commit_by !== null && msg.commit_by !== undefined && String(msg.commit_by) === this.memberId) {
        this.mustCommit = true;
        // Proposals sent together are committed together.
        clearTimeout(this.commitTimer);
        this.commitTimer = setTimeout(() => this.run(async () => this.commitNow()), 30);
      }
    } else if (r.kind === 'commit') {
      this.committing = false;
      this.mustCommit = false;
      this.proposalPending = false;
      if (r.removedMe) {
        this.inGroup = false;
        this.set({ status: 'waiting', roster: [], code: '' });
        return;
      }
      this.newEpoch((r.removed || []).length > 0);
    }
  }

  commitNow() {
    if (!this.mustCommit || this.committing || !this.inGroup) return;
    const out = this.member.commit();
    if (out) this.sendCommit(out);
  }

  sendCommit(out) {
    this.committing = true;
    const msg = { type: 'mls_commit', commit: toB64(out.commit) };
    if (out.welcome) msg.welcome = toB64(out.welcome);
    this.session.send(msg);
  }

  /** An error from the server that is about MLS; true when it was. */
  onError(err) {
    if (err.code === 'stale_commit') {
      // Another commit won the epoch; it arrives as an mls_message and replaces ours.
      this.run(async () => { this.committing = false; });
      return true;
    }
    if (err.code === 'stale_chat') {
      // Our oldest unanswered chat was encrypted in an epoch the group left
      // before the server relayed it: nobody could open it. Encrypt it again
      // now (the commit that ended its epoch came first) or after the next.
      this.run(async () => {
        const sent = this.sentChat.shift();
        if (sent === undefined) return;
        const { text, type } = sent;
        if (!this.member || !this.inGroup || this.proposalPending) this.chatQueue.unshift({ text, type });
        else this.sealAndSend(text, type);
      });
      return true;
    }
    if (err.code === 'mls_refused') {
      this.run(async () => {
        this.committing = false;
        this.set({ error: 'The server refused this client\'s encryption message.' });
      });
      return true;
    }
    return false;
  }

  /** A chat payload from the server: resolves to {from, text} to show, or null. */
  openChat(msg) {
    return this.run(async () => {
      if (!this.member || !this.inGroup) return null;
      if (this.memberId === String(msg.from)) {
        // Our own message: MLS does not open our own ciphertext; we kept the text.
        // The server relays in order: ours sent before this one and not echoed were refused.
        const i = this.sentChat.findIndex((e) => e.payload === msg.payload);
        if (i < 0) return null;
        const [sent] = this.sentChat.splice(0, i + 1).slice(-1);
        return { from: msg.from, text: sent.text };
      }
      try {
        // Only an MLS application message opens: a commit sent as chat is refused
        // by the module before it can touch the group.
        const r = this.member.openChat(fromB64(msg.payload));
        if (!r) return null;
        // The sender is the one the group vouches for, and must be who the server said.
        if (String(r.sender) !== String(msg.from)) {
          console.warn('chat message whose MLS sender is not the relayed sender refused');
          return null;
        }
        return { from: msg.from, text: String(r.text) };
      } catch (err) {
        console.warn('chat message could not be opened:', err);
        return null;
      }
    });
  }

  /** Encrypts and sends `text`; resolves to 'sent', 'queued', 'too_long' or 'failed'. */
  /**
   * Seals `text` for the group and sends it as `type`: 'chat', or 'app' for
   * hands, reactions and polls (appmsg.js), which the server relays even
   * while chat is off. Both share one queue and one list of unanswered
   * messages: the server answers them in the order sent.
   */
  sendChat(text, type = 'chat') {
    return this.run(async () => {
      if (!this.member || !this.inGroup || this.proposalPending) {
        if (this.chatQueue.length >= MAX_QUEUED_CHAT) return 'failed';
        this.chatQueue.push({ text, type });
        return 'queued';
      }
      return this.sealAndSend(text, type);
    });
  }

  sealAndSend(text, type = 'chat') {
    let payload;
    try {
      payload = toB64(this.member.encryptChat(text));
    } catch (err) {
      console.warn('chat could not be encrypted:', err);
      this.chatQueue.push({ text, type });
      return 'queued';
    }
    if (payload.length > (type === 'app' ? MAX_APP_BYTES : MAX_CHAT_BYTES)) return 'too_long';
    if (!this.session.send({ type, payload })) return 'failed';
    this.sentChat.push({ payload, text, type });
    return 'sent';
  }

  // --- internals ---------------------------------------------------------------

  /**
   * A new epoch: keys to the worker, the code and roster shown. `atOnce`: our first epoch
   * (nothing could be sent before it, so our video needs a key frame under it), or a commit
   * that removed someone, who must not read what we send from now on: the worker sends with
   * the new key at once and a key frame is asked for (receivers that process the commit a
   * moment later miss frames until then). Any other epoch change (joins, update commits)
   * needs no key frame: the worker keeps the old key for SEND_SWITCH_DELAY_MS (a second), by
   * when every member holds the new one, and receivers keep old keys for five seconds
   * (docs/security.md). So a burst of joins asks no camera for a key frame.
   */
  newEpoch(atOnce = true) {
    const keys = this.member.sframeKeys();
    this.worker?.postMessage({ type: 'keys', keys, atOnce });
    if (atOnce) this.session.send({ type: 'key_frame_request' });
    const code = this.member.securityCode();
    const prev = this.session.getState().e2ee;
    const roster = this.member.roster();
    const changed = prev.code && prev.code !== code;
    const by = this.rebuilding ? 'rebuilt' : 'members';
    this.rebuilding = false;
    this.set({
      status: this.worker ? 'active' : 'unsupported',
      epoch: this.member.epoch(),
      code,
      codeChangedAt: changed ? Date.now() : prev.codeChangedAt,
      codeChangedBy: changed ? by : prev.codeChangedBy,
      roster,
      error: null,
    });
    this.checkRoster();
    const waiting = this.chatQueue;
    this.chatQueue = [];
    for (const { text, type } of waiting) {
      if (this.sealAndSend(text, type) !== 'sent') break;
    }
  }

  /** Compares the group with the server's participant list; flags differences that last. */
  checkRoster() {
    clearTimeout(this.rosterTimer);
    const s = this.session.getState();
    const e = s.e2ee;
    if (!this.inGroup || e.status !== 'active') {
      this.firstSeen.clear();
      if (e.notInGroup.length || e.notAnnounced.length) this.set({ notInGroup: [], notAnnounced: [] });
      return;
    }
    // Exact strings with multiplicity, computed by the module: "01" is not 1, and a
    // participant who holds two leaves shows up as one not announced.
    this.announce();
    this.checkNames();
    const check = this.member.rosterCheck();
    const now = Date.now();
    const diff = [
      ...check.notInGroup.map((id) => ['in', id]),
      ...check.notAnnounced.map((id, i) => ['out', id, i]),
    ];
    const keyOf = ([k, id, i]) => `${k}:${id}:${i ?? 0}`;
    const keys = new Set(diff.map(keyOf));
    for (const k of [...this.firstSeen.keys()]) if (!keys.has(k)) this.firstSeen.delete(k);
    const notInGroup = [];
    const notAnnounced = [];
    let next = Infinity;
    for (const d of diff) {
      const [k, id] = d;
      const key = keyOf(d);
      if (!this.firstSeen.has(key)) this.firstSeen.set(key, now);
      const due = this.firstSeen.get(key) + ROSTER_GRACE_MS;
      if (due <= now) (k === 'in' ? notInGroup : notAnnounced).push(id);
      else next = Math.min(next, due);
    }
    const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
    if (!same(notInGroup, e.notInGroup) || !same(notAnnounced, e.notAnnounced)) this.set({ notInGroup, notAnnounced });
    if (next !== Infinity) this.rosterTimer = setTimeout(() => this.checkRoster(), next - now + 50);
  }

  /**
   * Each member's name against the provider's word in its leaf, checked by
   * the module with keys this page fetched from the provider.
   */
  async checkNames() {
    const providers = await trustedProviders();
    const unpinned = await unpinnedProviders();
    if (JSON.stringify(unpinned) !== JSON.stringify(this.session.getState().e2ee?.unpinned || [])) this.set({ unpinned });
    if (!this.member || !this.inGroup) return;
    const announced = this.session.getState().participants
      .map((p) => ({ id: String(p.id), name: p.name, signedIn: !!p.signed_in }));
    let list;
    try {
      list = JSON.parse(this.member.leafNames(JSON.stringify(announced), JSON.stringify(providers), Math.floor(Date.now() / 1000)));
    } catch (err) {
      console.warn('cannot check names:', err);
      return;
    }
    // A token of a provider the server names but this browser has not
    // pinned: said as such, not as a forgery.
    for (const n of list) {
      const from = n.badge === 'refused' && unpinned.find((u) => (n.reason || '').includes(JSON.stringify(u.issuer)));
      if (from) {
        const host = issuerHost(from.issuer);
        n.notPinned = host;
        n.warnings = [`vouched for by a provider you have not trusted before: ${from.name} (${host}); the name is only the server's`];
      }
    }
    const names = Object.fromEntries(list.map((n) => [n.id, n]));
    const before = JSON.stringify(this.session.getState().e2ee?.names || {});
    if (JSON.stringify(names) !== before) this.set({ names });
  }

  onWorker(m) {
    if (!m) return;
    if (m.type === 'counts') {
      const { type, ...frames } = m;
      this.set({ frames });
    } else if (m.type === 'error') {
      console.warn('media encryption:', m.text);
    }
  }

  set(patch) {
    this.session.update((s) => ({ ...s, e2ee: { ...(s.e2ee || initialE2ee()), ...patch } }));
  }

  /** Runs MLS steps one at a time, after the wasm module is loaded. */
  run(step) {
    const p = this.queue.then(() => this.ready).then(step);
    this.queue = p.catch((err) => {
      console.warn('end-to-end encryption:', err);
      this.set({ error: String(err?.message || err) });
    });
    return p.catch(() => null);
  }
}
