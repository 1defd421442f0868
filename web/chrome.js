// The frame shared by the light pages: brand, top bar, page title.

import { h } from './dom.js';
import { logo } from './icons.js';
import { linkClick } from './router.js';

export function brand() {
  return h('a', { class: 'brand', href: '/', onClick: linkClick },
    logo(), h('span', { class: 'brand-name', text: 'Conclave' }));
}

/** The top bar of the light pages, with `right` (nodes) at its end. */
export function topNav(...right) {
  return h('header', { class: 'topnav' },
    h('div', { class: 'topnav-inner' }, brand(), h('div', { class: 'topnav-right' }, right)));
}

/** Sets the tab title and the page's colour scheme. */
export function page(title, theme) {
  document.title = title ? `${title} · Conclave` : 'Conclave';
  document.body.dataset.theme = theme;
}
