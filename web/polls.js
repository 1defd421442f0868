// Polls: a host asks (a question and two to six options), members answer by
// radio button, the host sees the answers come in and shares the results,
// which every member then sees. Everything shown here is text (textContent):
// a question or option is whatever a host typed. The messages and their
// checks are appmsg.js's.

import { field, h, replace, setText, uid } from './dom.js';
import { POLL_MAX_OPTION, POLL_MAX_OPTIONS, POLL_MAX_QUESTION, POLL_MIN_OPTIONS, tally } from './appmsg.js';
import { icon } from './icons.js';
import { isModerator } from './state.js';

/** The toolbar's "Poll" button, shown to hosts and co-hosts. */
export function createPollButton(onClick) {
  const el = h('button', { type: 'button', class: 'ctl ctl-poll', hidden: true },
    h('span', { class: 'ctl-icon' }, icon('poll')), h('span', { class: 'ctl-label', text: 'Poll' }));
  el.addEventListener('click', onClick);
  return {
    el,
    update(state) {
      el.hidden = !isModerator(state);
    },
  };
}

/** The poll card over the stage: the host's form, the question to answer, the counts. */
export function createPollCard(call) {
  const el = h('section', { class: 'poll-card', 'aria-label': 'Poll', hidden: true });
  let composing = false;
  let shownSig = null;

  function compose() {
    composing = true;
    shownSig = null;
    const question = h('input', { type: 'text', maxLength: POLL_MAX_QUESTION, autocomplete: 'off', required: true });
    const options = h('div', { class: 'poll-options-edit' });
    const addBtn = h('button', { type: 'button', class: 'btn btn-sm btn-ghost', text: 'Add option' });
    const addOption = () => {
      const n = options.childElementCount + 1;
      const input = h('input', { type: 'text', maxLength: POLL_MAX_OPTION, autocomplete: 'off' });
      options.append(field(`Option ${n}`, input));
      addBtn.disabled = n >= POLL_MAX_OPTIONS;
      return input;
    };
    addBtn.addEventListener('click', () => addOption().focus());
    for (let i = 0; i < POLL_MIN_OPTIONS; i += 1) addOption();
    const form = h('form', { class: 'poll-form' },
      h('h2', { class: 'poll-title', text: 'New poll' }),
      field('Question', question),
      options,
      addBtn,
      h('div', { class: 'poll-actions' },
        h('button', { type: 'submit', class: 'btn btn-primary btn-sm', text: 'Ask' }),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: 'Cancel', onClick: () => { composing = false; render(call.state); } })));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const opts = [...options.querySelectorAll('input')].map((i) => i.value);
      if (call.features.askPoll(question.value, opts)) {
        composing = false;
        render(call.state);
      }
    });
    replace(el, form);
    el.hidden = false;
    question.focus();
  }

  function render(state) {
    if (composing) return;
    const poll = state.features.poll;
    if (!poll) {
      el.hidden = true;
      shownSig = null;
      el.replaceChildren();
      return;
    }
    el.hidden = false;
    const asker = poll.from === state.you;
    const counts = poll.results || (asker ? tally(poll) : null);
    const sig = JSON.stringify([poll.id, asker, counts, poll.mine, !!poll.results]);
    if (sig === shownSig) return;
    shownSig = sig;
    const asked = state.names[poll.from] || 'A host';
    const head = [
      h('p', { class: 'poll-kicker', text: asker ? 'Your poll' : `Poll from ${asked}` }),
      h('h2', { class: 'poll-question', text: poll.question }),
    ];
    const close = h('button', { type: 'button', class: 'btn btn-ghost btn-sm', text: 'Close poll', onClick: () => call.features.dismissPoll() });
    if (counts) {
      const total = counts.reduce((a, b) => a + b, 0);
      const list = h('ul', { class: 'poll-results', 'aria-label': poll.results ? 'Poll results' : 'Answers so far' },
        poll.options.map((o, i) => h('li', { class: `poll-result${poll.mine === i ? ' is-mine' : ''}` },
          h('span', { class: 'poll-option', text: o }),
          h('span', { class: 'poll-count', text: `${counts[i]} ${counts[i] === 1 ? 'vote' : 'votes'}` }),
          shareBar(total ? Math.round((counts[i] / total) * 100) : 0))));
      const foot = [];
      if (asker && !poll.results) {
        foot.push(h('p', { class: 'poll-note', role: 'status', text: `${total} ${total === 1 ? 'answer' : 'answers'} so far` }));
        foot.push(h('button', { type: 'button', class: 'btn btn-primary btn-sm', text: 'Share results', onClick: () => call.features.shareResults() }));
      } else if (poll.results) {
        foot.push(h('p', { class: 'poll-note', role: 'status', text: asker ? 'Results shared with everyone.' : 'Results shared by the host.' }));
      }
      replace(el, head, list, h('div', { class: 'poll-actions' }, foot, close));
    } else {
      const name = uid('poll');
      const group = h('div', { role: 'radiogroup', class: 'poll-choices', 'aria-label': poll.question },
        poll.options.map((o, i) => {
          const input = h('input', { type: 'radio', name, id: uid('po'), value: String(i), checked: poll.mine === i });
          input.addEventListener('change', () => { if (input.checked) call.features.answerPoll(i); });
          return h('label', { class: 'poll-choice', for: input.id }, input, h('span', { text: o }));
        }));
      const status = h('p', { class: 'poll-note', role: 'status', text: poll.mine === null ? 'Choose an answer: it goes to everyone in the meeting, encrypted.' : 'Your answer was sent.' });
      replace(el, head, group, h('div', { class: 'poll-actions' }, status, close));
    }
  }

  return { el, compose, update: render };
}

/** A bar as wide as `percent` of the row (a CSS property set through the CSSOM, which the CSP allows). */
function shareBar(percent) {
  const bar = h('span', { class: 'poll-bar', 'aria-hidden': 'true' });
  bar.style.setProperty('--share', `${percent}%`);
  return bar;
}
