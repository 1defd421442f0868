// The RTCPeerConnection to the server's media router, and its negotiation.
//
// The client offers what it sends (`media_offer` with the kind of each sending
// m-line); the server offers what it forwards (`media_offer` with whose each
// m-line is). Offers can cross. The server's router settles it: a client offer
// supersedes the router's outstanding one, which str0m rolls back; the router
// answers ours first and then offers its tracks again. So a server offer that
// arrives while ours is out is already dead at the server, and this side drops
// it rather than rolling back: answering it would answer an offer the server
// no longer has, and the server's answer to ours would then meet a different
// local offer. Every step runs in one queue, so descriptions are never set
// concurrently.

import { mediaTransport } from './transport.js';

/** The kinds this client sends, each on its own send-only m-line. */
export const SEND_KINDS = ['audio', 'video', 'screen'];

/** The camera's simulcast layers, smallest first (the order the router goes by until it has seen their sizes). */
export const CAMERA_RIDS = ['q', 'h', 'f'];

/**
 * The camera's simulcast encodings for a capture of `width`×`height` (the
 * 1280×720 the camera is asked for when unknown). The router forwards each
 * subscriber one layer, by the size its tile shows the video at and its
 * bandwidth (docs/protocol.md, Simulcast). For 720p: a quarter, half and
 * full size (320×180, 640×360, 1280×720). Chromium sends fewer layers for a
 * small capture and drops the top ones (for 640×480 only 160×120 and
 * 320×240), so a smaller capture gets fewer layers, the largest at full size:
 * three from 960×540, two from 480×270 (half and full), else one. A screen
 * share is not simulcast: its text must stay legible and it is shown large.
 */
export function cameraEncodings(width = 1280, height = 720) {
  const pixels = width * height;
  const layers = pixels >= 960 * 540 ? 3 : pixels >= 480 * 270 ? 2 : 1;
  return CAMERA_RIDS.map((rid, i) => {
    const active = i < layers;
    const scaleResolutionDownBy = active ? 2 ** (layers - 1 - i) : 1;
    const shown = pixels / scaleResolutionDownBy ** 2;
    // Caps for 30 frames a second of camera video; at 720p the three
    // together stay under 2.2 Mbit/s. The browser drops top layers while
    // its uplink estimate is short of them.
    const maxBitrate = shown > 640 * 480 ? 1_500_000 : shown > 320 * 240 ? 500_000 : 150_000;
    // One temporal layer: the router forwards whole layers and drops no
    // frames, and Chromium's default for simulcast VP8 (three temporal
    // layers) lets a receiver skip a frame still being repaired for the
    // next one, which through two lossy hops it did about once a second
    // (docs/benchmarks.md, Bad networks).
    return { rid, active, scaleResolutionDownBy, maxBitrate, scalabilityMode: 'L1T1' };
  });
}

/**
 * Tracks made of another track's frames at its size, each to its source. A
 * track of frames (the blur's MediaStreamTrackGenerator) reports no width or
 * height in getSettings() until its first frame has gone through, and a
 * sender's layers are fitted when the track is attached, before that: they
 * were fitted to the 1280×720 assumed for an unknown size (for a 640×360
 * camera, three layers scaled by 4, 2 and 1 where it has two, by 2 and 1)
 * until the server's next layers_wanted fitted them again.
 */
const sizeSources = new WeakMap();

/** Says that `derived`'s frames are `source`'s size, for the layers fitted to it before its first frame. */
export function sameSizeAs(derived, source) {
  sizeSources.set(derived, source);
}

/** The size a video track captures at, if the browser says (for a derived track, its source's until it says). */
function captureSize(track) {
  for (let t = track; t; t = sizeSources.get(t)) {
    const s = t.getSettings?.() || {};
    if (s.width > 0 && s.height > 0) return [s.width, s.height];
  }
  return [];
}

/**
 * Fits a camera sender's simulcast layers to its track's capture size and to
 * the layers the server last said someone receives (`layers_wanted`, null
 * until it said): a layer is sent only if both allow it. The server names
 * every layer a subscriber needs, so this never pauses one someone watches;
 * a layer it names that the capture is too small for stays off.
 */
async function fitLayers(sender, track, layersWanted = null) {
  const params = sender.getParameters();
  if (!params.encodings || params.encodings.length !== CAMERA_RIDS.length) return;
  const wanted = cameraEncodings(...captureSize(track || sender.track));
  let changed = false;
  params.encodings.forEach((e) => {
    const w = wanted.find((x) => x.rid === e.rid);
    if (!w) return;
    const target = { ...w, active: w.active && (!layersWanted || layersWanted.includes(e.rid)) };
    for (const key of ['active', 'scaleResolutionDownBy', 'maxBitrate']) {
      if (e[key] !== target[key]) {
        e[key] = target[key];
        changed = true;
      }
    }
  });
  if (changed) await sender.setParameters(params);
}

export class Peer {
  /**
   * send(msg): sends a signaling message. onRemote(list): the tracks received
   * now, [{participant, kind, track}], after every change. transform(direction,
   * kind, mid): the E2EE transform for a sender ('send') or receiver ('recv') of
   * 'audio' or 'video'; every frame either way goes through it. onTracks(list):
   * the server's track list ([{mid, participant, kind}]) before it takes effect,
   * so a receiver opens frames only as the participant who sends that mid.
   */
  constructor({ send, onRemote, transform = null, onTracks = null, iceServers = [] }) {
    this.transform = transform;
    this.onTracks = onTracks;
    this.send = send;
    this.onRemote = onRemote;
    // The server's TURN relays (`joined.ice_servers`, credentials for this
    // member only): ICE tries the router's own candidates and the relay
    // together and keeps what works, so a network that lets only TLS to
    // 443 out still gets media.
    this.pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
      iceServers: iceServers.map(({ urls, username, credential }) => ({ urls, username, credential })),
    });
    this.sending = {}; // kind -> RTCRtpTransceiver
    this.forwarded = []; // the server's last track list: [{mid, participant, kind}]
    this.wantOffer = false;
    this.offeredScreen = false; // the offer out now carries a screen share
    this.crossed = null; // a server offer dropped because it crossed ours
    this.wantedLayers = null; // the camera layers someone receives (`layers_wanted`); null: all
    this.closed = false;
    this.queue = Promise.resolve();
    this.pc.addEventListener('track', (ev) => {
      if (this.transform && !ev.receiver.transform) ev.receiver.transform = this.transform('recv', ev.track.kind, ev.transceiver.mid);
      this.report();
    });
  }

  /** Opens the send m-lines (audio and video always, a screen if given) and offers them. */
  start(tracks) {
    for (const kind of ['audio', 'video']) this.addSender(kind, tracks[kind] || null);
    if (tracks.screen) this.addSender('screen', tracks.screen);
    this.negotiate();
  }

  /** The path ICE chose to the router (see transport.js), or null before one. */
  transport() {
    return this.closed ? Promise.resolve(null) : mediaTransport(this.pc);
  }

  /** Sends `track` (or nothing, for null) as `kind`; renegotiates when the m-lines change. */
  setTrack(kind, track) {
    const t = this.sending[kind];
    if (!t) {
      if (!track) return;
      this.addSender(kind, track);
      this.negotiate();
      return;
    }
    t.sender.replaceTrack(track).then(() => {
      if (kind === 'video' && track) return fitLayers(t.sender, track, this.wantedLayers);
      return null;
    }).catch((err) => console.warn('media sender:', err));
    if (kind === 'screen') {
      // A stopped share leaves the m-line inactive and out of the track list,
      // so a later offer is not refused for a share the member no longer makes.
      const direction = track ? 'sendonly' : 'inactive';
      if (t.direction !== direction) {
        t.direction = direction;
        this.negotiate();
      }
    }
  }

  /** The server offered forwarded tracks. */
  acceptOffer(sdp, tracks) {
    this.run(async () => {
      // Crossed with ours: the server has rolled it back and offers again after
      // answering ours. Kept in case ours is refused before the router sees it.
      if (this.pc.signalingState === 'have-local-offer') {
        this.crossed = { sdp, tracks };
        return;
      }
      this.crossed = null;
      this.forwarded = tracks;
      this.onTracks?.(tracks);
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.send({ type: 'media_answer', sdp: this.pc.localDescription.sdp });
      this.report();
      await this.offerIfWanted();
    });
  }

  /** The server answered our offer. */
  acceptAnswer(sdp) {
    this.run(async () => {
      if (this.pc.signalingState !== 'have-local-offer') return;
      this.crossed = null;
      this.offeredScreen = false;
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
      await this.offerIfWanted();
    });
  }

  /**
   * The server refused something. `media_refused`: our offer (or answer) was
   * not used; back to the last agreed state (the router offers again if it
   * had to). `not_permitted`: the meeting refused a screen share in our offer
   * before the router saw it, so a server offer that crossed ours still
   * stands: answer it.
   */
  refused(code) {
    this.run(async () => {
      if (this.pc.signalingState !== 'have-local-offer') return;
      if (code === 'not_permitted' && !this.offeredScreen) return; // about something else
      this.offeredScreen = false;
      await this.pc.setLocalDescription({ type: 'rollback' });
      const crossed = this.crossed;
      this.crossed = null;
      if (code === 'not_permitted' && crossed) {
        this.forwarded = crossed.tracks;
        this.onTracks?.(crossed.tracks);
        await this.pc.setRemoteDescription({ type: 'offer', sdp: crossed.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.send({ type: 'media_answer', sdp: this.pc.localDescription.sdp });
        this.report();
      }
      await this.offerIfWanted();
    });
  }

  /**
   * Dynacast (`layers_wanted`): the server says which of the camera's
   * simulcast layers someone receives; the others stop encoding until named
   * again. Only the camera sends simulcast; a message about another m-line
   * changes nothing.
   */
  layersWanted(mid, rids) {
    const t = this.sending.video;
    if (!t || t.mid !== mid || !Array.isArray(rids)) return;
    this.wantedLayers = rids.filter((r) => CAMERA_RIDS.includes(r));
    const wanted = this.wantedLayers;
    this.run(() => (t.sender.track ? fitLayers(t.sender, null, wanted) : null));
  }

  close() {
    this.closed = true;
    this.pc.close();
    this.onRemote([]);
  }

  // --- internals -------------------------------------------------------------

  addSender(kind, track) {
    const init = { direction: 'sendonly' };
    // Layers can only be declared here: a later track (camera turned on after
    // arrival) is put on this sender and inherits them.
    if (kind === 'video') init.sendEncodings = cameraEncodings(...captureSize(track));
    const t = this.pc.addTransceiver(track || (kind === 'audio' ? 'audio' : 'video'), init);
    // Set before any negotiation, so no frame of this sender goes out unencrypted;
    // a transform sees the frames of every simulcast layer.
    if (this.transform) t.sender.transform = this.transform('send', kind === 'audio' ? 'audio' : 'video');
    if (kind !== 'audio') preferVp8(t);
    this.sending[kind] = t;
  }

  negotiate() {
    this.wantOffer = true;
    this.run(() => this.offerIfWanted());
  }

  async offerIfWanted() {
    if (this.closed || !this.wantOffer || this.pc.signalingState !== 'stable') return;
    this.wantOffer = false;
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const tracks = [];
    for (const kind of SEND_KINDS) {
      const t = this.sending[kind];
      if (t && t.mid !== null && t.direction === 'sendonly') tracks.push({ mid: t.mid, kind });
    }
    this.offeredScreen = tracks.some((t) => t.kind === 'screen');
    this.send({ type: 'media_offer', sdp: this.pc.localDescription.sdp, tracks });
  }

  run(step) {
    this.queue = this.queue.then(() => (this.closed ? null : step())).catch((err) => {
      console.warn('media negotiation:', err);
    });
  }

  /** Whose track, of which kind, the server forwards on `mid`; null if none. */
  forwardedOn(mid) {
    const f = this.forwarded.find((t) => t.mid === mid);
    return f ? { participant: f.participant, kind: f.kind } : null;
  }

  report() {
    if (this.closed) return;
    const byMid = new Map(this.pc.getTransceivers().filter((t) => t.mid !== null).map((t) => [t.mid, t]));
    const list = [];
    for (const f of this.forwarded) {
      const t = byMid.get(f.mid);
      if (!t || t.stopped || !['recvonly', 'sendrecv'].includes(t.currentDirection)) continue;
      list.push({ participant: f.participant, kind: f.kind, track: t.receiver.track });
    }
    this.onRemote(list);
  }
}

/** Puts VP8 (and its retransmissions) first, where the browser lets us; the server forwards only VP8. */
function preferVp8(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs || [];
  const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/vp8');
  const rtx = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/rtx');
  if (!vp8.length) return;
  try {
    transceiver.setCodecPreferences([...vp8, ...rtx]);
  } catch {
    // Older browsers refuse some lists; the server's answer picks VP8 anyway.
  }
}
