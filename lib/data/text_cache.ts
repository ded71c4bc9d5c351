/**
 * On-disk cache of text features. Text embeddings are deterministic per description
 * (lvit-reference.md 4.4), so each distinct (encoder, settings, text) is computed once and read
 * back bitwise afterwards.
 *
 * File format (`<sha256>.f32`): a 16-byte little-endian header (magic "LTF1", value count,
 * FNV-1a of the payload bytes, 0) followed by the float32 values. The checksum lets a truncated or
 * damaged file be detected and recomputed instead of feeding garbage to training. Files are
 * written to a temporary name and renamed into place, so a concurrent reader or a crash never
 * sees a half-written file.
 */

import { writeAtomic } from "../io/atomic.ts";
import { BoundedReadError, readFileBounded } from "../io/bounded.ts";
import { fnv1a, sha256Hex } from "./hash.ts";

const MAGIC = 0x3146544c; // "LTF1" read as a little-endian u32
const HEADER = 16;

/** Options of `getOrCompute`. */
export interface TextCacheOptions {
  /** When set, a cached or computed array of another length is rejected. */
  expectedLength?: number;
}

/**
 * Hex SHA-256 of the key parts. Parts are JSON-encoded as one array so that ("ab", "c") and
 * ("a", "bc") give different keys.
 */
export async function cacheKey(parts: readonly (string | number | boolean)[]): Promise<string> {
  return await sha256Hex(JSON.stringify(parts));
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Serialises values with the header described in the module comment. */
export function encodeCacheFile(values: Float32Array): Uint8Array {
  const out = new Uint8Array(HEADER + values.length * 4);
  const view = new DataView(out.buffer);
  // Byte copy on little-endian hosts keeps every bit (NaN payloads included).
  if (littleEndian) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), HEADER);
  } else for (let i = 0; i < values.length; i++) view.setFloat32(HEADER + 4 * i, values[i], true);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, values.length, true);
  view.setUint32(8, fnv1a(out.subarray(HEADER)), true);
  view.setUint32(12, 0, true);
  return out;
}

/** Parses a cache file; null when it is not a complete, intact one. */
export function decodeCacheFile(bytes: Uint8Array): Float32Array | null {
  if (bytes.length < HEADER) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return null;
  const n = view.getUint32(4, true);
  if (bytes.length !== HEADER + 4 * n) return null;
  const payload = bytes.subarray(HEADER);
  if (fnv1a(payload) !== view.getUint32(8, true)) return null;
  const out = new Float32Array(n);
  if (littleEndian) new Uint8Array(out.buffer).set(payload);
  else for (let i = 0; i < n; i++) out[i] = view.getFloat32(HEADER + 4 * i, true);
  return out;
}

/**
 * A cache file larger than this is not one of ours (64 MiB: BERT's 768 x 512 tokens are 1.5 MiB)
 * unless the caller says how long the values are.
 */
const MAX_CACHE_BYTES = 64 * 2 ** 20;

/**
 * The file's bytes, or null when it is missing, or is not a regular file or longer than a
 * cache file of `maxBytes` can be (then it is recomputed and replaced, never read).
 */
async function readIfPresent(path: string, maxBytes: number): Promise<Uint8Array | null> {
  try {
    return await readFileBounded(path, maxBytes, "text cache files");
  } catch (e) {
    if (e instanceof BoundedReadError) return null;
    throw e;
  }
}

/**
 * Returns the features for `keyParts` (e.g. [encoder id, model, settings..., text]) from `dir`,
 * or computes them with `compute`, stores them atomically and returns them. A missing, corrupt or
 * wrong-length file is recomputed and overwritten.
 */
export async function getOrCompute(
  dir: string,
  keyParts: readonly (string | number | boolean)[],
  compute: () => Float32Array | Promise<Float32Array>,
  options: TextCacheOptions = {},
): Promise<Float32Array> {
  const path = `${dir}/${await cacheKey(keyParts)}.f32`;
  const max = options.expectedLength === undefined
    ? MAX_CACHE_BYTES
    : HEADER + 4 * options.expectedLength;
  const bytes = await readIfPresent(path, max);
  if (bytes !== null) {
    const cached = decodeCacheFile(bytes);
    if (
      cached !== null &&
      (options.expectedLength === undefined || cached.length === options.expectedLength)
    ) return cached;
  }
  const values = await compute();
  if (options.expectedLength !== undefined && values.length !== options.expectedLength) {
    throw new RangeError(
      `text cache: computed ${values.length} values, expected ${options.expectedLength}`,
    );
  }
  // A unique temporary name per writer, so concurrent writers of one key never interleave.
  await writeAtomic(path, encodeCacheFile(values));
  return values;
}
