// The "Security" region: the end-to-end encryption status as a badge in the
// top bar, and under it a panel with the security code every member compares
// (from the MLS epoch authenticator, in groups of five digits), a note when
// the code changes, and any difference between the MLS group and the people
// the server says are here.

import { h, setText } from './dom.js';
import { icon } from './icons.js';
import { issuerHost, trustProvider } from './openpubkey.js';
import { toast } from './toast.js';
import { transportKey, transportLabel } from './transport.js';

const STATUS_TEXT = {
  starting: 'Setting up encryption…',
  waiting: 'Setting up encryption…',
  active: 'End-to-end encrypted',
  failed: 'Not encrypted',
  unsupported: 'Not encrypted',
};

function nameOf(state, id) {
  return state.names[id] || `Participant ${id}`;
}

export function createSecurityPanel() {
  const statusText = h('span', { class: 'security-text' });
  const warnIcon = icon('alert', 'icon security-warn-icon');
  const button = h('button', {
    type: 'button',
    class: 'security-badge',
    'aria-expanded': 'false',
    'aria-controls': 'security-details',
    title: 'Encryption and security code',
  }, icon('shield', 'icon security-icon'), statusText, warnIcon);

  const title = h('h2', { class: 'sec-title' });
  const lead = h('p', { class: 'sec-lead' });
  const code = h('div', { class: 'sec-code', role: 'group', 'aria-label': 'Security code' });
  const count = h('p', { class: 'sec-count' });
  const codeBox = h('div', { class: 'sec-code-box' },
    h('p', { class: 'sec-label', text: 'Security code' }),
    code,
    count,
    h('p', { class: 'sec-hint', text: 'Compare this code and the number of people with everyone in the meeting, out loud or another way. The same digits prove you all hold the same keys; the same number, matching the people you know are here, proves nobody else does.' }));
  const changed = h('p', { class: 'sec-changed', role: 'status', hidden: true });
  // Kept for the rest of the meeting: a person who missed the notice still
  // learns why the code they compared before no longer holds.
  const rebuilt = h('p', { class: 'sec-changed sec-rebuilt', hidden: true });
  const warnings = h('ul', { class: 'sec-warnings', 'aria-label': 'Encryption warnings' });
  // Names the organisation's provider vouches for, checked on this device.
  const names = h('ul', { class: 'sec-names', 'aria-label': 'Verified names' });
  // Providers the server names that this browser has not pinned: trusted
  // only when the user says so, one by one (docs/security.md §15).
  const newProviders = h('ul', { class: 'sec-warnings', 'aria-label': 'New identity providers', hidden: true });
  const epoch = h('p', { class: 'sec-meta' });
  // Connection details: the path media takes (direct, or by a TURN relay).
  // A relay sees only encrypted packets, like the server, so it sits here.
  const transport = h('p', { class: 'sec-meta sec-transport', 'data-transport': 'none' });
  const details = h('div', { class: 'sec-details', id: 'security-details', hidden: true },
    title, lead, codeBox, rebuilt, changed, warnings, newProviders, names, epoch, transport);

  const el = h('section', { class: 'security', 'aria-label': 'Security' }, button, details);

  button.addEventListener('click', () => setOpen(details.hidden));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !details.hidden) setOpen(false);
  });
  document.addEventListener('pointerdown', (ev) => {
    if (!details.hidden && !el.contains(ev.target)) setOpen(false);
  });

  function setOpen(open) {
    details.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
  }

  let lastCode = '';
  let lastWarnings = '';

  function update(state) {
    const path = state.media?.transport || null;
    transport.dataset.transport = transportKey(path);
    setText(transport, `Media connection: ${transportLabel(path)}`);
    const e = state.e2ee;
    if (!e) return;
    const ok = e.status === 'active';
    const bad = e.status === 'failed' || e.status === 'unsupported';
    const nameWarnings = Object.values(e.names || {}).some((n) => n.warnings?.length) || (e.unpinned || []).length > 0;
    const warn = ok && (e.notInGroup.length > 0 || e.notAnnounced.length > 0 || nameWarnings);
    setText(statusText, STATUS_TEXT[e.status] || STATUS_TEXT.starting);
    el.dataset.status = warn ? 'warning' : e.status;
    warnIcon.style.display = warn || bad ? '' : 'none';

    setText(title, ok ? 'This call is end-to-end encrypted' : bad ? 'This call is not encrypted on this device' : 'Setting up end-to-end encryption');
    setText(lead, ok
      ? 'Audio, video, screen shares and chat are encrypted on each person\'s device with keys the server never has.'
      : bad ? (e.error || 'End-to-end encryption could not start.')
        : 'Waiting to be let into the encrypted group. Media and chat start once the keys are here.');

    const groups = (e.code || '').split(/\s+/).filter(Boolean);
    if (code.dataset.code !== e.code) {
      code.dataset.code = e.code || '';
      code.replaceChildren(...groups.map((g) => h('span', { class: 'sec-group', text: g })));
      // A screen reader and a test read the whole code as one string.
      code.setAttribute('aria-label', 'Security code');
      code.title = e.code || '';
    }
    codeBox.hidden = !groups.length;
    const n = e.roster.length;
    setText(count, `${n} ${n === 1 ? 'person' : 'people'} in the encrypted group`);

    // A rebuilt group's first code is told by the call's reconnect notice.
    if (e.code && lastCode && e.code !== lastCode && e.codeChangedBy !== 'rebuilt') {
      toast('The security code changed: someone joined or left. Compare it again.');
    }
    if (e.code) lastCode = e.code;
    const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    changed.hidden = !e.codeChangedAt;
    if (e.codeChangedAt) {
      const why = e.codeChangedBy === 'rebuilt' ? 'when the encryption was set up again on another server' : 'when someone joined or left';
      setText(changed, `The code changed at ${clock(e.codeChangedAt)}, ${why}. Compare it again.`);
    }
    rebuilt.hidden = !e.rebuiltAt;
    if (e.rebuiltAt) {
      setText(rebuilt, `Reconnected at ${clock(e.rebuiltAt)}: the meeting moved to another server and its encryption was set up again, with a new security code. Codes compared before then no longer hold.`);
    }

    const lines = [
      ...e.notInGroup.map((id) => `${nameOf(state, id)} is shown as here but is not in the encrypted group: they cannot see or hear the call, or the server is misreporting.`),
      ...e.notAnnounced.map((id) => `Someone the server did not announce (member ${id}) holds the meeting's keys. Do not share anything sensitive; check the security code.`),
      ...Object.values(e.names || {}).flatMap((n) => (n.warnings || []).map((w) => `${n.name || n.serverName || `Member ${n.id}`}: ${w}`)),
    ];
    const sig = lines.join('\n');
    if (sig !== lastWarnings) {
      if (lines.length && lines.some((l) => !lastWarnings.includes(l))) {
        toast('Encryption warning: the encrypted group and the participant list differ. See Security.', 'error');
      }
      lastWarnings = sig;
      warnings.replaceChildren(...lines.map((l) => h('li', { class: 'sec-warning' }, icon('alert'), h('span', { text: l }))));
    }
    warnings.hidden = !lines.length;
    const verified = Object.values(e.names || {}).filter((n) => n.badge === 'verified');
    const namesSig = JSON.stringify(verified);
    if (names.dataset.sig !== namesSig) {
      names.dataset.sig = namesSig;
      names.replaceChildren(...verified.map((n) => {
        let host = '';
        try { host = new URL(n.issuer).host; } catch { /* shown without it */ }
        const who = [n.name, n.email].filter(Boolean).join(', ') || n.serverName;
        return h('li', { text: `${who}: verified by ${n.provider}${host ? ` (${host})` : ''}` });
      }));
    }
    names.hidden = !ok || !verified.length;
    const unpinned = e.unpinned || [];
    const unpinnedSig = JSON.stringify(unpinned);
    if (newProviders.dataset.sig !== unpinnedSig) {
      newProviders.dataset.sig = unpinnedSig;
      newProviders.replaceChildren(...unpinned.map((p) => {
        const host = issuerHost(p.issuer);
        const trust = h('button', { type: 'button', class: 'btn', text: `Trust provider ${host}` });
        trust.addEventListener('click', () => { trust.disabled = true; trustProvider(p.issuer); });
        return h('li', { class: 'sec-warning' }, icon('alert'),
          h('span', { text: `This server now names a provider you have not trusted before: ${p.name} (${host}). Its members are not shown as verified until you trust it.` }),
          trust);
      }));
    }
    newProviders.hidden = !unpinned.length;
    setText(epoch, ok ? `Group epoch ${e.epoch}` : '');
  }

  return { el, update };
}
