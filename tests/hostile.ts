/**
 * Builders of hostile files for the input-limit and fuzz tests: deflate streams that inflate
 * to any number of zero bytes (built in milliseconds, about 160:1, without compressing
 * anything), PNGs with any header, and zip archives whose declared sizes and CRCs say whatever
 * the test wants. Written independently of the readers under test (lib/data/zip.ts).
 */

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 as zip and PNG use it. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A raw deflate stream (RFC 1951) that inflates to `n` zero bytes: one fixed-Huffman block of a
 * literal 0, then copies of length 258 at distance 1 (13 bits per 258 bytes), then literals.
 */
export function deflateZeros(n: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((3 + 8 * 258 + 13 * Math.ceil(n / 258) + 7) / 8) + 8);
  let bitPos = 0;
  // Bits go in least-significant first; Huffman codes are sent most-significant bit first.
  const put = (value: number, len: number) => {
    for (let i = 0; i < len; i++) {
      if ((value >> i) & 1) out[bitPos >> 3] |= 1 << (bitPos & 7);
      bitPos++;
    }
  };
  const code = (c: number, len: number) => {
    for (let i = len - 1; i >= 0; i--) put((c >> i) & 1, 1);
  };
  put(1, 1); // BFINAL
  put(1, 2); // BTYPE 01: fixed Huffman
  let left = n;
  if (left > 0) {
    code(0x30, 8); // literal 0
    left--;
  }
  while (left >= 258) {
    code(0xc5, 8); // length symbol 285: 258 bytes
    code(0, 5); // distance code 0: distance 1
    left -= 258;
  }
  for (; left > 0; left--) code(0x30, 8);
  code(0, 7); // end of block (256)
  return out.subarray(0, Math.ceil(bitPos / 8));
}

/**
 * A raw deflate block holding `data` stored (at most 65535 bytes); not final, so that another
 * block (e.g. {@link deflateZeros}) can follow: the two together inflate to `data` and then
 * the zeros.
 */
export function storedBlock(data: Uint8Array): Uint8Array {
  const head = new Uint8Array([0, data.length & 255, data.length >> 8, ~data.length & 255, 0]);
  head[4] = (~data.length >> 8) & 255;
  return concat([head, data]);
}

/** {@link deflateZeros} in a zlib wrapper (as PNG's IDAT holds it). */
export function zlibZeros(n: number): Uint8Array {
  const body = deflateZeros(n);
  // Adler-32 of n zeros: A stays 1, B adds 1 per byte.
  const adler = ((n % 65521) * 65536 + 1) >>> 0;
  const tail = new Uint8Array(4);
  new DataView(tail.buffer).setUint32(0, adler);
  return concat([new Uint8Array([0x78, 0x01]), body, tail]);
}

/** One PNG chunk with its CRC. */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * A PNG of `width` x `height` (bit depth, colour type as in IHDR) whose pixels are all zero,
 * every row filter None: the whole image really is in the file, at about 160:1.
 */
export function zeroPng(width: number, height: number, depth: number, colour: number): Uint8Array {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour as 0 | 2 | 3 | 4 | 6];
  const rowBytes = 1 + Math.ceil((width * channels * depth) / 8);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = depth;
  ihdr[9] = colour;
  return concat([
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", zlibZeros(rowBytes * height)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

/** An entry of {@link zipFile}: its bytes as stored, and what the archive claims about them. */
export interface RawZipEntry {
  name: string;
  /** 0 stored, 8 deflate (`data` is then raw deflate). */
  method: 0 | 8;
  data: Uint8Array;
  /** The declared uncompressed size. */
  size: number;
  /** The declared CRC-32. */
  crc: number;
}

/** A zip archive of `entries` exactly as given (local headers, central directory, end record). */
export function zipFile(entries: RawZipEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const local = new Uint8Array(30 + name.length);
    const l = new DataView(local.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, 20, true);
    l.setUint16(8, e.method, true);
    l.setUint32(14, e.crc, true);
    l.setUint32(18, e.data.length, true);
    l.setUint32(22, e.size, true);
    l.setUint16(26, name.length, true);
    local.set(name, 30);
    const central = new Uint8Array(46 + name.length);
    const c = new DataView(central.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, 20, true);
    c.setUint16(6, 20, true);
    c.setUint16(10, e.method, true);
    c.setUint32(16, e.crc, true);
    c.setUint32(20, e.data.length, true);
    c.setUint32(24, e.size, true);
    c.setUint16(28, name.length, true);
    c.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local, e.data);
    centrals.push(central);
    offset += local.length + e.data.length;
  }
  const cd = concat(centrals);
  const end = new Uint8Array(22);
  const d = new DataView(end.buffer);
  d.setUint32(0, 0x06054b50, true);
  d.setUint16(8, entries.length, true);
  d.setUint16(10, entries.length, true);
  d.setUint32(12, cd.length, true);
  d.setUint32(16, offset, true);
  return concat([...locals, cd, end]);
}

/** A stored (uncompressed) entry with its true size and CRC. */
export function storedEntry(name: string, text: string): RawZipEntry {
  const data = new TextEncoder().encode(text);
  return { name, method: 0, data, size: data.length, crc: crc32(data) };
}

/** The workbook part and a one-sheet xlsx around `sheetXml` (inline strings need no table). */
export const WORKBOOK = `<workbook><sheets><sheet name="s" sheetId="1"/></sheets></workbook>`;

/** A sheet of inline-string cells, row 1 the header. */
export function inlineSheet(rows: string[][]): string {
  const cell = (v: string) => `<c t="inlineStr"><is><t>${v}</t></is></c>`;
  return `<worksheet><sheetData>${
    rows.map((r, i) => `<row r="${i + 1}">${r.map(cell).join("")}</row>`).join("")
  }</sheetData></worksheet>`;
}
