// The layout this member chose, and the controls for it: the toolbar's
// "Layout" menu (Grid / Speaker), a pin kept on this page only, and a
// host's "Spotlight for everyone", which goes to the group as an MLS
// application message (appmsg.js, type `spotlight`) like hands and polls.
// grid.js draws what this decides.

import { h, setAttr, uid } from './dom.js';
import { toast } from './toast.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A 24×24 line icon of a grid of four, in the style of icons.js. */
function layoutIcon() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', class: 'icon', 'aria-hidden': 'true' })) svg.setAttribute(k, v);
  for (const [x, y] of [[3, 3], [13, 3], [3, 13], [13, 13]]) {
    const r = document.createElementNS(SVG_NS, 'rect');
    for (const [k, v] of Object.entries({ x, y, width: 8, height: 8, rx: 1.5 })) r.setAttribute(k, String(v));
    svg.append(r);
  }
  return svg;
}

const MODES = [
  { mode: 'grid', label: 'Grid' },
  { mode: 'speaker', label: 'Speaker' },
];

/**
 * onChange(): the view changed (re-render). Returns {el, view, pin(id|null),
 * spotlight(id, on), update(state), destroy()}; `view` is {mode, pinned}.
 */
export function createLayoutControl(call, onChange) {
  const view = { mode: 'grid', pinned: null };
  let spotlit = null; // the spotlight last told about
  const menuId = uid('layout');
  const button = h('button', { type: 'button', class: 'ctl ctl-layout', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': menuId },
    h('span', { class: 'ctl-icon' }, layoutIcon()), h('span', { class: 'ctl-label', text: 'Layout' }));
  const items = MODES.map(({ mode, label }) => h('button', {
    type: 'button',
    class: 'layout-item',
    role: 'menuitemradio',
    'aria-checked': String(view.mode === mode),
    text: label,
    onClick: () => {
      setMode(mode);
      setOpen(false);
      button.focus();
    },
  }));
  const menu = h('div', { class: 'layout-menu', id: menuId, role: 'menu', 'aria-label': 'Layout', hidden: true }, items);
  const el = h('div', { class: 'layout-wrap' }, menu, button);

  const setOpen = (open) => {
    menu.hidden = !open;
    setAttr(button, 'aria-expanded', String(open));
    if (open) items.find((i) => i.getAttribute('aria-checked') === 'true')?.focus();
  };
  button.addEventListener('click', () => setOpen(menu.hidden));
  menu.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      setOpen(false);
      button.focus();
    } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      const at = items.indexOf(document.activeElement);
      items[(at + (ev.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length].focus();
    }
  });
  const outside = (ev) => {
    if (!menu.hidden && !el.contains(ev.target)) setOpen(false);
  };
  document.addEventListener('pointerdown', outside);

  function setMode(mode) {
    view.mode = mode;
    items.forEach((item, i) => setAttr(item, 'aria-checked', String(MODES[i].mode === mode)));
    onChange();
  }

  return {
    el,
    view,
    /** Pins `id` for this member alone (null: unpin); nobody else is told. */
    pin(id) {
      view.pinned = id;
      onChange();
    },
    /** A host's spotlight for everyone (on) or its removal; others are asked to ignore anyone else's. */
    spotlight(id, on) {
      const f = call.features;
      if (!f || !f.hostsOnly('spotlight someone for everyone')) return false;
      return f.send({ type: 'spotlight', participant: on ? id : null });
    },
    update(state) {
      // A pin on someone who left goes with them.
      if (view.pinned != null && !state.participants.some((p) => p.id === view.pinned)) view.pinned = null;
      // Everyone is told why their view changed when a host spotlights someone.
      const spot = state.features?.spotlight?.participant ?? null;
      if (spot !== spotlit) {
        const name = state.participants.find((p) => p.id === spot)?.name;
        if (spot !== null && name) toast(spot === state.you ? 'A host spotlighted you for everyone.' : `${name} is spotlighted for everyone.`, 'info');
        else if (spotlit !== null) toast('The spotlight was removed.', 'info');
        spotlit = spot;
      }
    },
    destroy() {
      document.removeEventListener('pointerdown', outside);
      el.remove();
    },
  };
}

/** Loads the layouts' stylesheet once (the CSP allows only styles from this origin). */
export function loadLayoutStyles() {
  if (document.querySelector('link[data-layout-css]')) return;
  document.head.append(h('link', { rel: 'stylesheet', href: '/assets/layout.css', 'data-layout-css': '' }));
}

