// Raised hands: the toolbar's "Raise hand" / "Lower hand", a hand on each
// raised tile, and the "Raised hands" list at the top of the Participants
// panel, in the order raised, where a host can lower anyone's hand. The
// messages themselves are appmsg.js's.

import { h, setAttr, setText, syncList } from './dom.js';
import { icon } from './icons.js';
import { isModerator } from './state.js';
import { publishButton } from './publishing.js';

export function createHandButton(call) {
  const label = h('span', { class: 'ctl-label' });
  const el = h('button', { type: 'button', class: 'ctl ctl-hand' }, h('span', { class: 'ctl-icon' }, icon('hand')), label);
  let raised = false;
  el.addEventListener('click', () => call.features.raiseHand(!raised));
  return {
    el,
    update(state) {
      raised = state.features.hands.includes(state.you);
      setText(label, raised ? 'Lower hand' : 'Raise hand');
      el.classList.toggle('is-active', raised);
      setAttr(el, 'aria-pressed', String(raised));
    },
  };
}

export function createHandsSection(call) {
  const count = h('span', { class: 'section-count' });
  const list = h('ol', { class: 'people hands-list', 'aria-label': 'Raised hands' });
  const el = h('div', { class: 'hands-box', hidden: true },
    h('div', { class: 'section-head' }, h('h3', {}, 'Raised hands ', count)),
    list);

  function update(state) {
    const names = new Map(state.participants.map((p) => [p.id, p.name]));
    const people = new Map(state.participants.map((p) => [p.id, p]));
    const hands = state.features.hands.filter((id) => names.has(id));
    el.hidden = hands.length === 0;
    setText(count, `(${hands.length})`);
    const mod = isModerator(state);
    syncList(list, hands, (id) => id, (id) => {
      const name = h('span', { class: 'person-name' });
      const order = h('span', { class: 'hand-order', 'aria-hidden': 'true' });
      const lower = h('button', { type: 'button', class: 'btn btn-sm btn-secondary', text: 'Lower hand', onClick: () => call.features.lowerHand(id) });
      // A view-only attendee's hand asks to speak: the answer is here too (publishing.js).
      const allow = h('span', { class: 'hand-allow' });
      const row = h('li', { class: 'person hand-row' }, order, icon('hand', 'icon hand-icon'),
        h('span', { class: 'person-text' }, name), h('span', { class: 'person-actions' }, allow, lower));
      row._refs = { name, order, lower, allow };
      return row;
    }, (row, id) => {
      const mine = id === state.you;
      setText(row._refs.name, mine ? `${names.get(id)} (you)` : names.get(id));
      setText(row._refs.order, String(hands.indexOf(id) + 1));
      // Our own hand is lowered from the toolbar; a host lowers anyone's here.
      row._refs.lower.hidden = !mod || mine;
      const p = people.get(id);
      const sig = mod && !mine && p ? `${state.meeting?.permissions?.publish}|${p.role}|${!!p.publish_allowed}` : '';
      if (row._refs.allow.dataset.sig !== sig) {
        row._refs.allow.dataset.sig = sig;
        row._refs.allow.replaceChildren(...[sig && publishButton(call, state, p)].filter(Boolean));
      }
    });
  }

  return { el, update };
}

/** Puts a hand on the tile of each member whose hand is up, with its place in the queue. */
export function decorateTiles(gridEl, state) {
  const hands = state.features.hands;
  for (const tile of gridEl.querySelectorAll('li.tile[data-participant]')) {
    const id = Number(tile.dataset.participant);
    let badge = tile.querySelector(':scope > .tile-hand');
    const place = hands.indexOf(id);
    if (place < 0) {
      if (badge) badge.hidden = true;
      continue;
    }
    if (!badge) {
      badge = h('span', { class: 'tile-hand', role: 'img' }, icon('hand'), h('span', { class: 'tile-hand-place' }));
      tile.append(badge);
    }
    badge.hidden = false;
    setText(badge.lastChild, String(place + 1));
    setAttr(badge, 'aria-label', 'Hand raised');
    setAttr(badge, 'title', `Hand raised (${place + 1} in line)`);
  }
}
