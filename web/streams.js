// A member's media in one meeting session: the tracks it captures, the peer
// connection that sends them and receives the others', and the view sizes it
// reports. What the roster says this member sends decides what is enabled; the
// tracks and any capture error are put into the call's state as `media`.

import { blurWanted, startBlur } from './blur.js';
import { captureScreen, captureTrack } from './media.js';
import { Peer } from './peer.js';
import { self } from './state.js';

/** How often the media path shown in the connection details is read again, in ms. */
const TRANSPORT_EVERY_MS = 2000;

/** Least time between two view-size reports for one video, in ms. */
const VIEW_SIZE_EVERY_MS = 500;

/** One message for the arrival's capture errors (the camera and microphone are often refused together). */
function captureFailure(errors) {
  if (errors.length === 2 && errors.every((e) => e.reason === 'denied')) {
    return 'The browser was not allowed to use your camera and microphone. Allow them in the site settings, then turn them on.';
  }
  return errors.map((e) => e.message).join(' ');
}

export function initialMedia() {
  return { local: { audio: null, video: null, screen: null }, remote: {}, paused: {}, error: null, transport: null };
}

export class Streams {
  /**
   * session: what the meeting session lends it, and nothing more:
   * send(msg) -> whether it went, getState(), update(fn), subscribe(fn),
   * setMedia(kind, on) (as the person would), and of the encryption:
   * encrypts() (whether frames can be encrypted here), transform(direction,
   * kind, mid), setTrackSenders(tracks).
   */
  constructor(session) {
    this.session = session;
    this.local = { audio: null, video: null, screen: null };
    this.capturing = new Set();
    this.pendingScreen = null; // captured, waiting for the server to allow it
    this.blur = null; // {track, stop}: the camera blurred (blur.js), sent instead of it
    this.peer = null;
    this.sizes = new Map(); // `${participant}:${kind}` -> {w, h, at, timer}
    this.unsubscribe = session.subscribe((s) => this.sync(s));
  }

  /** Captures the kinds wanted on arrival; resolves to those that worked ({audio?, video?}). */
  async start(wanted) {
    const on = {};
    const kinds = ['audio', 'video'].filter((k) => wanted[k]);
    kinds.forEach((k) => this.capturing.add(k));
    const results = await Promise.allSettled(kinds.map((k) => captureTrack(k)));
    const errors = [];
    kinds.forEach((kind, i) => {
      this.capturing.delete(kind);
      const r = results[i];
      if (r.status === 'fulfilled') {
        this.local[kind] = r.value;
        r.value.enabled = false; // until the server says it is on
        if (kind === 'video') this.blurCamera(blurWanted());
        on[kind] = true;
      } else {
        errors.push(r.reason);
      }
    });
    if (errors.length) this.setError(captureFailure(errors));
    this.connect();
    return on;
  }

  /** A new peer connection (after a resume the old one is gone with the old socket). */
  connect() {
    if (this.peer) this.peer.close();
    this.peer = null;
    // A new connection's streams start with no view said: say each again.
    for (const e of this.sizes.values()) e.sent = '';
    if (!this.session.encrypts()) {
      // No media in clear: without the frame transform nothing is sent or received.
      this.setError('This browser cannot encrypt audio and video end to end, so it cannot take part in the call. Chat still works.');
      return;
    }
    this.peer = new Peer({
      send: (msg) => this.session.send(msg),
      onRemote: (list) => this.setRemote(list),
      transform: (direction, kind, mid) => this.session.transform(direction, kind, mid),
      onTracks: (tracks) => this.session.setTrackSenders(tracks),
      iceServers: this.session.iceServers?.() || [],
    });
    this.peer.start(this.sent());
    this.watchTransport();
    this.publish();
    // What the person turned on while there was no peer connection yet (a
    // click during the arrival's capture): sync() skipped it then.
    this.sync(this.session.getState());
  }

  onOffer(msg) { this.peer?.acceptOffer(msg.sdp, msg.tracks || []); }
  onAnswer(msg) { this.peer?.acceptAnswer(msg.sdp); }
  onRefused(code) { this.peer?.refused(code); }
  onLayersWanted(msg) { this.peer?.layersWanted(msg.mid, msg.rids); }

  /**
   * `video_paused`: the server stopped (or resumed) forwarding a video to us
   * because our downlink is too slow for it; `media.paused` holds
   * "participant:kind" keys of the videos paused now, for the tiles to say so.
   */
  onVideoPaused(msg) {
    const f = this.peer?.forwardedOn(String(msg.mid));
    if (!f) return;
    const key = `${f.participant}:${f.kind}`;
    this.session.update((s) => {
      const media = s.media || initialMedia();
      const paused = { ...(media.paused || {}) };
      if (msg.paused) paused[key] = true;
      else delete paused[key];
      return { ...s, media: { ...media, paused } };
    });
  }

  /** Asks for the screen; once captured, asks the server to let it be shared. */
  async shareScreen() {
    let track;
    try {
      track = await captureScreen();
    } catch (err) {
      if (err) this.setError(err.message);
      return false;
    }
    if (this.pendingScreen) this.pendingScreen.stop();
    this.pendingScreen = track;
    track.addEventListener('ended', () => {
      if (this.local.screen === track) this.session.setMedia('screen', false);
      else if (this.pendingScreen === track) this.pendingScreen = null;
    });
    return true;
  }

  /** The server refused the share: forget the captured screen. */
  dropPendingScreen() {
    if (this.pendingScreen) this.pendingScreen.stop();
    this.pendingScreen = null;
  }

  /**
   * The size a remote video is shown at, reported to the server at most every
   * 500 ms; 0×0 when it is shown nowhere (off the page), which stops the
   * server forwarding it.
   */
  viewSize(participant, kind, width, height) {
    const key = `${participant}:${kind}`;
    const w = Math.round(width);
    const h = Math.round(height);
    let entry = this.sizes.get(key);
    if (!entry) {
      entry = { sent: '', timer: null, next: null };
      this.sizes.set(key, entry);
    }
    entry.next = { w, h };
    if (entry.timer) return;
    const flush = () => {
      entry.timer = null;
      const { w: fw, h: fh } = entry.next;
      const sig = `${fw}x${fh}`;
      if (sig === entry.sent || fw < 0 || fh < 0) return;
      if (this.session.send({ type: 'view_size', participant, kind, width: fw, height: fh })) entry.sent = sig;
      entry.timer = setTimeout(() => { entry.timer = null; if (`${entry.next.w}x${entry.next.h}` !== entry.sent) flush(); }, VIEW_SIZE_EVERY_MS);
    };
    flush();
  }

  dismissError() { this.setError(null); }

  /** Turns the background blur on or off; with no camera yet, the choice waits for it. */
  setBlur(on) {
    if (!this.local.video) return;
    this.blurCamera(on);
    this.peer?.setTrack('video', this.sent().video);
    this.publish();
  }

  close() {
    clearInterval(this.transportTimer);
    this.unsubscribe();
    if (this.peer) this.peer.close();
    this.peer = null;
    this.blurCamera(false);
    for (const t of [this.local.audio, this.local.video, this.local.screen, this.pendingScreen]) if (t) t.stop();
    this.local = { audio: null, video: null, screen: null };
    this.pendingScreen = null;
    for (const e of this.sizes.values()) clearTimeout(e.timer);
  }

  // --- internals -------------------------------------------------------------

  /** Follows the roster: enables what this member sends, captures what is missing. */
  sync(state) {
    if (!this.peer || state.phase !== 'joined') {
      if (state.phase === 'over' || state.phase === 'failed') this.close();
      return;
    }
    const me = self(state);
    if (!me) return;
    for (const kind of ['audio', 'video']) {
      const track = this.local[kind];
      if (track) {
        if (track.enabled !== !!me[kind]) track.enabled = !!me[kind];
        const blurred = kind === 'video' ? this.blur?.track : null;
        if (blurred && blurred.enabled !== !!me[kind]) blurred.enabled = !!me[kind];
      } else if (me[kind] && !this.capturing.has(kind)) {
        this.captureLate(kind);
      }
    }
    if (me.screen && this.pendingScreen) {
      this.local.screen = this.pendingScreen;
      this.pendingScreen = null;
      this.peer.setTrack('screen', this.local.screen);
      this.publish();
    } else if (!me.screen && this.local.screen) {
      this.local.screen.stop();
      this.local.screen = null;
      this.peer.setTrack('screen', null);
      this.publish();
    }
  }

  /** Turned on later than arrival (or after a reload): capture now. */
  async captureLate(kind) {
    this.capturing.add(kind);
    try {
      const track = await captureTrack(kind);
      const me = self(this.session.getState());
      if (!this.peer || !me) {
        track.stop();
        return;
      }
      track.enabled = !!me[kind];
      this.local[kind] = track;
      if (kind === 'video') this.blurCamera(blurWanted());
      this.peer.setTrack(kind, this.sent()[kind]);
      this.publish();
    } catch (err) {
      this.setError(err.message);
      this.session.setMedia(kind, false);
    } finally {
      this.capturing.delete(kind);
    }
  }

  /** The tracks sent (and shown as one's own): the camera blurred when the blur is on. */
  sent() {
    return this.blur ? { ...this.local, video: this.blur.track } : { ...this.local };
  }

  /** Starts or stops blurring the camera (this.local.video); the caller sends what sent() then says. */
  blurCamera(on) {
    if (on && !this.blur && this.local.video) {
      try {
        this.blur = startBlur(this.local.video, (text) => this.blurFailed(text));
      } catch (err) {
        this.setError(`The background blur could not start: ${err?.message || err}`);
      }
    } else if (!on && this.blur) {
      this.blur.stop();
      this.blur = null;
    }
  }

  /**
   * The blur failed: the camera is turned off rather than sent unblurred,
   * which the person did not ask for, and they are told.
   */
  blurFailed(text) {
    if (!this.blur) return;
    this.blurCamera(false);
    this.peer?.setTrack('video', this.local.video);
    this.publish();
    this.session.setMedia('video', false);
    this.setError(`${text} Your camera was turned off; turn the blur off to send it as it is.`);
  }

  publish() {
    const local = this.sent();
    this.session.update((s) => ({ ...s, media: { ...(s.media || initialMedia()), local } }));
  }

  setRemote(list) {
    const remote = {};
    for (const { participant, kind, track } of list) {
      remote[participant] = { ...(remote[participant] || {}), [kind]: track };
    }
    this.session.update((s) => {
      const media = s.media || initialMedia();
      // A pause is about a track received now: gone, it is forgotten.
      const paused = Object.fromEntries(Object.entries(media.paused || {})
        .filter(([key]) => list.some((t) => `${t.participant}:${t.kind}` === key)));
      return { ...s, media: { ...media, remote, paused } };
    });
  }

  /** Keeps `media.transport` (transport.js) up to date while a peer connection lives. */
  watchTransport() {
    clearInterval(this.transportTimer);
    const read = async () => {
      const peer = this.peer;
      if (!peer) return;
      let transport = null;
      try {
        transport = await peer.transport();
      } catch {
        // A connection closing under getStats: the next peer's turn.
      }
      if (peer !== this.peer) return;
      const was = this.session.getState().media?.transport || null;
      if (JSON.stringify(was) === JSON.stringify(transport)) return;
      this.session.update((s) => ({ ...s, media: { ...(s.media || initialMedia()), transport } }));
    };
    this.transportTimer = setInterval(read, TRANSPORT_EVERY_MS);
  }

  setError(text) {
    this.session.update((s) => ({ ...s, media: { ...(s.media || initialMedia()), error: text } }));
  }
}
