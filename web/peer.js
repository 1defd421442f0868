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

/** The kinds this client sends, each on its own send-only m-line. */
export const SEND_KINDS = ['audio', 'video', 'screen'];

export class Peer {
  /**
   * send(msg): sends a signaling message. onRemote(list): the tracks received
   * now, [{participant, kind, track}], after every change. transform(direction,
   * kind): the E2EE transform for a sender ('send') or receiver ('recv') of
   * 'audio' or 'video'; every frame either way goes through it.
   */
  constructor({ send, onRemote, transform = null }) {
    this.transform = transform;
    this.send = send;
    this.onRemote = onRemote;
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.sending = {}; // kind -> RTCRtpTransceiver
    this.forwarded = []; // the server's last track list: [{mid, participant, kind}]
    this.wantOffer = false;
    this.offeredScreen = false; // the offer out now carries a screen share
    this.crossed = null; // a server offer dropped because it crossed ours
    this.closed = false;
    this.queue = Promise.resolve();
    this.pc.addEventListener('track', (ev) => {
      if (this.transform && !ev.receiver.transform) ev.receiver.transform = this.transform('recv', ev.track.kind);
      this.report();
    });
  }

  /** Opens the send m-lines (audio and video always, a screen if given) and offers them. */
  start(tracks) {
    for (const kind of ['audio', 'video']) this.addSender(kind, tracks[kind] || null);
    if (tracks.screen) this.addSender('screen', tracks.screen);
    this.negotiate();
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
    t.sender.replaceTrack(track).catch(() => {});
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
        await this.pc.setRemoteDescription({ type: 'offer', sdp: crossed.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.send({ type: 'media_answer', sdp: this.pc.localDescription.sdp });
        this.report();
      }
      await this.offerIfWanted();
    });
  }

  close() {
    this.closed = true;
    this.pc.close();
    this.onRemote([]);
  }

  // --- internals -------------------------------------------------------------

  addSender(kind, track) {
    const t = this.pc.addTransceiver(track || (kind === 'audio' ? 'audio' : 'video'), { direction: 'sendonly' });
    // Set before any negotiation, so no frame of this sender goes out unencrypted.
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
