// /admin, for administrators only: every account on the server, with buttons
// to disable, enable and delete each (not one's own). The server decides who
// may: a non-administrator who opens this address gets its refusal, shown
// as a sentence. Names come from people and providers, so every one of them
// goes in as text (dom.js), and each button's accessible name says whose
// account it acts on ("Disable bob").

import * as api from './api.js';
import { page, topNav } from './chrome.js';
import { alertBox, h } from './dom.js';
import { apiError } from './errors.js';
import { linkClick, navigate } from './router.js';
import { toast } from './toast.js';

export function mountAdmin(root, me) {
  page('Accounts', 'light');
  let alive = true;
  const alert = alertBox();
  const body = h('tbody');
  const table = h('table', { class: 'admin-table', 'aria-label': 'Accounts' },
    h('thead', {}, h('tr', {},
      ...['Name', 'Signs in with', 'Role', 'State', 'Actions'].map((t) => h('th', { scope: 'col', text: t })))),
    body);

  root.replaceChildren(
    topNav(h('a', { class: 'btn btn-ghost', href: '/', onClick: linkClick, text: 'Your meetings' })),
    h('main', { class: 'dashboard' },
      h('div', { class: 'dash-head' },
        h('div', {},
          h('h1', { text: 'Accounts' }),
          h('p', { class: 'dash-sub', text: 'Disabling an account ends its sessions at once; it cannot sign in until enabled again. Deleting removes it with its meetings; someone who signs in through a provider again gets a new, empty account, so disable an account to keep its person out.' }))),
      alert.el,
      h('div', { class: 'admin-scroll' }, table)));

  async function load() {
    try {
      const users = await api.adminUsers();
      if (!alive) return;
      alert.clear();
      body.replaceChildren(...users.map(row));
    } catch (e) {
      if (!alive) return;
      if (e.status === 401) {
        api.signedOut();
        navigate('/signin?next=/admin', { replace: true });
        return;
      }
      alert.show(apiError(e));
    }
  }

  function row(u) {
    const provider = u.provider
      ? `${u.provider.name || u.provider.issuer}${u.provider.email ? ` (${u.provider.email})` : ''}`
      : (u.has_password ? 'Password' : 'No password yet');
    const actions = h('td', { class: 'admin-actions' });
    if (u.id === me.id) {
      actions.append(h('span', { class: 'dash-sub', text: 'You' }));
    } else {
      actions.append(
        u.disabled
          ? h('button', { type: 'button', class: 'btn btn-secondary btn-sm', text: 'Enable', 'aria-label': `Enable ${u.username}`, onClick: () => act(() => api.adminEnable(u.id), `${u.username} is enabled again.`) })
          : h('button', { type: 'button', class: 'btn btn-secondary btn-sm', text: 'Disable', 'aria-label': `Disable ${u.username}`, onClick: () => act(() => api.adminDisable(u.id), `${u.username} is disabled; their sessions have ended.`) }),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm btn-danger-text', text: 'Delete', 'aria-label': `Delete ${u.username}`, onClick: () => confirmDelete(actions, u) }));
    }
    return h('tr', { 'data-user': String(u.id) },
      h('th', { scope: 'row', text: u.username }),
      h('td', { text: provider }),
      h('td', { text: u.is_admin ? 'Administrator' : (u.may_host ? 'Host' : 'Member') }),
      h('td', { text: u.disabled ? 'Disabled' : 'Enabled' }),
      actions);
  }

  function confirmDelete(cell, u) {
    const cancel = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: 'Cancel', onClick: load });
    cell.replaceChildren(
      h('span', { class: 'confirm-text', text: `Delete ${u.username} and their meetings?` }),
      h('button', { type: 'button', class: 'btn btn-danger btn-sm', text: 'Delete account', 'aria-label': `Delete the account ${u.username}`, onClick: () => act(() => api.adminDelete(u.id), `${u.username} is deleted.`) }),
      cancel);
    cancel.focus();
  }

  async function act(call, done) {
    try {
      await call();
      if (!alive) return;
      toast(done, 'success');
    } catch (e) {
      if (!alive) return;
      alert.show(apiError(e));
    }
    await load();
  }

  load();
  return () => {
    alive = false;
  };
}
