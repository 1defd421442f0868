// The join page's device choice: a camera and a microphone picker, shown when
// the browser lists more than one of a kind. The choice is remembered and used
// by every capture (media.js).

import { chooseDevices, chosenDevices, listDevices } from './media.js';
import { field, h } from './dom.js';

/** Returns {el}: the pickers, filled in once the browser lists its devices. */
export function createDevicePicker() {
  const el = h('div', { class: 'device-picker', hidden: true });
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
      el.replaceChildren(...pickers);
      el.hidden = false;
    }
  })();
  return { el };
}
