// Short notices at the top of the screen: "Grace is waiting", "Invite link
// copied", refusals from the server. Read out by screen readers (a polite live
// region for news, an assertive one for errors).

import { h } from './dom.js';
import { icon } from './icons.js';

const SHOW_MS = 5000;
const ERROR_MS = 8000;
const MAX_SHOWN = 4;

let host = null;

function container() {
  if (host && host.isConnected) return host;
  host = h('div', { class: 'toasts' },
    h('div', { class: 'toast-stack', role: 'status', 'aria-live': 'polite' }),
    h('div', { class: 'toast-stack', role: 'alert', 'aria-live': 'assertive' }));
  document.body.append(host);
  return host;
}

/**
 * Shows a notice. kind: 'info' | 'success' | 'error'. Returns {dismiss()}.
 * keep: it stays until dismissed and is never pushed out by later notices
 * (a reconnect to a rebuilt encryption group is followed at once by several
 * others, which used to push it out within a fraction of a second).
 * The same text shown again replaces the older one rather than piling up.
 */
export function toast(text, kind = 'info', { keep = false } = {}) {
  const stack = container().children[kind === 'error' ? 1 : 0];
  for (const old of [...stack.children]) {
    if (old.dataset.text === text && (keep || old.dataset.keep !== 'true')) old.remove();
  }
  const item = h('div', { class: `toast toast-${kind}` },
    icon(kind === 'error' ? 'alert' : kind === 'success' ? 'check' : 'users', 'icon toast-icon'),
    h('span', { class: 'toast-text', text }),
    h('button', {
      type: 'button',
      class: 'toast-close',
      'aria-label': 'Dismiss',
      onClick: () => item.remove(),
    }, icon('x')));
  item.dataset.text = text;
  item.dataset.keep = String(keep);
  stack.append(item);
  // Too many at once: the oldest that may go, goes.
  const passing = () => [...stack.children].filter((el) => el.dataset.keep !== 'true');
  while (stack.children.length > MAX_SHOWN && passing().length > 0) passing()[0].remove();
  if (!keep) setTimeout(() => item.remove(), kind === 'error' ? ERROR_MS : SHOW_MS);
  return { dismiss: () => item.remove() };
}

/** Removes every notice (when changing screens). */
export function clearToasts() {
  if (host) for (const stack of host.children) stack.replaceChildren();
}
