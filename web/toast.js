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

/** Shows a notice. kind: 'info' | 'success' | 'error'. Returns {dismiss()}. */
export function toast(text, kind = 'info') {
  const stack = container().children[kind === 'error' ? 1 : 0];
  const item = h('div', { class: `toast toast-${kind}` },
    icon(kind === 'error' ? 'alert' : kind === 'success' ? 'check' : 'users', 'icon toast-icon'),
    h('span', { class: 'toast-text', text }),
    h('button', {
      type: 'button',
      class: 'toast-close',
      'aria-label': 'Dismiss',
      onClick: () => item.remove(),
    }, icon('x')));
  stack.append(item);
  while (stack.children.length > MAX_SHOWN) stack.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? ERROR_MS : SHOW_MS);
  return { dismiss: () => item.remove() };
}

/** Removes every notice (when changing screens). */
export function clearToasts() {
  if (host) for (const stack of host.children) stack.replaceChildren();
}
