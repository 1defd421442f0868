// Which path this client's media takes to the server's router, for the
// connection details: straight to it over UDP or TCP, or relayed by a TURN
// server (and how this client reaches the relay: UDP, TCP or TLS). People on
// a network that blocks UDP see why their call works but costs more delay,
// and an operator can tell whether the relay is in use. Read from the peer
// connection's selected candidate pair, so it is what ICE chose, not what
// was configured.

/** The selected path of `pc`: {relayed, protocol, candidateType}, or null while ICE has none. */
export async function mediaTransport(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId) || pair;
  });
  if (!pair) {
    // Browsers without transport stats: the nominated pair that works.
    stats.forEach((s) => {
      if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
  }
  const local = pair && stats.get(pair.localCandidateId);
  if (!local) return null;
  const relayed = local.candidateType === 'relay';
  // A relay candidate's own protocol is the relay's UDP towards the server;
  // relayProtocol is the leg this client controls.
  const protocol = String((relayed ? local.relayProtocol : local.protocol) || 'udp').toLowerCase();
  return { relayed, protocol, candidateType: local.candidateType };
}

/** The words shown for a path from `mediaTransport`. */
export function transportLabel(t) {
  if (!t) return 'Connecting…';
  const how = t.protocol.toUpperCase();
  return t.relayed ? `Relayed by a TURN server (${how})` : `Direct to the server (${how})`;
}

/** `relay-tls`, `direct-udp`, …: the same as a stable word for styles and tests. */
export function transportKey(t) {
  if (!t) return 'none';
  return `${t.relayed ? 'relay' : 'direct'}-${t.protocol}`;
}
