// /signin: the password form, a "Sign in with NAME" button per OpenID Connect
// provider, the one-time link (/signin#token=...), the way back from a
// provider (/signin#oidc=done or #oidc_error=CODE), and the "choose a
// password" step for an account that has none yet.

import * as api from './api.js';
import { brand, page } from './chrome.js';
import { alertBox, field, h, lockout } from './dom.js';
import { apiError, duration } from './errors.js';
import { navigate, safeNext } from './router.js';
import { keyBoundStartUrl } from './openpubkey.js';

/** What each error code of a provider sign-in means to the person. */
const OIDC_ERRORS = {
  unreachable: 'The identity provider could not be reached. Try again later, or sign in with a password.',
  expired: 'That sign-in was not started in this browser or took too long. Start again.',
  state: 'That sign-in did not match the one this browser started. Start again.',
  refused: 'The identity provider did not sign you in.',
  exchange: 'The identity provider did not confirm the sign-in. Start again.',
  token: 'The identity provider\'s answer could not be verified, so you were not signed in.',
  unknown_provider: 'That identity provider is not configured on this server.',
  disabled: 'Your account on this server is disabled. Ask its administrator.',
  internal: 'Signing you in failed on the server. Try again.',
  domain: 'This server accepts that provider\'s accounts only with an email address in its allowed domains.',
};

/** Shortest and longest password the server accepts. */
const PASSWORD_MIN = 10;
const PASSWORD_MAX = 256;

export function mountSignIn(root) {
  page('Sign in', 'light');
  // A provider's sign-in comes back without ?next: where it was headed was
  // kept in this tab's storage when it left (a meeting's join page).
  let kept = null;
  try {
    kept = sessionStorage.getItem('conclave.next');
    sessionStorage.removeItem('conclave.next');
  } catch {
    // No storage: the dashboard it is.
  }
  const next = safeNext(new URLSearchParams(location.search).get('next') || kept);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  const oidcDone = fragment.get('oidc') === 'done';
  const oidcError = fragment.get('oidc_error');
  let stopLockout = null;
  let alive = true;

  const card = h('div', { class: 'auth-card' });
  root.replaceChildren(h('main', { class: 'auth-page' }, h('div', { class: 'auth-brand' }, brand()), card));

  const done = () => navigate(next, { replace: true });

  function showBusy(text) {
    card.replaceChildren(h('div', { class: 'auth-busy' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('p', { text })));
  }

  /**
   * A "Sign in with NAME" button per configured provider, filled in once the
   * server said how it signs people in; `passwordsOff` runs when it takes no
   * passwords, to take the password fields away.
   */
  function providerButtons(passwordsOff) {
    const box = h('div', { class: 'form' });
    api.signInMethods().then(({ password, providers: list }) => {
      if (!alive) return;
      const buttons = list.map((p) => {
        const b = h('button', { type: 'button', class: 'btn btn-secondary btn-block', text: `Sign in with ${p.name}` });
        b.addEventListener('click', () => {
          try {
            if (next !== safeNext(null)) sessionStorage.setItem('conclave.next', next);
          } catch {
            // Without storage the sign-in ends on the dashboard.
          }
          keyBoundStartUrl(p.start_url).then((url) => location.assign(url));
        });
        return b;
      });
      if (!password) {
        box.replaceChildren(...buttons);
        passwordsOff();
        buttons[0]?.focus();
      } else if (buttons.length) {
        box.replaceChildren(...buttons, h('p', { class: 'auth-foot', text: 'or with a username and password' }));
      }
    }).catch(() => {});
    return box;
  }

  function showSignIn(message) {
    const username = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, maxLength: 64, autocapitalize: 'none', spellcheck: false });
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, maxLength: PASSWORD_MAX });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', text: 'Sign in' });
    const alert = alertBox();
    const userField = field('Username', username);
    const passwordField = field('Password', password);
    const form = h('form', { class: 'form', noValidate: true },
      h('h1', { class: 'auth-title', text: 'Sign in' }),
      h('p', { class: 'auth-sub', text: 'Host meetings on this Conclave server.' }),
      providerButtons(() => { userField.remove(); passwordField.remove(); submit.remove(); }),
      userField,
      passwordField,
      alert.el,
      submit,
      h('p', { class: 'auth-foot', text: 'Joining a meeting? Open the invite link you were sent; no account is needed.' }));
    card.replaceChildren(form);
    if (message) alert.show(message);
    username.focus();

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      alert.clear();
      if (!username.value.trim() || !password.value) {
        alert.show('Enter your username and password.');
        return;
      }
      submit.disabled = true;
      submit.textContent = 'Signing in…';
      try {
        const user = await api.signIn(username.value.trim(), password.value);
        if (!alive) return;
        if (!api.needsPassword(user)) done();
        else showChoosePassword(user);
      } catch (e) {
        if (!alive) return;
        submit.textContent = 'Sign in';
        submit.disabled = false;
        if (e.code === 'too_many_attempts' && e.retryAfter) {
          stopLockout = lockout(alert, submit, e.retryAfter,
            (s) => `Too many attempts. Try again in ${duration(s)}.`);
        } else {
          alert.show(apiError(e));
          if (e.code === 'bad_credentials') {
            password.value = '';
            password.focus();
          }
        }
      }
    });
  }

  function showChoosePassword(user) {
    page('Choose a password', 'light');
    const pw = h('input', { type: 'password', autocomplete: 'new-password', required: true, minLength: PASSWORD_MIN, maxLength: PASSWORD_MAX });
    const again = h('input', { type: 'password', autocomplete: 'new-password', required: true, maxLength: PASSWORD_MAX });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', text: 'Save password' });
    const alert = alertBox();
    const form = h('form', { class: 'form', noValidate: true },
      h('h1', { class: 'auth-title', text: 'Choose a password' }),
      h('p', { class: 'auth-sub' },
        'Welcome, ', h('strong', { text: user.username }), '. ',
        `Choose a password to sign in with from now on: ${PASSWORD_MIN} to ${PASSWORD_MAX} characters.`),
      field('New password', pw),
      field('Confirm password', again),
      alert.el,
      submit);
    card.replaceChildren(form);
    pw.focus();

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      alert.clear();
      if ([...pw.value].length < PASSWORD_MIN) {
        alert.show(`A password needs at least ${PASSWORD_MIN} characters.`);
        pw.focus();
        return;
      }
      if (pw.value !== again.value) {
        alert.show('The two passwords are not the same.');
        again.focus();
        return;
      }
      submit.disabled = true;
      try {
        await api.setPassword(pw.value);
        if (alive) done();
      } catch (e) {
        if (!alive) return;
        submit.disabled = false;
        alert.show(apiError(e));
      }
    });
  }

  async function start() {
    if (oidcDone || oidcError) {
      history.replaceState(null, '', location.pathname + location.search);
      if (oidcError) {
        showSignIn(OIDC_ERRORS[oidcError] || OIDC_ERRORS.internal);
        return;
      }
      api.signedInElsewhere();
    }
    if (token) {
      // The token is a one-time secret: take it out of the address bar and history first.
      history.replaceState(null, '', location.pathname + location.search);
      showBusy('Signing you in…');
      try {
        const user = await api.redeemLink(token);
        if (!alive) return;
        if (!api.needsPassword(user)) done();
        else showChoosePassword(user);
      } catch (e) {
        if (alive) showSignIn(apiError(e));
      }
      return;
    }
    try {
      const user = await api.me();
      if (!alive) return;
      if (user && !api.needsPassword(user)) done();
      else if (user) showChoosePassword(user);
      else showSignIn();
    } catch (e) {
      if (alive) showSignIn(apiError(e));
    }
  }

  start();
  return () => {
    alive = false;
    if (stopLockout) stopLockout();
  };
}
