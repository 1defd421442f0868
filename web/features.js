// Mounts hands, reactions, polls and the background blur button into the
// meeting screen (meeting.js calls this once and then `update` on every
// render), so the shared views need only a hook each.

import { createBlurButton } from './blur.js';
import { createHandButton, createHandsSection, decorateTiles as handTiles } from './hands.js';
import { createPollButton, createPollCard } from './polls.js';
import { createReactionsControl, decorateTiles as reactionTiles } from './reactions.js';
import { initialFeatures } from './appmsg.js';
import { lowerHandWhenSpeaking } from './speaking.js';
import { h } from './dom.js';

/** Loads the features' stylesheet once (a <link>: the CSP allows only styles from this origin). */
function loadStyles() {
  if (document.querySelector('link[data-features-css]')) return;
  document.head.append(h('link', { rel: 'stylesheet', href: '/assets/features.css', 'data-features-css': '' }));
}

/** parts: {toolbar, stage, participantsBody, grid} elements of the meeting screen. */
export function mountFeatures(call, { toolbar, stage, participantsBody, grid }) {
  loadStyles();
  const hand = createHandButton(call);
  const reactions = createReactionsControl(call);
  const card = createPollCard(call);
  const pollBtn = createPollButton(() => card.compose());
  const blur = createBlurButton(call);
  const hands = createHandsSection(call);
  const main = toolbar.querySelector('.toolbar-main');
  const sep = main?.querySelector('.toolbar-sep') || null;
  const group = h('div', { class: 'toolbar-features' }, hand.el, reactions.el, pollBtn.el, blur.el);
  if (main) main.insertBefore(group, sep);
  stage.append(card.el);
  participantsBody.prepend(hands.el);
  const speaking = lowerHandWhenSpeaking(call);

  return {
    update(state) {
      const s = state.features ? state : { ...state, features: initialFeatures() };
      hand.update(s);
      pollBtn.update(s);
      blur.update();
      card.update(s);
      hands.update(s);
      handTiles(grid, s);
      reactionTiles(grid, s);
    },
    destroy() {
      speaking.destroy();
      reactions.destroy();
      group.remove();
      card.el.remove();
      hands.el.remove();
    },
  };
}
