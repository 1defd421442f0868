// RFC 2198 RED payloads as Chromium builds them around Opus ("audio/red"):
// redundant blocks (4-byte headers: F bit, payload type, 14-bit timestamp
// offset, 10-bit length), then the primary (1-byte header, the rest of the
// payload). The E2EE worker encrypts each block on its own and keeps these
// headers clear, so the server can give a member without RED the primary
// block alone as an Opus frame (crates/conclave-media/src/red.rs). Only
// metadata is clear: block sizes (the packet size tells about as much) and
// how far back each copy reaches.

const MAX_BLOCK = 1023;
const MAX_OFFSET = 0x3fff;

/**
 * The blocks of a RED payload, oldest first and the primary last:
 * [{ pt, offset, data }], or null if `bytes` is not a well-formed RED payload.
 */
export function parseRed(bytes) {
  const heads = [];
  let i = 0;
  for (;;) {
    if (i >= bytes.length) return null;
    const first = bytes[i];
    if ((first & 0x80) === 0) {
      heads.push({ pt: first & 0x7f, offset: 0, len: null });
      i += 1;
      break;
    }
    if (i + 4 > bytes.length || heads.length >= 8) return null;
    heads.push({
      pt: first & 0x7f,
      offset: (bytes[i + 1] << 6) | (bytes[i + 2] >> 2),
      len: ((bytes[i + 2] & 0x03) << 8) | bytes[i + 3],
    });
    i += 4;
  }
  const blocks = [];
  for (const h of heads) {
    const end = h.len === null ? bytes.length : i + h.len;
    if (end > bytes.length) return null;
    blocks.push({ pt: h.pt, offset: h.offset, data: bytes.subarray(i, end) });
    i = end;
  }
  return blocks;
}

/**
 * A RED payload of `blocks` (oldest first, primary last). Redundant blocks
 * that no longer fit RED's length or offset fields are left out: the primary
 * always goes.
 */
export function buildRed(blocks) {
  const kept = blocks.filter((b, n) => n === blocks.length - 1 || (b.data.length <= MAX_BLOCK && b.offset <= MAX_OFFSET));
  const size = kept.reduce((sum, b, n) => sum + b.data.length + (n === kept.length - 1 ? 1 : 4), 0);
  const out = new Uint8Array(size);
  let i = 0;
  kept.forEach((b, n) => {
    if (n === kept.length - 1) {
      out[i++] = b.pt & 0x7f;
      return;
    }
    out[i++] = 0x80 | (b.pt & 0x7f);
    out[i++] = (b.offset >> 6) & 0xff;
    out[i++] = ((b.offset & 0x3f) << 2) | ((b.data.length >> 8) & 0x03);
    out[i++] = b.data.length & 0xff;
  });
  for (const b of kept) {
    out.set(b.data, i);
    i += b.data.length;
  }
  return out;
}
