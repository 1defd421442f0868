// A raised hand comes down when its owner starts speaking (issue 18): once
// they have the floor, the hand has done its job. Only a hand that was up
// while the microphone was off counts: the owner unmuting and talking is
// being given the floor, where an open microphone in a small meeting carries
// room sound and beeps that are nobody's turn to speak (Chromium's fake
// microphone beeps at full scale twice a second, every 250 ms window loud).
// The level is the one the
// browser already measures for the microphone it sends (the WebRTC
// `media-source` stats, the same measurement that goes out in each audio
// packet's RFC 6464 level for the server's active speaker), so no second
// audio pipeline runs. Only while our own hand is up and our microphone on is
// anything read.
//
// A short sound is not speech: Chromium's fake microphone beeps for a few
// tens of milliseconds once a second, and a cough or a door is the same. The
// hand comes down only after SPEECH_WINDOWS of the last WINDOWS windows of
// WINDOW_MS each were loud, about a second and a half of talking.

import { self } from './state.js';
import { toast } from './toast.js';

export const WINDOW_MS = 250;
export const WINDOWS = 6;
export const SPEECH_WINDOWS = 5;
/**
 * Mean power (the square of the RMS level, 0..1) of a window that counts as
 * speech: about -35 dBFS, well under a talker's level into a headset or
 * laptop microphone, well over room noise once the browser's noise
 * suppression ran.
 */
export const SPEECH_POWER = 0.0003;

/** Whether `loud` (one boolean per window, oldest first) holds enough speech. */
export function isSpeaking(loud) {
  const recent = loud.slice(-WINDOWS);
  return recent.length === WINDOWS && recent.filter(Boolean).length >= SPEECH_WINDOWS;
}

/** The microphone's energy so far: {energy, seconds}, or null while there is no such stat. */
async function micEnergy(pc) {
  const stats = await pc.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === 'media-source' && s.kind === 'audio' && typeof s.totalAudioEnergy === 'number') {
      out = { energy: s.totalAudioEnergy, seconds: s.totalSamplesDuration };
    }
  });
  return out;
}

/** Watches `call` while mounted; returns {destroy()}. */
export function lowerHandWhenSpeaking(call) {
  let timer = null;
  let last = null;
  let loud = [];
  let armed = false; // our hand was up while the microphone was off

  const stop = () => {
    clearInterval(timer);
    timer = null;
    last = null;
    loud = [];
  };

  const tick = async () => {
    const pc = call.streams?.peer?.pc;
    if (!pc) return;
    let now;
    try {
      now = await micEnergy(pc);
    } catch {
      return; // a connection closing under getStats
    }
    if (!timer || !now) return;
    if (last && now.seconds > last.seconds) {
      loud.push((now.energy - last.energy) / (now.seconds - last.seconds) >= SPEECH_POWER);
      loud = loud.slice(-WINDOWS);
    }
    last = now;
    const s = call.state;
    if (isSpeaking(loud) && s.features?.hands.includes(s.you)) {
      stop();
      armed = false;
      if (call.features.raiseHand(false)) toast('You are speaking, so your hand was lowered.', 'info');
    }
  };

  const onState = (s) => {
    const up = s.phase === 'joined' && !!s.features?.hands.includes(s.you);
    const mic = !!self(s)?.audio;
    if (!up) armed = false;
    else if (!mic) armed = true;
    const watch = up && mic && armed;
    if (watch && !timer) timer = setInterval(tick, WINDOW_MS);
    else if (!watch && timer) stop();
  };

  const unsubscribe = call.store.subscribe((s) => onState(s));
  onState(call.state);
  return {
    destroy() {
      unsubscribe();
      stop();
    },
  };
}
