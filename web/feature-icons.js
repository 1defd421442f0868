// Line icons for hands, reactions and polls, drawn for this client in the
// style of icons.js (24x24, stroked with the current colour, built node by
// node), kept apart so that file stays as it is.

const SVG_NS = 'http://www.w3.org/2000/svg';

const SHAPES = {
  hand: [
    ['path', { d: 'M8 12V6.5a1.5 1.5 0 0 1 3 0V11' }],
    ['path', { d: 'M11 10.5V4.5a1.5 1.5 0 0 1 3 0V11' }],
    ['path', { d: 'M14 10.5V6a1.5 1.5 0 0 1 3 0v5' }],
    ['path', { d: 'M17 11V9a1.5 1.5 0 0 1 3 0v5a8 8 0 0 1-8 8h-.5a6 6 0 0 1-5-2.7L3.8 15.6a1.6 1.6 0 0 1 2.6-1.9L8 15.5V12' }],
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

export function featureIcon(name, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', cls);
  for (const [tag, attrs] of SHAPES[name] || []) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
  }
  return svg;
}
