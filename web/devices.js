// The join page's device choice: a camera and a microphone picker, shown when
// the browser lists more than one of a kind, the switch for the browser's
// noise suppression and echo cancellation, and the background blur's (so the
// camera is blurred from its first frame). The choice is remembered and used
// by every capture (media.js).

import { blurWanted, canBlur } from './blur.js';
import { chooseDevices, chosenDevices, listDevices } from './media.js';
import { field, h, toggle } from './dom.js';

/** Returns {el}: the pickers, filled in once the browser lists its devices. */
export function createDevicePicker() {
  const clean = toggle('Noise suppression', chosenDevices().cleanAudio,
    (on) => chooseDevices({ cleanAudio: on }),
    'The browser filters background noise and echo from your microphone. Turn off for music.');
  const blur = canBlur()
    ? toggle('Blur background', blurWanted(), (on) => chooseDevices({ blur: on }),
      'Your camera\'s background is blurred on this device before it is sent; you stay sharp.')
    : null;
  const pickersBox = h('div', { class: 'device-picker', hidden: true });
  const el = h('div', { class: 'device-settings' }, pickersBox, clean.label, blur?.label);
  (async () => {
    let devices;
    try {
      devices = await listDevices();
    } catch {
      return;
    }
    const chosen = chosenDevices();
    const pickers = [];
    for (const [kind, label, noun] of [['audio', 'Microphone device', 'Microphone'], ['video', 'Camera device', 'Camera']]) {
      const list = devices[kind].filter((d) => d.id);
      if (list.length < 2) continue;
      const select = h('select', {},
        ...list.map((d, i) => h('option', { value: d.id, text: d.label || `${noun} ${i + 1}`, selected: d.id === chosen[kind] })));
      select.addEventListener('change', () => chooseDevices({ [kind]: select.value }));
      pickers.push(field(label, select));
    }
    if (pickers.length) {
      pickersBox.replaceChildren(...pickers);
      pickersBox.hidden = false;
    }
  })();
  return { el };
}
