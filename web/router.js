// Client-side navigation between the server's three pages (/, /signin,
// /j/{id}) without reloading: screens call navigate(), app.js renders.

let render = () => {};

export function onRoute(fn) {
  render = fn;
}

/** Goes to a same-origin path; `state` rides in history.state (e.g. {autostart: true}). */
export function navigate(path, { replace = false, state = null } = {}) {
  if (replace) history.replaceState(state, '', path);
  else history.pushState(state, '', path);
  render();
}

/** A safe local path from a `next` parameter, or the fallback. */
export function safeNext(next, fallback = '/') {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.includes('\\')) {
    return fallback;
  }
  return next;
}

/** A link that navigates in place, unless opened in a new tab. */
export function linkClick(ev) {
  const a = ev.currentTarget;
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (a.origin !== location.origin) return;
  ev.preventDefault();
  navigate(a.pathname + a.search + a.hash);
}
