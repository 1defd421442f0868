// DOM helpers. Every element is built with createElement and every piece of
// text goes in through textContent or a text node: nothing from the network can
// ever become markup. There is no innerHTML anywhere in this client.

/**
 * Builds an element: h('button', {class: 'btn', onClick: f, 'aria-label': 'Mute'}, 'text', child).
 * Props: `class`, `text`; `on<Event>` adds a listener; `aria-*`, `data-*`, `role`
 * and `for` become attributes; anything else is set as a property when the
 * element has one, as an attribute otherwise. Children are nodes or strings
 * (as text); null, undefined and false are skipped; arrays are flattened.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

export function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') {
      el.className = value;
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key.startsWith('on') && key.length > 2 && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key.startsWith('aria-') || key.startsWith('data-') || key === 'role' || key === 'for') {
      if (value === false) el.removeAttribute(key);
      else el.setAttribute(key, String(value));
    } else if (key in el) {
      el[key] = value;
    } else {
      el.setAttribute(key, String(value));
    }
  }
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Sets text only when it changed, so screen readers and selections are left alone. */
export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

/** Toggles an attribute: present (with `value`) when `on`, absent otherwise. */
export function setAttr(el, name, value) {
  if (value === false || value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) {
    el.setAttribute(name, String(value));
  }
}

const keyedState = new WeakMap();

/**
 * Keeps `parent`'s children in step with `items`, one element per key: an
 * element is made once by `create(item)`, brought up to date by
 * `update(el, item)` on every call, and removed when its key goes. Elements
 * survive re-renders, so focus, scroll and (later) playing <video> stay put.
 */
export function syncList(parent, items, keyOf, create, update) {
  const previous = keyedState.get(parent) || new Map();
  const next = new Map();
  items.forEach((item, i) => {
    const key = keyOf(item);
    let el = previous.get(key);
    if (!el) el = create(item);
    update(el, item);
    next.set(key, el);
    if (parent.children[i] !== el) parent.insertBefore(el, parent.children[i] || null);
  });
  for (const [key, el] of previous) {
    if (!next.has(key)) el.remove();
  }
  keyedState.set(parent, next);
  return next;
}

let idCounter = 0;
/** A document-unique id, for label/aria-labelledby pairs. */
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A label and its control, wired together. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = uid('f');
  const label = h('label', { for: control.id, class: 'field-label', text: labelText });
  const parts = [label, control];
  if (hint) {
    const hintEl = h('p', { class: 'field-hint', id: uid('hint'), text: hint });
    control.setAttribute('aria-describedby', hintEl.id);
    parts.push(hintEl);
  }
  return h('div', { class: 'field' }, parts);
}

/**
 * A checkbox drawn as a switch (by CSS, on the input itself), with its label
 * after it. `accessibleName`, when given, names it instead of the visible label
 * (which it must contain).
 */
export function toggle(labelText, checked, onChange, hint, accessibleName) {
  const input = h('input', {
    type: 'checkbox',
    role: 'switch',
    class: 'switch-input',
    checked: !!checked,
    id: uid('sw'),
  });
  if (onChange) input.addEventListener('change', () => onChange(input.checked, input));
  // The name is the label text alone; the hint is its description.
  const name = h('span', { class: 'switch-label', id: uid('swl'), text: labelText });
  if (accessibleName) input.setAttribute('aria-label', accessibleName);
  else input.setAttribute('aria-labelledby', name.id);
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'switch-hint', id: uid('swh'), text: hint });
    input.setAttribute('aria-describedby', hintEl.id);
  }
  const label = h('label', { for: input.id, class: 'switch' },
    input,
    h('span', { class: 'switch-text' }, name, hintEl));
  return { label, input };
}

/** A message area for a form or screen: role=alert so it is read out when it appears. */
export function alertBox() {
  const el = h('div', { class: 'alert', role: 'alert', hidden: true });
  return {
    el,
    show(text, kind = 'error') {
      el.className = `alert alert-${kind}`;
      setText(el, text);
      el.hidden = false;
    },
    clear() {
      el.hidden = true;
      el.textContent = '';
    },
  };
}

/** Initials for an avatar: up to two letters from the name's words. */
export function initials(name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0]);
  return (letters.join('') || '?').toUpperCase();
}

/** A stable hue class (0-7) for a participant, so avatars keep their colour. */
export function hueOf(key) {
  let n = 0;
  for (const ch of String(key)) n = (n * 31 + ch.codePointAt(0)) >>> 0;
  return n % 8;
}

/** Copies text to the clipboard, with a fallback for plain-http origins. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Fall through to the selection-based copy.
    }
  }
  const area = h('textarea', { value: text, readOnly: true, class: 'offscreen', 'aria-hidden': 'true' });
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/**
 * Disables `button` for `secs` seconds, showing `textFor(secondsLeft)` in the
 * alert box as it counts down. Returns a function that stops it early.
 */
export function lockout(alert, button, secs, textFor) {
  let left = Math.max(1, Math.ceil(secs));
  button.disabled = true;
  alert.show(textFor(left));
  const timer = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      stop();
      alert.clear();
    } else {
      alert.show(textFor(left));
    }
  }, 1000);
  function stop() {
    clearInterval(timer);
    button.disabled = false;
  }
  return stop;
}
