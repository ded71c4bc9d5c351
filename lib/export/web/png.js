// An 8-bit greyscale PNG encoder for the exported page's mask download: `predict` writes its
// masks as 1-channel 0/255 PNGs and the page offers the same file. A canvas's `toBlob` would
// give an RGBA PNG, so the page writes the few chunks itself; the zlib stream comes from the
// browser's CompressionStream("deflate"), which is zlib-wrapped deflate, what IDAT holds.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (PNG's) of the byte arrays in order. @param {Uint8Array[]} parts */
function crc32(...parts) {
  let c = 0xffffffff;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) c = CRC_TABLE[(c ^ p[i]) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * One chunk: length, type, data, CRC of type and data.
 * @param {string} type
 * @param {Uint8Array} data
 */
function chunk(type, data) {
  const t = new TextEncoder().encode(type);
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set(t, 4);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(t, data));
  return out;
}

/** zlib-wrapped deflate of `data`. @param {Uint8Array} data */
async function deflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * A greyscale 8-bit PNG of `data` (width * height samples, row-major).
 * @param {number} width
 * @param {number} height
 * @param {Uint8Array} data
 * @returns {Promise<Uint8Array>}
 */
export async function encodeGreyPng(width, height, data) {
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // colour type: greyscale
  // ihdr[10..12]: deflate, adaptive filtering, no interlace (all 0).
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) {
    // Filter type 0 (none) per row: masks compress well as they are.
    raw.set(data.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const parts = [
    Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
    chunk("IHDR", ihdr),
    chunk("IDAT", await deflate(raw)),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
