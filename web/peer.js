// The RTCPeerConnection to the server's media router, and its negotiation.
//
// The client offers what it sends (`media_offer` with the kind of each sending
// m-line); the server offers what it forwards (`media_offer` with whose each
// m-line is). This side is the polite peer: a server offer that crosses our own
// rolls ours back, is answered, and our change is offered again afterwards.
// Every step runs in one queue, so descriptions are never set concurrently.

/** The kinds this client sends, each on its own send-only m-line. */
export const SEND_KINDS = ['audio', 'video', 'screen'];

export class Peer {
  /**
   * send(msg): sends a signaling message. onRemote(list): the tracks received
   * now, [{participant, kind, track}], after every change.
   */
  constructor({ send, onRemote }) {
    this.send = send;
    this.onRemote = onRemote;
    this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.sending = {}; // kind -> RTCRtpTransceiver
    this.forwarded = []; // the server's last track list: [{mid, participant, kind}]
    this.wantOffer = false;
    this.closed = false;
    this.queue = Promise.resolve();
    this.pc.addEventListener('track', () => this.report());
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
      if (this.pc.signalingState === 'have-local-offer') {
        await this.pc.setLocalDescription({ type: 'rollback' });
        this.wantOffer = true;
      }
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
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
      await this.offerIfWanted();
    });
  }

  /** The server refused our offer (or answer): back to the last agreed state. */
  refused() {
    this.run(async () => {
      if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
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
