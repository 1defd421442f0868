// Reactions: a "Reactions" button in the toolbar opens a row of emoji
// buttons; a reaction floats over its sender's tile for a few seconds on
// every member's page. Rate limits and the allowed set are appmsg.js's.

import { h, setAttr, syncList, uid } from './dom.js';
import { REACTIONS, reactionName } from './appmsg.js';
import { icon } from './icons.js';

export function createReactionsControl(call) {
  const popId = uid('react');
  const toggleBtn = h('button', { type: 'button', class: 'ctl ctl-react', 'aria-expanded': 'false', 'aria-controls': popId },
    h('span', { class: 'ctl-icon' }, icon('smile')), h('span', { class: 'ctl-label', text: 'Reactions' }));
  const pop = h('div', { class: 'reaction-pop', id: popId, role: 'group', 'aria-label': 'Reactions', hidden: true },
    REACTIONS.map((r) => h('button', {
      type: 'button',
      class: 'reaction-btn',
      'aria-label': `React with ${r.name}`,
      title: `React with ${r.name}`,
      text: r.emoji,
      onClick: () => call.features.react(r.emoji),
    })));
  const setOpen = (open) => {
    pop.hidden = !open;
    setAttr(toggleBtn, 'aria-expanded', String(open));
  };
  toggleBtn.addEventListener('click', () => setOpen(pop.hidden));
  pop.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      setOpen(false);
      toggleBtn.focus();
    }
  });
  const el = h('div', { class: 'reaction-wrap' }, pop, toggleBtn);
  // A press anywhere else puts the row away; it stays open for several reactions in a row.
  const outside = (ev) => {
    if (!pop.hidden && !el.contains(ev.target)) setOpen(false);
  };
  document.addEventListener('pointerdown', outside);
  return { el, destroy: () => document.removeEventListener('pointerdown', outside) };
}

/** Floats each showing reaction over its sender's tile. */
export function decorateTiles(gridEl, state) {
  const bySender = new Map();
  for (const r of state.features.reactions) {
    if (!bySender.has(r.from)) bySender.set(r.from, []);
    bySender.get(r.from).push(r);
  }
  for (const tile of gridEl.querySelectorAll('li.tile[data-participant]')) {
    let layer = tile.querySelector(':scope > .tile-reactions');
    const mine = bySender.get(Number(tile.dataset.participant)) || [];
    if (!layer) {
      if (mine.length === 0) continue;
      layer = h('div', { class: 'tile-reactions', 'aria-live': 'polite' });
      tile.append(layer);
    }
    syncList(layer, mine, (r) => r.key, (r) => {
      const n = reactionName(r.emoji);
      return h('span', { class: 'reaction-float', role: 'img', 'aria-label': `Reacted with ${n}`, title: `Reacted with ${n}`, text: r.emoji });
    }, () => {});
  }
}
