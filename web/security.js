// The "Security" region: end-to-end encryption status and, once the E2EE
// change lands, the security code every member compares and the roster taken
// from the MLS group. Until then it says plainly that E2EE is not available.

import { h } from './dom.js';
import { icon } from './icons.js';

export function createSecurityPanel() {
  const status = h('span', { class: 'security-text', text: 'End-to-end encryption: not yet available' });
  const el = h('section', { class: 'security', 'aria-label': 'Security' },
    icon('shield', 'icon security-icon'), status);
  return {
    el,
    // The E2EE change renders the epoch's security code and the MLS roster here.
    update() {},
  };
}
