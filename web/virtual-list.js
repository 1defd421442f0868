// A list that keeps in the DOM only the rows near the visible part of its
// scroller, so that a meeting of a thousand keeps its Participants panel
// quick: each roster change touches a few dozen rows, not a thousand. The
// rows out of view are stood in for by the list's padding, measured from the
// rows shown (they are all one height, bar the odd one with a form open).
// Each row says its place (aria-posinset of aria-setsize), so a screen
// reader still hears "12 of 1000".

/** Rows rendered above and below the visible ones, for smooth scrolling. */
const OVERSCAN = 10;
/** Up to this many rows, all are rendered: nothing to save. */
const ALL_UP_TO = 60;
/** A row's height (with the gap) until one has been measured. */
const GUESS_PX = 48;

/**
 * `list` (a <ul>/<ol> inside `scroller`) shows `items` through `create(item)`
 * and `update(el, item)`, keyed by `keyOf(item)`. Returns {render(items), destroy()}.
 */
export function createVirtualList(list, scroller, { keyOf, create, update }) {
  let items = [];
  let pitch = GUESS_PX;
  let rows = new Map(); // key -> element, in the DOM now
  let frame = 0;

  function range() {
    if (items.length <= ALL_UP_TO) return [0, items.length];
    // Where the list's first row would be, in the scroller's content.
    const top = list.getBoundingClientRect().top - scroller.getBoundingClientRect().top + scroller.scrollTop;
    const from = Math.floor((scroller.scrollTop - top) / pitch) - OVERSCAN;
    const to = Math.ceil((scroller.scrollTop + scroller.clientHeight - top) / pitch) + OVERSCAN;
    const start = Math.max(0, Math.min(items.length, from));
    return [start, Math.max(start, Math.min(items.length, to))];
  }

  function draw() {
    frame = 0;
    const [start, end] = range();
    const next = new Map();
    for (let i = start; i < end; i += 1) {
      const item = items[i];
      const key = keyOf(item);
      let el = rows.get(key) || next.get(key);
      if (!el) el = create(item);
      update(el, item);
      el.setAttribute('aria-posinset', String(i + 1));
      el.setAttribute('aria-setsize', String(items.length));
      next.set(key, el);
      const at = i - start;
      if (list.children[at] !== el) list.insertBefore(el, list.children[at] || null);
    }
    for (const [key, el] of rows) if (!next.has(key)) el.remove();
    rows = next;
    // Rows another module put in the list (none expected) do not linger.
    while (list.children.length > next.size) list.lastElementChild.remove();
    const shown = [...next.values()];
    if (shown.length >= 2) {
      const measured = (shown[shown.length - 1].offsetTop - shown[0].offsetTop) / (shown.length - 1);
      if (measured > 0 && Math.abs(measured - pitch) > 1) {
        pitch = measured;
        later(); // the range was worked out with the old height
      }
    }
    list.style.paddingTop = `${Math.round(start * pitch)}px`;
    list.style.paddingBottom = `${Math.round((items.length - end) * pitch)}px`;
  }

  const later = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  scroller.addEventListener('scroll', later, { passive: true });
  const resize = typeof ResizeObserver === 'function' ? new ResizeObserver(later) : null;
  resize?.observe(scroller);

  return {
    render(next) {
      items = next;
      draw();
    },
    destroy() {
      scroller.removeEventListener('scroll', later);
      resize?.disconnect();
      if (frame) cancelAnimationFrame(frame);
    },
  };
}

/** Whether `name` matches what was typed in a search box: every word, in any case and accent. */
export function matchesSearch(name, query) {
  const fold = (s) => s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
  const hay = fold(name);
  return fold(query).split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
}
