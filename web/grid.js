// The participant grid: one tile per member, sized to fill the stage at 16:9.
// Each tile shows the member's video (their screen share while they share;
// the own camera mirrored as a self view), or their initials when there is
// none, and plays their audio. The size each remote video is shown at goes to
// `onViewSize`, so the server can pick what to send.

import { h, hueOf, initials, setText, syncList } from './dom.js';
import { icon } from './icons.js';

const ASPECT = 16 / 9;
const GAP = 12;

const ROLE_LABEL = { host: 'Host', cohost: 'Co-host' };

/** handlers: {onViewSize(participant, kind, width, height)}. */
export function createGrid(handlers = {}) {
  const list = h('ul', { class: 'grid', 'aria-label': 'Video tiles' });
  const alone = h('div', { class: 'stage-hint', hidden: true },
    h('p', { class: 'stage-hint-title', text: 'You are the only one here' }),
    h('p', { class: 'stage-hint-text', text: 'People you invite appear here when they join.' }));
  const el = h('div', { class: 'stage' }, list, alone);
  let count = 0;

  const layout = () => {
    const w = el.clientWidth - 2 * GAP;
    const hgt = el.clientHeight - 2 * GAP;
    if (w <= 0 || hgt <= 0 || count === 0) return;
    let best = 0;
    for (let cols = 1; cols <= count; cols += 1) {
      const rows = Math.ceil(count / cols);
      const tileW = Math.min((w - (cols - 1) * GAP) / cols, ((hgt - (rows - 1) * GAP) / rows) * ASPECT);
      if (tileW > best) best = tileW;
    }
    list.style.setProperty('--tile-w', `${Math.floor(Math.max(best, 120))}px`);
  };
  const observer = new ResizeObserver(layout);
  observer.observe(el);
  const videoSizes = new ResizeObserver((entries) => {
    for (const e of entries) {
      const v = e.target;
      if (!v._shown || v._shown.mine || !handlers.onViewSize) continue;
      handlers.onViewSize(v._shown.participant, v._shown.kind, e.contentRect.width, e.contentRect.height);
    }
  });
  const create = (p) => {
    const tile = createTile(p);
    videoSizes.observe(tile._refs.video);
    return tile;
  };

  function update(state) {
    const tiles = state.participants;
    syncList(list, tiles, (p) => p.id, create, (tile, p) => updateTile(tile, p, state));
    if (tiles.length !== count) {
      count = tiles.length;
      list.dataset.count = String(count);
      layout();
    }
    alone.hidden = !(tiles.length === 1 && tiles[0].id === state.you);
  }

  /** The element where a member's video goes (for the media change). */
  function mediaSlot(participantId) {
    const tile = list.querySelector(`[data-participant="${Number(participantId)}"]`);
    return tile ? tile.querySelector('.tile-media') : null;
  }

  return {
    el,
    update,
    mediaSlot,
    destroy: () => {
      observer.disconnect();
      videoSizes.disconnect();
    },
  };
}

function createTile(p) {
  const refs = {
    avatar: h('div', { class: 'avatar avatar-lg', 'aria-hidden': 'true' }),
    name: h('span', { class: 'tile-name' }),
    you: h('span', { class: 'tile-you', text: '(you)', hidden: true }),
    role: h('span', { class: 'role-badge', hidden: true }),
    mic: h('span', { class: 'tile-mic', role: 'img' }),
    cam: h('span', { class: 'tile-flag', role: 'img', 'aria-label': 'Camera off', title: 'Camera off' }, icon('videoOff')),
    screen: h('span', { class: 'tile-flag tile-flag-screen', role: 'img', 'aria-label': 'Sharing screen', title: 'Sharing screen' }, icon('screen')),
    status: h('div', { class: 'tile-status', hidden: true },
      h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), h('span', { text: 'Reconnecting…' })),
    video: h('video', { class: 'tile-video', hidden: true }),
    audio: h('audio', { hidden: true }),
  };
  refs.video.autoplay = true;
  refs.video.muted = true; // sound comes from the <audio>, never from a self view
  refs.video.playsInline = true;
  refs.audio.autoplay = true;
  const tile = h('li', { class: 'tile', 'data-participant': String(p.id) },
    h('div', { class: 'tile-media' }, refs.avatar, refs.video, refs.audio),
    h('div', { class: 'tile-flags' }, refs.screen, refs.cam),
    refs.status,
    h('div', { class: 'tile-footer' }, refs.mic, refs.name, refs.you, refs.role));
  tile._refs = refs;
  return tile;
}

function updateTile(tile, p, state) {
  const r = tile._refs;
  const mine = p.id === state.you;
  // A recorder says so; everyone sees it (and it is in the MLS group like anyone).
  setText(r.name, p.recording ? `${p.name} (recording)` : p.name);
  r.you.hidden = !mine;
  setText(r.avatar, initials(p.name));
  r.avatar.className = `avatar avatar-lg hue-${hueOf(p.id)}`;
  const role = ROLE_LABEL[p.role];
  r.role.hidden = !role;
  if (role) setText(r.role, role);
  const micState = p.audio ? 'on' : 'off';
  if (r.mic.dataset.state !== micState) {
    r.mic.dataset.state = micState;
    const label = p.audio ? 'Microphone on' : 'Muted';
    r.mic.setAttribute('aria-label', label);
    r.mic.title = label;
    r.mic.replaceChildren(icon(p.audio ? 'mic' : 'micOff'));
  }
  r.cam.hidden = p.video;
  showMedia(r, p, state, mine);
  r.screen.hidden = !p.screen;
  const reconnecting = p.presence === 'reconnecting';
  r.status.hidden = !reconnecting;
  tile.classList.toggle('is-self', mine);
  tile.classList.toggle('is-muted', !p.audio);
  tile.classList.toggle('is-video', p.video);
  tile.classList.toggle('is-reconnecting', reconnecting);
  tile.classList.toggle('is-speaking', state.activeSpeaker === p.id && p.audio);
}

/** Puts the member's video (screen first) and audio into the tile, or the initials. */
function showMedia(r, p, state, mine) {
  const media = state.media || { local: {}, remote: {} };
  const tracks = mine ? media.local : media.remote[p.id] || {};
  let kind = null;
  if (p.screen && tracks.screen) kind = 'screen';
  else if (p.video && tracks.video) kind = 'video';
  const track = kind ? tracks[kind] : null;
  setSource(r.video, track);
  r.video._shown = track ? { participant: p.id, kind, mine } : null;
  r.video.hidden = !track;
  // The initials stay under the video: they show through until its first frame.
  r.video.classList.toggle('is-mirrored', mine && kind === 'video');
  const label = mine ? `${p.name} (you)` : p.name;
  if (r.video.getAttribute('aria-label') !== label) r.video.setAttribute('aria-label', label);
  setSource(r.audio, mine ? null : tracks.audio || null);
}

function setSource(el, track) {
  if ((el._track || null) === track) return;
  el._track = track;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) el.play().catch(() => {});
}
