// The entry point: picks the screen for the address (/, /signin, /j/{id}) and
// swaps screens on navigation. Each screen's mount function returns its cleanup.

import { mountAdmin } from './admin.js';
import * as api from './api.js';
import { page } from './chrome.js';
import { mountDashboard } from './dashboard.js';
import { h } from './dom.js';
import { apiError } from './errors.js';
import { mountJoin } from './join.js';
import { mountLanding } from './landing.js';
import { linkClick, navigate, onRoute } from './router.js';
import { mountSignIn } from './signin.js';
import { clearToasts } from './toast.js';

const root = document.getElementById('app');
let cleanup = null;
let generation = 0;

/** What signedInUser returns when its screen is no longer wanted (or a problem was shown). */
const STALE = Symbol('stale');

/**
 * The signed-in user (null: nobody) for the screen of navigation `gen`;
 * STALE once another navigation came meanwhile, or when the server could
 * not say (the problem is shown then, if still wanted).
 */
async function signedInUser(gen) {
  let user = null;
  try {
    user = await api.me();
  } catch (e) {
    if (gen !== generation) return STALE;
    showProblem(apiError(e));
    return STALE;
  }
  return gen === generation ? user : STALE;
}

async function home(gen) {
  const user = await signedInUser(gen);
  if (user === STALE) return null;
  if (user && api.needsPassword(user)) {
    // A first-start admin who has not chosen a password yet.
    return mountSignIn(root);
  }
  if (!user && api.accountDisabled()) {
    navigate('/signin#oidc_error=disabled', { replace: true });
    return null;
  }
  if (!user && api.sessionEnded()) {
    // Signed in before, and the session has ended: sign in again.
    navigate('/signin', { replace: true });
    return null;
  }
  return user ? mountDashboard(root, user) : mountLanding(root);
}

/** /admin: the accounts page for an administrator; anyone else hears why not. */
async function adminPage(gen) {
  const user = await signedInUser(gen);
  if (user === STALE) return null;
  if (!user) {
    navigate(api.accountDisabled() ? '/signin#oidc_error=disabled' : '/signin?next=/admin', { replace: true });
    return null;
  }
  return mountAdmin(root, user);
}

function showProblem(text) {
  page('Problem', 'light');
  root.replaceChildren(h('main', { class: 'center-page' },
    h('div', { class: 'outcome-card light' },
      h('h1', { class: 'outcome-title', text: 'Something went wrong' }),
      h('p', { class: 'outcome-text', text }),
      h('a', { class: 'btn btn-primary', href: location.pathname, text: 'Try again' }))));
}

function notFound() {
  page('Not found', 'light');
  root.replaceChildren(h('main', { class: 'center-page' },
    h('div', { class: 'outcome-card light' },
      h('h1', { class: 'outcome-title', text: 'Page not found' }),
      h('a', { class: 'btn btn-primary', href: '/', onClick: linkClick, text: 'Go to the home page' }))));
  return null;
}

async function render() {
  generation += 1;
  const gen = generation;
  if (cleanup) {
    const c = cleanup;
    cleanup = null;
    c();
  }
  clearToasts();
  const path = location.pathname;
  let result = null;
  const join = /^\/j\/([^/]+)\/?$/.exec(path);
  if (path === '/') result = await home(gen);
  else if (path === '/admin') result = await adminPage(gen);
  else if (path === '/signin') result = mountSignIn(root);
  else if (join) result = mountJoin(root, decodeURIComponent(join[1]));
  else result = notFound();
  if (gen === generation) cleanup = result;
  else if (result) result();
}

onRoute(render);
window.addEventListener('popstate', render);
render();
