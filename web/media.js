// Capture: the camera, the microphone and the screen, and what to tell the
// user when the browser refuses them. Knows nothing of the meeting.

/** Camera constraints: enough for a tile, light enough for a laptop. */
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

const DEVICE_KEY = 'conclave.devices';

/**
 * The devices chosen on the join page ({audio, video} device ids), if any,
 * `cleanAudio`: whether the browser's own noise suppression and echo
 * cancellation process the microphone (on unless turned off), and `blur`:
 * whether the camera's background is blurred before it is sent (blur.js; off
 * unless turned on).
 */
export function chosenDevices() {
  try {
    const d = JSON.parse(localStorage.getItem(DEVICE_KEY) || '{}');
    return {
      audio: typeof d.audio === 'string' ? d.audio : '',
      video: typeof d.video === 'string' ? d.video : '',
      cleanAudio: d.cleanAudio !== false,
      blur: d.blur === true,
    };
  } catch {
    return { audio: '', video: '', cleanAudio: true, blur: false };
  }
}

/** Remembers a device choice ({audio?, video?, cleanAudio?, blur?}) for the next capture. */
export function chooseDevices(patch) {
  try {
    localStorage.setItem(DEVICE_KEY, JSON.stringify({ ...chosenDevices(), ...patch }));
  } catch {
    // Storage may be unavailable; the default device is used then.
  }
}

/** Lists cameras and microphones ({audio: [{id, label}], video: [...]}). */
export async function listDevices() {
  const out = { audio: [], video: [] };
  if (!navigator.mediaDevices?.enumerateDevices) return out;
  for (const d of await navigator.mediaDevices.enumerateDevices()) {
    const entry = { id: d.deviceId, label: d.label };
    if (d.kind === 'audioinput') out.audio.push(entry);
    else if (d.kind === 'videoinput') out.video.push(entry);
  }
  return out;
}

/**
 * Captures one kind ('audio' | 'video') from the chosen device. Resolves to a
 * MediaStreamTrack; rejects with an Error whose message is for the user.
 */
export async function captureTrack(kind) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot use a camera or microphone here (a secure connection, https, is needed).');
  }
  const chosen = chosenDevices();
  const device = chosen[kind];
  // Off for music or a good headset: the browser's processing then leaves the sound as it is.
  const base = kind === 'video' ? VIDEO : { echoCancellation: chosen.cleanAudio, noiseSuppression: chosen.cleanAudio };
  const constraints = { [kind]: device ? { ...base, deviceId: { ideal: device } } : base };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    return stream.getTracks()[0];
  } catch (err) {
    const e = new Error(captureError(kind, err));
    e.reason = err?.name === 'NotAllowedError' || err?.name === 'SecurityError' ? 'denied' : 'failed';
    throw e;
  }
}

/** Captures a screen, window or tab. Rejects with a user-facing Error, or with null when the user cancelled. */
export async function captureScreen() {
  if (!navigator.mediaDevices?.getDisplayMedia) throw new Error('This browser cannot share the screen.');
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    if ('contentHint' in track) track.contentHint = 'detail';
    return track;
  } catch (err) {
    if (err?.name === 'NotAllowedError' || err?.name === 'AbortError') throw null; // eslint-disable-line no-throw-literal
    throw new Error(`Could not share the screen: ${err?.message || err}`);
  }
}

function captureError(kind, err) {
  const what = kind === 'video' ? 'camera' : 'microphone';
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `The browser was not allowed to use your ${what}. Allow it in the site settings, then turn it on.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found.`;
    case 'NotReadableError':
    case 'AbortError':
      return `Your ${what} is in use by another application or cannot be opened.`;
    default:
      return `Could not use your ${what}: ${err?.message || err}`;
  }
}
