/**
 * A zip reader for the xlsx text tables, written for hostile files (fflate's `unzipSync`
 * trusts the sizes an archive declares: an entry that inflates to more than it declares runs
 * the inflater over all of it, and one that inflates to less comes back zero-padded, both
 * without an error, and no CRC is checked).
 *
 * - The central directory is the index: every offset and size is checked against the file
 *   before it is used, names are kept in a Map (a `__proto__` entry is just a name), a name
 *   listed twice, ZIP64 records, encryption and methods other than stored and deflate are
 *   refused.
 * - An entry is inflated only when asked for, and only if its declared size fits the caller's
 *   byte budget (a zip bomb declares hundreds of MiB per entry and is refused before any
 *   inflating).
 * - Inflating is streamed in small pieces into a buffer of the declared size and stops as soon
 *   as the output would pass it, so a lying entry costs no more time or memory than its
 *   declared size; then the actual size must equal the declared one and the CRC-32 must match.
 */
import { Inflate } from "../deps.ts";
import { DataError } from "./errors.ts";

/** One entry of the central directory. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate. */
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  /** The uncompressed size the archive declares. */
  size: number;
  /** Offset of the entry's local header. */
  localOffset: number;
}

/** A byte budget shared by the entries read from one archive. */
export interface ZipBudget {
  /** Bytes that may still be inflated. */
  left: number;
  /** The budget's total and what it is for, for messages ("32 MiB for one xlsx"). */
  describe: string;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
/** Compressed bytes handed to the inflater at a time: bounds one step's output (~1032x). */
const PIECE = 4096;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zip uses) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Reads the central directory of a zip archive held in memory.
 * @param where the file, for error messages
 * @throws DataError when it is not a zip or its directory is inconsistent with the file
 */
export function readZipDirectory(bytes: Uint8Array, where: string): Map<string, ZipEntry> {
  const bad = (why: string): never => {
    throw new DataError(where, `not a readable xlsx (zip) file: ${why}`);
  };
  const len = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  // The end record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
  let e = -1;
  for (let i = len - 22; i >= 0 && i >= len - 22 - 65535; i--) {
    if (u32(i) === EOCD) {
      e = i;
      break;
    }
  }
  if (e < 0) bad("no end of central directory record");
  const count = u16(e + 10), cdSize = u32(e + 12), cdOffset = u32(e + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    bad("ZIP64 archives are not supported (an xlsx text table is far smaller than 4 GiB)");
  }
  if (u16(e + 4) !== 0 || u16(e + 6) !== 0 || u16(e + 8) !== count) {
    bad("multi-part (spanned) archives are not supported");
  }
  if (cdOffset + cdSize > e) {
    bad(`the central directory (${cdSize} bytes at ${cdOffset}) runs past its end record`);
  }
  if (count * 46 > cdSize) bad(`${count} entries cannot fit a ${cdSize}-byte directory`);
  const entries = new Map<string, ZipEntry>();
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  let p = cdOffset;
  const end = cdOffset + cdSize;
  for (let i = 0; i < count; i++) {
    if (p + 46 > end || u32(p) !== CENTRAL) bad(`central directory entry ${i} is damaged`);
    const flags = u16(p + 8);
    const nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32);
    if (p + 46 + nameLen + extraLen + commentLen > end) {
      bad(`central directory entry ${i} runs past the directory`);
    }
    const raw = bytes.subarray(p + 46, p + 46 + nameLen);
    const name = (flags & 0x800 ? utf8 : latin1).decode(raw);
    const entry: ZipEntry = {
      name,
      method: u16(p + 10),
      flags,
      crc: u32(p + 16),
      compressedSize: u32(p + 20),
      size: u32(p + 24),
      localOffset: u32(p + 42),
    };
    if (entries.has(name)) bad(`the entry ${name} is listed twice`);
    entries.set(name, entry);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/**
 * Inflates one entry (see the module comment), charging its declared size to `budget`.
 * @throws DataError naming the entry when it does not fit the budget, lies about its size,
 *   fails its CRC-32, or is damaged
 */
export function readZipEntry(
  bytes: Uint8Array,
  entry: ZipEntry,
  where: string,
  budget: ZipBudget,
): Uint8Array {
  const bad = (why: string): never => {
    throw new DataError(where, `zip part ${entry.name} ${why}`);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { localOffset: lo, compressedSize: csize, size } = entry;
  if (entry.flags & 1) bad("is encrypted");
  if (entry.method !== 0 && entry.method !== 8) {
    bad(`uses compression method ${entry.method} (only stored and deflate are read)`);
  }
  if (size > budget.left) {
    bad(
      `declares ${size} bytes uncompressed, more than the ${budget.left} left of the ` +
        `${budget.describe} (a zip bomb?)`,
    );
  }
  if (lo + 30 > bytes.length || dv.getUint32(lo, true) !== LOCAL) {
    bad(`has no local header at byte ${lo}`);
  }
  const start = lo + 30 + dv.getUint16(lo + 26, true) + dv.getUint16(lo + 28, true);
  if (start + csize > bytes.length) {
    bad(`data (${csize} bytes at byte ${start}) runs past the end of the file`);
  }
  const data = bytes.subarray(start, start + csize);
  let out: Uint8Array;
  if (entry.method === 0) {
    if (csize !== size) bad(`is stored with ${csize} bytes but declares ${size}`);
    out = data.slice();
  } else {
    out = new Uint8Array(size);
    let n = 0;
    let over = false;
    const inflater = new Inflate((chunk: Uint8Array) => {
      if (over) return;
      if (n + chunk.length > size) {
        over = true;
        return;
      }
      out.set(chunk, n);
      n += chunk.length;
    });
    try {
      for (let off = 0; off < csize && !over; off += PIECE) {
        inflater.push(data.subarray(off, Math.min(off + PIECE, csize)), off + PIECE >= csize);
      }
      if (csize === 0) inflater.push(new Uint8Array(0), true);
    } catch (e) {
      bad(`is damaged: its deflate data does not inflate (${(e as Error).message})`);
    }
    if (over) bad(`inflates to more than the ${size} bytes it declares`);
    if (n !== size) bad(`inflates to ${n} bytes but declares ${size}`);
  }
  budget.left -= size;
  const crc = crc32(out);
  if (crc !== entry.crc) {
    bad(
      `fails its CRC-32 check (0x${crc.toString(16).padStart(8, "0")}, the archive says ` +
        `0x${entry.crc.toString(16).padStart(8, "0")}): the file is damaged`,
    );
  }
  return out;
}
