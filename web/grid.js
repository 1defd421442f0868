// The participant grid: one tile per member, sized to fill the stage at 16:9.
// Each tile shows the member's video (their screen share while they share;
// the own camera mirrored as a self view), or their initials when there is
// none, and plays their audio. The size each remote video is shown at goes to
// `onViewSize`, so the server can pick what to send.
//
// Layouts (issue 18): a grid of pages, or the speaker view, where one member
// is shown big above a strip of the others. The member shown big is the one
// a host spotlights for everyone, else the one this member pinned, else (in
// the speaker view) the latest active speaker. Only one page of tiles is on
// the stage; the videos of the others are reported at 0×0, which tells the
// server to stop forwarding them to us until their page is shown.

import { h, hueOf, initials, setAttr, setText, syncList } from './dom.js';
import { icon } from './icons.js';

const ASPECT = 16 / 9;
const GAP = 12;
/** The page sizes of the grid: the largest whose tiles are at least MIN_TILE_W wide is used. */
const PAGE_SIZES = [16, 9, 4];
const MIN_TILE_W = 200;
/** Tiles under the big one in the speaker view: this wide, at most STRIP_MAX of them. */
const STRIP_W = 176;
const STRIP_MAX = 6;
/** Height kept for the pager under the tiles. */
const PAGER_H = 48;

const ROLE_LABEL = { host: 'Host', cohost: 'Co-host' };

/** The widest tile for `count` tiles in w×hgt. */
function tileWidth(count, w, hgt) {
  let best = 0;
  for (let cols = 1; cols <= count; cols += 1) {
    const rows = Math.ceil(count / cols);
    const tileW = Math.min((w - (cols - 1) * GAP) / cols, ((hgt - (rows - 1) * GAP) / rows) * ASPECT);
    if (tileW > best) best = tileW;
  }
  return best;
}

/**
 * handlers: {onViewSize(participant, kind, width, height), onPin(participant),
 * onSpotlight(participant, on)}. `update(state, view)` takes view =
 * {mode: 'grid'|'speaker', pinned: id|null}.
 */
export function createGrid(handlers = {}) {
  const list = h('ul', { class: 'grid', 'aria-label': 'Video tiles' });
  const alone = h('div', { class: 'stage-hint', hidden: true },
    h('p', { class: 'stage-hint-title', text: 'You are the only one here' }),
    h('p', { class: 'stage-hint-text', text: 'People you invite appear here when they join.' }));
  const pageText = h('span', { class: 'pager-text', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'btn btn-dark btn-sm', text: 'Previous page', onClick: () => turn(-1) });
  const next = h('button', { type: 'button', class: 'btn btn-dark btn-sm', text: 'Next page', onClick: () => turn(1) });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of tiles', hidden: true }, prev, pageText, next);
  const el = h('div', { class: 'stage' }, list, alone, pager);
  let page = 0;
  let shown = { featured: null, count: 0, pages: 1 };
  let lastSpeaker = null;
  let lastState = null;
  let lastView = { mode: 'grid', pinned: null };

  const size = () => ({ w: el.clientWidth - 2 * GAP, hgt: el.clientHeight - 2 * GAP });

  /** Tiles per page: in the grid, as many as stay MIN_TILE_W wide; in the strip, as fit across. */
  const pageSize = (featured) => {
    const { w, hgt } = size();
    if (w <= 0 || hgt <= 0) return featured ? 1 : PAGE_SIZES[PAGE_SIZES.length - 1];
    if (featured) return Math.max(1, Math.min(STRIP_MAX, Math.floor((w + GAP) / (STRIP_W + GAP))));
    return PAGE_SIZES.find((n) => tileWidth(n, w, hgt) >= MIN_TILE_W) || PAGE_SIZES[PAGE_SIZES.length - 1];
  };

  const layout = () => {
    const { w } = size();
    // The pager takes the stage's bottom edge (it does not change the page size).
    const hgt = size().hgt - (pager.hidden ? 0 : PAGER_H);
    if (w <= 0 || hgt <= 0 || shown.count === 0) return;
    if (shown.featured !== null) {
      const stripH = shown.count > 1 ? STRIP_W / ASPECT + GAP : 0;
      const main = Math.min(w, (hgt - stripH) * ASPECT);
      list.style.setProperty('--main-w', `${Math.floor(Math.max(main, 160))}px`);
      list.style.setProperty('--tile-w', `${STRIP_W}px`);
    } else {
      list.style.setProperty('--tile-w', `${Math.floor(Math.max(tileWidth(shown.count, w, hgt), 120))}px`);
    }
  };
  const observer = new ResizeObserver(() => {
    // A new stage size may change the page size, not only the tiles'.
    if (lastState) update(lastState, lastView);
    layout();
  });
  observer.observe(el);
  const videoSizes = new ResizeObserver((entries) => {
    for (const e of entries) {
      const v = e.target;
      if (!v._shown || v._shown.mine || !handlers.onViewSize) continue;
      handlers.onViewSize(v._shown.participant, v._shown.kind, e.contentRect.width, e.contentRect.height);
    }
  });
  const create = (p) => {
    const tile = createTile(p, handlers);
    videoSizes.observe(tile._refs.video);
    return tile;
  };

  function turn(by) {
    page = Math.max(0, Math.min(shown.pages - 1, page + by));
    if (lastState) update(lastState, lastView);
  }

  /** Who is shown big, or null for the grid. */
  function featuredOf(state, view, here) {
    const spot = state.features?.spotlight?.participant;
    if (spot != null && here.has(spot)) return spot;
    if (view.pinned != null && here.has(view.pinned)) return view.pinned;
    if (view.mode !== 'speaker' || here.size < 2) return null;
    if (lastSpeaker != null && here.has(lastSpeaker)) return lastSpeaker;
    return state.participants.find((p) => p.id !== state.you)?.id ?? null;
  }

  function update(state, view = lastView) {
    lastState = state;
    lastView = view;
    const tiles = state.participants;
    const here = new Set(tiles.map((p) => p.id));
    if (state.activeSpeaker != null && state.activeSpeaker !== state.you && here.has(state.activeSpeaker)) {
      lastSpeaker = state.activeSpeaker;
    }
    const featured = featuredOf(state, view, here);
    syncList(list, tiles, (p) => p.id, create, (tile, p) => updateTile(tile, p, state, view, featured));
    const rest = tiles.filter((p) => p.id !== featured);
    const per = pageSize(featured !== null);
    const pages = Math.max(1, Math.ceil(rest.length / per));
    page = Math.min(page, pages - 1);
    const onPage = new Set(rest.slice(page * per, (page + 1) * per).map((p) => p.id));
    if (featured !== null) onPage.add(featured);
    for (const tile of list.children) {
      const id = Number(tile.dataset.participant);
      const off = !onPage.has(id);
      if (tile.hidden !== off) tile.hidden = off;
      tile.classList.toggle('is-featured', id === featured);
      // An off-page video is not shown anywhere: the server stops sending it.
      const v = tile._refs.video;
      if (off && v._shown && !v._shown.mine && handlers.onViewSize) handlers.onViewSize(v._shown.participant, v._shown.kind, 0, 0);
    }
    list.classList.toggle('is-speaker', featured !== null);
    el.dataset.layout = featured !== null ? 'speaker' : 'grid';
    const wasPager = pager.hidden;
    pager.hidden = pages < 2;
    el.classList.toggle('has-pager', !pager.hidden);
    setText(pageText, `Page ${page + 1} of ${pages}`);
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    const count = onPage.size;
    if (count !== shown.count || featured !== shown.featured || pages !== shown.pages || wasPager !== pager.hidden) {
      shown = { featured, count, pages };
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

function createTile(p, handlers) {
  const refs = {
    pin: h('button', { type: 'button', class: 'tile-action', text: 'Pin' }),
    spotlight: h('button', { type: 'button', class: 'tile-action', text: 'Spotlight for everyone', hidden: true }),
    avatar: h('div', { class: 'avatar avatar-lg', 'aria-hidden': 'true' }),
    name: h('span', { class: 'tile-name' }),
    you: h('span', { class: 'tile-you', text: '(you)', hidden: true }),
    role: h('span', { class: 'role-badge', hidden: true }),
    mic: h('span', { class: 'tile-mic', role: 'img' }),
    cam: h('span', { class: 'tile-flag', role: 'img', 'aria-label': 'Camera off', title: 'Camera off' }, icon('videoOff')),
    screen: h('span', { class: 'tile-flag tile-flag-screen', role: 'img', 'aria-label': 'Sharing screen', title: 'Sharing screen' }, icon('screen')),
    spot: h('span', { class: 'tile-flag tile-flag-spot', role: 'img', 'aria-label': 'Spotlighted for everyone', title: 'Spotlighted for everyone', hidden: true }, icon('star')),
    status: h('div', { class: 'tile-status', hidden: true },
      h('span', { class: 'spinner spinner-sm', 'aria-hidden': 'true' }), h('span', { text: 'Reconnecting…' })),
    // The server paused this video for us (`video_paused`): our link is too slow.
    paused: h('div', { class: 'tile-status tile-paused', role: 'status', hidden: true },
      h('span', { text: 'Video paused: your connection is too slow' })),
    video: h('video', { class: 'tile-video', hidden: true }),
    audio: h('audio', { hidden: true }),
  };
  refs.video.autoplay = true;
  refs.video.muted = true; // sound comes from the <audio>, never from a self view
  refs.video.playsInline = true;
  refs.audio.autoplay = true;
  const tile = h('li', { class: 'tile', 'data-participant': String(p.id) },
    h('div', { class: 'tile-media' }, refs.avatar, refs.video, refs.audio),
    h('div', { class: 'tile-flags' }, refs.spot, refs.screen, refs.cam),
    refs.status,
    refs.paused,
    h('div', { class: 'tile-actions' }, refs.pin, refs.spotlight),
    h('div', { class: 'tile-footer' }, refs.mic, refs.name, refs.you, refs.role));
  tile._refs = refs;
  refs.pin.addEventListener('click', () => handlers.onPin?.(refs.pin.dataset.on === 'true' ? null : p.id));
  refs.spotlight.addEventListener('click', () => handlers.onSpotlight?.(p.id, refs.spotlight.dataset.on !== 'true'));
  return tile;
}

function updateTile(tile, p, state, view, featured) {
  const r = tile._refs;
  const mine = p.id === state.you;
  const pinned = view.pinned === p.id;
  setText(r.pin, pinned ? 'Unpin' : 'Pin');
  r.pin.dataset.on = String(pinned);
  setAttr(r.pin, 'aria-pressed', String(pinned));
  const spotlit = state.features?.spotlight?.participant === p.id;
  r.spotlight.hidden = !(state.role === 'host' || state.role === 'cohost');
  setText(r.spotlight, spotlit ? 'Remove spotlight' : 'Spotlight for everyone');
  r.spotlight.dataset.on = String(spotlit);
  tile.classList.toggle('is-spotlit', spotlit);
  r.spot.hidden = !spotlit;
  tile.classList.toggle('is-pinned', pinned && featured === p.id);
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
  r.paused.hidden = !(track && !mine && media.paused?.[`${p.id}:${kind}`]);
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
