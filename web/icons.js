// Line icons as SVG built node by node (no markup strings). Shapes after
// Feather Icons (MIT licence), 24x24, stroked with the current colour.

const SVG_NS = 'http://www.w3.org/2000/svg';

const SHAPES = {
  mic: [
    ['path', { d: 'M12 2a3 3 0 0 0-3 3v7a3 3 0 0 0 6 0V5a3 3 0 0 0-3-3z' }],
    ['path', { d: 'M19 10v2a7 7 0 0 1-14 0v-2' }],
    ['line', { x1: 12, y1: 19, x2: 12, y2: 23 }],
    ['line', { x1: 8, y1: 23, x2: 16, y2: 23 }],
  ],
  micOff: [
    ['line', { x1: 1, y1: 1, x2: 23, y2: 23 }],
    ['path', { d: 'M9 9v3a3 3 0 0 0 5.12 2.12M15 9.34V4a3 3 0 0 0-5.94-.6' }],
    ['path', { d: 'M17 16.95A7 7 0 0 1 5 12v-2m14 0v2a7 7 0 0 1-.11 1.23' }],
    ['line', { x1: 12, y1: 19, x2: 12, y2: 23 }],
    ['line', { x1: 8, y1: 23, x2: 16, y2: 23 }],
  ],
  video: [
    ['polygon', { points: '23 7 16 12 23 17 23 7' }],
    ['rect', { x: 1, y: 5, width: 15, height: 14, rx: 2, ry: 2 }],
  ],
  videoOff: [
    ['path', { d: 'M16 16v1a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h2m5.66 0H14a2 2 0 0 1 2 2v3.34l1 1L23 7v10' }],
    ['line', { x1: 1, y1: 1, x2: 23, y2: 23 }],
  ],
  screen: [
    ['rect', { x: 2, y: 3, width: 20, height: 14, rx: 2, ry: 2 }],
    ['line', { x1: 8, y1: 21, x2: 16, y2: 21 }],
    ['line', { x1: 12, y1: 17, x2: 12, y2: 21 }],
    ['polyline', { points: '9 10 12 7 15 10' }],
    ['line', { x1: 12, y1: 7, x2: 12, y2: 13 }],
  ],
  screenOff: [
    ['rect', { x: 2, y: 3, width: 20, height: 14, rx: 2, ry: 2 }],
    ['line', { x1: 8, y1: 21, x2: 16, y2: 21 }],
    ['line', { x1: 12, y1: 17, x2: 12, y2: 21 }],
    ['line', { x1: 9, y1: 7, x2: 15, y2: 13 }],
    ['line', { x1: 15, y1: 7, x2: 9, y2: 13 }],
  ],
  leave: [
    ['path', { d: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4' }],
    ['polyline', { points: '16 17 21 12 16 7' }],
    ['line', { x1: 21, y1: 12, x2: 9, y2: 12 }],
  ],
  phoneOff: [
    ['path', { d: 'M10.68 13.31a16 16 0 0 0 3.41 2.6l1.27-1.27a2 2 0 0 1 2.11-.45 12.84 12.84 0 0 0 2.81.7 2 2 0 0 1 1.72 2v3a2 2 0 0 1-2.18 2 19.79 19.79 0 0 1-8.63-3.07 19.42 19.42 0 0 1-3.33-2.67m-2.67-3.34a19.79 19.79 0 0 1-3.07-8.63A2 2 0 0 1 4.11 2h3a2 2 0 0 1 2 1.72 12.84 12.84 0 0 0 .7 2.81 2 2 0 0 1-.45 2.11L8.09 9.91' }],
    ['line', { x1: 23, y1: 1, x2: 1, y2: 23 }],
  ],
  users: [
    ['path', { d: 'M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2' }],
    ['circle', { cx: 9, cy: 7, r: 4 }],
    ['path', { d: 'M23 21v-2a4 4 0 0 0-3-3.87' }],
    ['path', { d: 'M16 3.13a4 4 0 0 1 0 7.75' }],
  ],
  chat: [
    ['path', { d: 'M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z' }],
  ],
  lock: [
    ['rect', { x: 3, y: 11, width: 18, height: 11, rx: 2, ry: 2 }],
    ['path', { d: 'M7 11V7a5 5 0 0 1 10 0v4' }],
  ],
  unlock: [
    ['rect', { x: 3, y: 11, width: 18, height: 11, rx: 2, ry: 2 }],
    ['path', { d: 'M7 11V7a5 5 0 0 1 9.9-1' }],
  ],
  shield: [
    ['path', { d: 'M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z' }],
  ],
  x: [
    ['line', { x1: 18, y1: 6, x2: 6, y2: 18 }],
    ['line', { x1: 6, y1: 6, x2: 18, y2: 18 }],
  ],
  check: [
    ['polyline', { points: '20 6 9 17 4 12' }],
  ],
  copy: [
    ['rect', { x: 9, y: 9, width: 13, height: 13, rx: 2, ry: 2 }],
    ['path', { d: 'M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1' }],
  ],
  edit: [
    ['path', { d: 'M12 20h9' }],
    ['path', { d: 'M16.5 3.5a2.121 2.121 0 0 1 3 3L7 19l-4 1 1-4L16.5 3.5z' }],
  ],
  trash: [
    ['polyline', { points: '3 6 5 6 21 6' }],
    ['path', { d: 'M19 6l-1 14a2 2 0 0 1-2 2H8a2 2 0 0 1-2-2L5 6m3 0V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2' }],
  ],
  play: [
    ['polygon', { points: '6 3 20 12 6 21 6 3' }],
  ],
  plus: [
    ['line', { x1: 12, y1: 5, x2: 12, y2: 19 }],
    ['line', { x1: 5, y1: 12, x2: 19, y2: 12 }],
  ],
  userX: [
    ['path', { d: 'M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2' }],
    ['circle', { cx: 8.5, cy: 7, r: 4 }],
    ['line', { x1: 18, y1: 8, x2: 23, y2: 13 }],
    ['line', { x1: 23, y1: 8, x2: 18, y2: 13 }],
  ],
  star: [
    ['polygon', { points: '12 2 15.09 8.26 22 9.27 17 14.14 18.18 21.02 12 17.77 5.82 21.02 7 14.14 2 9.27 8.91 8.26 12 2' }],
  ],
  pause: [
    ['circle', { cx: 12, cy: 12, r: 10 }],
    ['line', { x1: 10, y1: 15, x2: 10, y2: 9 }],
    ['line', { x1: 14, y1: 15, x2: 14, y2: 9 }],
  ],
  send: [
    ['line', { x1: 22, y1: 2, x2: 11, y2: 13 }],
    ['polygon', { points: '22 2 15 22 11 13 2 9 22 2' }],
  ],
  link: [
    ['path', { d: 'M10 13a5 5 0 0 0 7.54.54l3-3a5 5 0 0 0-7.07-7.07l-1.72 1.71' }],
    ['path', { d: 'M14 11a5 5 0 0 0-7.54-.54l-3 3a5 5 0 0 0 7.07 7.07l1.71-1.71' }],
  ],
  alert: [
    ['path', { d: 'M10.29 3.86L1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z' }],
    ['line', { x1: 12, y1: 9, x2: 12, y2: 13 }],
    ['line', { x1: 12, y1: 17, x2: 12.01, y2: 17 }],
  ],
  clock: [
    ['circle', { cx: 12, cy: 12, r: 10 }],
    ['polyline', { points: '12 6 12 12 16 14' }],
  ],
  arrowLeft: [
    ['line', { x1: 19, y1: 12, x2: 5, y2: 12 }],
    ['polyline', { points: '12 19 5 12 12 5' }],
  ],
  volume: [
    ['polygon', { points: '11 5 6 9 2 9 2 15 6 15 11 19 11 5' }],
    ['path', { d: 'M15.54 8.46a5 5 0 0 1 0 7.07' }],
  ],
  // Hands, reactions and polls.
  hand: [
    ['path', { d: 'M8 12V6.5a1.5 1.5 0 0 1 3 0V11' }],
    ['path', { d: 'M11 10.5V4.5a1.5 1.5 0 0 1 3 0V11' }],
    ['path', { d: 'M14 10.5V6a1.5 1.5 0 0 1 3 0v5' }],
    ['path', { d: 'M17 11V9a1.5 1.5 0 0 1 3 0v5a8 8 0 0 1-8 8h-.5a6 6 0 0 1-5-2.7L3.8 15.6a1.6 1.6 0 0 1 2.6-1.9L8 15.5V12' }],
  ],
  // A person in front of a dotted (blurred) background.
  blur: [
    ['circle', { cx: 12, cy: 9, r: 3 }],
    ['path', { d: 'M6.5 19a5.5 5.5 0 0 1 11 0' }],
    ['line', { x1: 3, y1: 5, x2: 3.01, y2: 5 }],
    ['line', { x1: 3, y1: 12, x2: 3.01, y2: 12 }],
    ['line', { x1: 3, y1: 19, x2: 3.01, y2: 19 }],
    ['line', { x1: 21, y1: 5, x2: 21.01, y2: 5 }],
    ['line', { x1: 21, y1: 12, x2: 21.01, y2: 12 }],
    ['line', { x1: 21, y1: 19, x2: 21.01, y2: 19 }],
  ],
  smile: [
    ['circle', { cx: 12, cy: 12, r: 10 }],
    ['path', { d: 'M8 14.5a4.5 4.5 0 0 0 8 0' }],
    ['line', { x1: 9, y1: 9.5, x2: 9.01, y2: 9.5 }],
    ['line', { x1: 15, y1: 9.5, x2: 15.01, y2: 9.5 }],
  ],
  poll: [
    ['line', { x1: 6, y1: 20, x2: 6, y2: 13 }],
    ['line', { x1: 12, y1: 20, x2: 12, y2: 4 }],
    ['line', { x1: 18, y1: 20, x2: 18, y2: 9 }],
  ],
};

/** An icon by name; decorative (aria-hidden) since its button or badge carries the name. */
export function icon(name, className = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', className);
  for (const [tag, attrs] of SHAPES[name] || []) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
  }
  return svg;
}

/** The Conclave mark: four tiles, one lit. */
export function logo() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 32 32');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', 'logo-mark');
  const tiles = [
    [3, 3, 'logo-a'], [17, 3, 'logo-b'], [3, 17, 'logo-b'], [17, 17, 'logo-c'],
  ];
  for (const [x, y, cls] of tiles) {
    const r = document.createElementNS(SVG_NS, 'rect');
    r.setAttribute('x', String(x));
    r.setAttribute('y', String(y));
    r.setAttribute('width', '12');
    r.setAttribute('height', '12');
    r.setAttribute('rx', '3.5');
    r.setAttribute('class', cls);
    svg.append(r);
  }
  return svg;
}
