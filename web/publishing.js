// View-only attendees (docs/protocol.md, `publish`): while a meeting lets
// only the people a host allows publish, everyone else joins with camera,
// microphone and screen off, sees those buttons disabled with the reason,
// and raises a hand to ask. Hosts and co-hosts get "Allow to speak" and
// "Stop" on each participant's row. The server enforces all of it (a
// refused `set_media`, nothing forwarded); this module only says so.

import { h, setAttr, setText, uid } from './dom.js';
import { self } from './state.js';

export const VIEW_ONLY_REASON = 'View only: the host decides who may speak. Raise your hand to ask.';

/** Whether participant `p` (this member by default) may publish now. */
export function mayPublish(state, p = self(state)) {
  if (!p) return false;
  if (p.role === 'host' || p.role === 'cohost') return true;
  return state.meeting?.permissions?.publish !== 'allowed' || !!p.publish_allowed;
}

/** What to tell this member when a moderator let them speak or stopped them, or null. */
export function publishNotice(state, old, p) {
  if (!onlyAllowedPublish(state) || !!old.publish_allowed === !!p.publish_allowed) return null;
  return p.publish_allowed
    ? { text: 'A host allowed you to speak: you may turn on your microphone and camera.', kind: 'success' }
    : { text: 'A host ended your turn to speak: you are view-only again.', kind: 'info' };
}

/** Whether the meeting makes participants view-only unless allowed. */
export function onlyAllowedPublish(state) {
  return state.meeting?.permissions?.publish === 'allowed';
}

/**
 * The note beside the toolbar's media buttons, and `update(state, buttons)`
 * which disables them for a view-only member and points each at the note.
 */
export function createViewOnlyNote() {
  const el = h('span', { class: 'view-only-note', id: uid('vo'), role: 'status', hidden: true });
  return {
    el,
    update(state, buttons) {
      const viewOnly = state.phase === 'joined' && !!self(state) && !mayPublish(state);
      el.hidden = !viewOnly;
      setText(el, viewOnly ? VIEW_ONLY_REASON : '');
      for (const b of buttons) {
        b.disabled = viewOnly;
        setAttr(b, 'aria-describedby', viewOnly ? el.id : null);
        setAttr(b, 'title', viewOnly ? VIEW_ONLY_REASON : null);
      }
    },
  };
}

/**
 * The moderator's "Allow to speak" / "Stop" for participant `p`, or null when
 * the meeting lets everyone publish or `p` is a host or co-host.
 */
export function publishButton(call, state, p) {
  if (!onlyAllowedPublish(state) || p.role !== 'participant') return null;
  const allowed = !!p.publish_allowed;
  return h('button', {
    type: 'button',
    class: `btn btn-sm ${allowed ? 'btn-ghost' : 'btn-secondary'}`,
    text: allowed ? 'Stop' : 'Allow to speak',
    title: allowed ? `Stop ${p.name} speaking and make them view-only again` : `Let ${p.name} use their microphone, camera and screen`,
    onClick: () => call.allowPublish(p.id, !allowed),
  });
}
