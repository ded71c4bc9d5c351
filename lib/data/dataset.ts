/**
 * Decoded-tensor cache and streamed loading for the LViT data sets, so an epoch does not decode
 * 1000x1000 PNGs and TIFFs again: the first open decodes and preprocesses every sample once
 * (exactly as `loadSample` in lvit_folder.ts) and stores the result; later opens only read it back.
 *
 * What is stored is 8-bit: the resized image is uint8 before the reference divides by 255, and
 * the mask is {0, 1}; so a sample at 224 is 4 x 224 x 224 bytes (196 KiB) instead of 784 KiB of
 * float32, and reads expand to float32 with a 256-entry table whose values are the same float64
 * `v / 255` rounded to float32 that `toChwUnit` produces, hence bitwise equal to loadSample.
 *
 * Cache layout: `${cacheDir}/decoded/<fingerprint>-<size>/<split>.bin`, where the fingerprint
 * ({@link datasetFingerprint}) covers the listing, file sizes and mtimes, texts and
 * {@link PREPROCESS_VERSION}: any change to the data or the preprocessing selects a new folder
 * rather than reusing stale tensors. File format (little-endian):
 *
 * ```
 * 0   u32 magic "LVD1"        16  u32 record bytes (4 * size * size)
 * 4   u32 format version      20  u32 FNV-1a of the checksum table
 * 8   u32 n (samples)         24  64 ASCII hex: the fingerprint
 * 12  u32 size                88  8 bytes zero
 * 96  n x u32 FNV-1a of each record
 * 96 + 4n  n records: image CHW uint8 (BGR, 3 * size * size), then mask uint8 (size * size)
 * ```
 *
 * Files are written to a unique temporary name and renamed into place, so a crash or a
 * concurrent process never leaves a half-written cache under the real name. On open the header
 * and the exact length are checked, and a bad file is rebuilt with a log line; each record's
 * checksum is checked when it is read, and a damaged record is decoded again from its source
 * and patched in place.
 */
import { basename, join } from "node:path";
import { checkedListing } from "./check.ts";
import { datasetIdentity } from "./identity.ts";
import { DataError, describeError } from "./errors.ts";
import { fnv1a, sha256Hex } from "./hash.ts";
import {
  type DatasetKind,
  type LvitDataset,
  type LvitSample,
  readSamplePair,
  type Split,
  SPLITS,
} from "./lvit_folder.ts";
import { resizeLinear, toBgr8, toGray8 } from "./preprocess.ts";

/**
 * Names the preprocessing the cached bytes come from. It is part of every fingerprint, so
 * changing it (do so whenever preprocess.ts or the record layout changes what a sample
 * decodes to) makes every existing cache unreachable instead of silently stale.
 */
export const PREPROCESS_VERSION =
  "lvit-preprocess/1: IMREAD_COLOR BGR8 + IMREAD_GRAYSCALE, INTER_LINEAR float64 " +
  "saturate_cast, image CHW u8, mask > 0";

/** One split, ready for batching. */
export interface SplitData {
  /** Which split this is. */
  split: Split;
  /** Number of samples. */
  n: number;
  /** Side length of the preprocessed images and masks. */
  size: number;
  /** Mask file names (the text-table keys), in listing order. */
  keys: string[];
  /** The description of each sample, in the same order. */
  texts: string[];
  /**
   * Reads samples `indices` (preprocessed like loadSample: image 3 x size x size BGR / 255,
   * mask size x size {0, 1}) into the out arrays at k * 3 * size * size and k * size * size for
   * the k-th index. Streams from the on-disk cache (uint8) and does not hold the split in
   * memory. Calls on one split are served one after another.
   * @throws RangeError for an index out of range or out arrays too short
   * @throws DataError when a damaged cache record must be re-decoded and its source is bad
   */
  read(indices: readonly number[], outImages: Float32Array, outMasks: Float32Array): Promise<void>;
}

/** An opened data set: listing, fingerprint and the splits' readers. */
export interface OpenedDataset {
  /** The data set folder. */
  root: string;
  /** The naming rules the folder was read with. */
  kind: DatasetKind;
  /** Hex SHA-256 identifying the data and preprocessing ({@link datasetFingerprint}). */
  fingerprint: string;
  /** The data set's identity as runs record it (lib/data/identity.ts), from the same listing. */
  identity: string;
  /** The side, in pixels, every image and mask was resized to. */
  size: number;
  /** The reader of each split. */
  splits: Record<Split, SplitData>;
  /** Closes the cache files; reads afterwards fail. */
  close(): void;
}

/** Options of {@link openDataset}. */
export interface OpenOptions {
  /**
   * The cache root (decoded tensors go to `${cacheDir}/decoded/...`), or null to decode into
   * memory (uint8) for this process only.
   */
  cacheDir: string | null;
  /** Receives progress and cache events, one line each. */
  log?: (line: string) => void;
}

const MAGIC = 0x3144564c; // "LVD1" read as a little-endian u32
/**
 * 2: the layout of 1, but every record passed the pair check shared with data:check
 * (readSamplePair); files of format 1 may hold pairs it refuses, so they are rebuilt.
 */
const FORMAT = 2;
const HEADER = 96;
/** A decode progress line at most this often, so long first opens show life without floods. */
const PROGRESS_MS = 2000;

/** float32(v / 255) for every byte: the exact values `toChwUnit` writes. */
const UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

async function statFile(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    throw new DataError(path, `cannot stat: ${describeError(e)}`);
  }
}

/**
 * The identity of a listed data set as hex SHA-256: per split and sample the key, the image and
 * mask file names, their sizes and mtimes (ms), and the text; plus {@link PREPROCESS_VERSION}.
 * The root path and the naming kind are left out on purpose: moving the folder or reading
 * MosMed with the (identical) MoNuSeg rules yields the same tensors, so the same cache.
 * Replacing a file keeps its fingerprint only if size and mtime (to the ms) both stay the same.
 * @throws DataError when a listed file can no longer be stat'ed
 */
export async function datasetFingerprint(ds: LvitDataset): Promise<string> {
  const entries: unknown[] = [];
  for (const split of SPLITS) {
    for (const s of ds.splits[split]) {
      const [img, mask] = await Promise.all([statFile(s.imagePath), statFile(s.maskPath)]);
      entries.push([
        split,
        s.key,
        basename(s.imagePath),
        img.size,
        img.mtime?.getTime() ?? null,
        basename(s.maskPath),
        mask.size,
        mask.mtime?.getTime() ?? null,
        s.text,
      ]);
    }
  }
  return await sha256Hex(JSON.stringify({ version: PREPROCESS_VERSION, samples: entries }));
}

/**
 * Decodes one sample into a record: image CHW uint8 BGR then mask {0, 1}. The same steps as
 * preprocessImage / preprocessMask, stopped before the float conversion.
 */
async function decodeRecord(s: LvitSample, size: number, out: Uint8Array): Promise<void> {
  // The same decode and pair check as data:check (readSamplePair).
  const { image: img, mask } = await readSamplePair(s);
  const n = size * size;
  const bgr = resizeLinear(toBgr8(img), size, size).data;
  for (let i = 0; i < n; i++) {
    out[i] = bgr[3 * i];
    out[n + i] = bgr[3 * i + 1];
    out[2 * n + i] = bgr[3 * i + 2];
  }
  const grey = resizeLinear(toGray8(mask), size, size).data;
  for (let i = 0; i < n; i++) out[3 * n + i] = grey[i] > 0 ? 1 : 0;
}

/** Expands a record into float32 at image offset `io` and mask offset `mo`. */
function expand(
  rec: Uint8Array,
  size: number,
  img: Float32Array,
  io: number,
  m: Float32Array,
  mo: number,
) {
  const n3 = 3 * size * size;
  for (let i = 0; i < n3; i++) img[io + i] = UNIT[rec[i]];
  const n = size * size;
  for (let i = 0; i < n; i++) m[mo + i] = rec[n3 + i];
}

/** Where records come from: memory or a cache file. */
interface RecordSource {
  /** Fills `buf` with record `k`. */
  get(k: number, buf: Uint8Array): Promise<void>;
  close(): void;
}

/** Logs a decode progress line at most every {@link PROGRESS_MS}, and the first and last. */
function progress(log: (line: string) => void, what: string, n: number) {
  const start = performance.now();
  let last = start;
  return (done: number) => {
    const now = performance.now();
    if (done === n) {
      log(`${what}: ${n}/${n} samples decoded in ${((now - start) / 1000).toFixed(1)} s`);
    } else if (now - last >= PROGRESS_MS) {
      last = now;
      log(`${what}: ${done}/${n} samples decoded`);
    }
  };
}

async function memorySource(
  samples: LvitSample[],
  size: number,
  split: Split,
  log: (line: string) => void,
): Promise<RecordSource> {
  const rb = 4 * size * size;
  const all = new Uint8Array(samples.length * rb);
  log(`decoding ${split}: ${samples.length} samples at ${size}x${size} into memory (no cache)`);
  const tick = progress(log, `decoding ${split}`, samples.length);
  for (let k = 0; k < samples.length; k++) {
    await decodeRecord(samples[k], size, all.subarray(k * rb, (k + 1) * rb));
    tick(k + 1);
  }
  return {
    get: (k, buf) => {
      buf.set(all.subarray(k * rb, (k + 1) * rb));
      return Promise.resolve();
    },
    close: () => {},
  };
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await f.write(bytes.subarray(off));
}

async function readAll(f: Deno.FsFile, buf: Uint8Array): Promise<boolean> {
  for (let off = 0; off < buf.length;) {
    const n = await f.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

function header(n: number, size: number, fingerprint: string, table: Uint32Array): Uint8Array {
  const out = new Uint8Array(HEADER + 4 * n);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, FORMAT, true);
  dv.setUint32(8, n, true);
  dv.setUint32(12, size, true);
  dv.setUint32(16, 4 * size * size, true);
  out.set(new TextEncoder().encode(fingerprint), 24);
  for (let k = 0; k < n; k++) dv.setUint32(HEADER + 4 * k, table[k], true);
  dv.setUint32(20, fnv1a(out.subarray(HEADER)), true);
  return out;
}

/**
 * The checksum table of a valid cache file, or why it is not valid (wrong magic, version,
 * shape or fingerprint, a damaged table, or a length other than the header promises).
 */
async function validate(
  path: string,
  n: number,
  size: number,
  fingerprint: string,
): Promise<Uint32Array | string> {
  let f: Deno.FsFile;
  try {
    // Only a regular file is opened: opening a FIFO put in its place would block. What is read
    // below is bounded by the listing (the header of n samples, then the exact length checked).
    if (!(await Deno.stat(path)).isFile) return "not a regular file";
    f = await Deno.open(path, { read: true });
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? "not built yet" : `unreadable (${describeError(e)})`;
  }
  try {
    const len = (await f.stat()).size;
    const head = new Uint8Array(HEADER + 4 * n);
    if (len < head.length || !(await readAll(f, head))) return `truncated (${len} bytes)`;
    const dv = new DataView(head.buffer);
    if (dv.getUint32(0, true) !== MAGIC) return "not a decoded-tensor cache file (bad magic)";
    if (dv.getUint32(4, true) !== FORMAT) return `format ${dv.getUint32(4, true)}, not ${FORMAT}`;
    const [hn, hs, hr] = [8, 12, 16].map((o) => dv.getUint32(o, true));
    if (hn !== n || hs !== size || hr !== 4 * size * size) {
      return `holds ${hn} samples at ${hs}, expected ${n} at ${size}`;
    }
    if (new TextDecoder().decode(head.subarray(24, 88)) !== fingerprint) {
      return "fingerprint differs from its folder name";
    }
    if (fnv1a(head.subarray(HEADER)) !== dv.getUint32(20, true)) return "checksum table damaged";
    const want = head.length + n * 4 * size * size;
    if (len !== want) return `${len} bytes, expected ${want} (truncated or padded)`;
    const table = new Uint32Array(n);
    for (let k = 0; k < n; k++) table[k] = dv.getUint32(HEADER + 4 * k, true);
    return table;
  } catch (e) {
    return `unreadable (${describeError(e)})`;
  } finally {
    f.close();
  }
}

/**
 * Decodes a split into a new cache file: written under a unique temporary name, then renamed
 * over `path`. Source problems throw DataError; file-system problems throw as they are.
 */
async function build(
  path: string,
  samples: LvitSample[],
  size: number,
  fingerprint: string,
  split: Split,
  log: (line: string) => void,
): Promise<void> {
  const n = samples.length, rb = 4 * size * size;
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  const f = await Deno.open(tmp, { write: true, createNew: true });
  let closed = false;
  try {
    log(`decoding ${split}: ${n} samples at ${size}x${size} into ${path}`);
    const table = new Uint32Array(n);
    // Placeholder header: the checksums are known only after every record is written.
    await writeAll(f, new Uint8Array(HEADER + 4 * n));
    const rec = new Uint8Array(rb);
    const tick = progress(log, `decoding ${split}`, n);
    for (let k = 0; k < n; k++) {
      await decodeRecord(samples[k], size, rec);
      table[k] = fnv1a(rec);
      await writeAll(f, rec);
      tick(k + 1);
    }
    await f.seek(0, Deno.SeekMode.Start);
    await writeAll(f, header(n, size, fingerprint, table));
    await f.syncData();
    f.close();
    closed = true;
    await Deno.rename(tmp, path);
  } catch (e) {
    if (!closed) f.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Reads records from a validated cache file; re-decodes and patches a record that fails. */
async function fileSource(
  path: string,
  samples: LvitSample[],
  size: number,
  table: Uint32Array,
  log: (line: string) => void,
): Promise<RecordSource> {
  const n = samples.length, rb = 4 * size * size;
  const f = await Deno.open(path, { read: true });
  const base = HEADER + 4 * n;
  return {
    async get(k, buf) {
      await f.seek(base + k * rb, Deno.SeekMode.Start);
      if ((await readAll(f, buf)) && fnv1a(buf) === table[k]) return;
      log(
        `cache ${path}: record ${k} (${samples[k].key}) is damaged; decoding it again and ` +
          `repairing the file`,
      );
      await decodeRecord(samples[k], size, buf);
      if (fnv1a(buf) !== table[k]) {
        // The source no longer decodes to what was cached: the data changed under an unchanged
        // size and mtime. Serve the fresh decode; the file is left alone.
        log(`cache ${path}: ${samples[k].key} decodes differently now; not patching the cache`);
        return;
      }
      try {
        const w = await Deno.open(path, { write: true });
        try {
          await w.seek(base + k * rb, Deno.SeekMode.Start);
          await writeAll(w, buf);
        } finally {
          w.close();
        }
      } catch (e) {
        // A read-only cache still serves correct values; it is only slower for this record.
        log(`cache ${path}: cannot repair record ${k} (${describeError(e)})`);
      }
    },
    close: () => f.close(),
  };
}

/** The record source of one split: a valid cache file, a rebuilt one, or memory. */
async function openSource(
  dir: string | null,
  samples: LvitSample[],
  size: number,
  fingerprint: string,
  split: Split,
  log: (line: string) => void,
): Promise<RecordSource> {
  if (dir === null) return await memorySource(samples, size, split, log);
  const path = join(dir, `${split}.bin`);
  let table = await validate(path, samples.length, size, fingerprint);
  if (typeof table !== "string") {
    log(`${split}: ${samples.length} samples from cache ${path}`);
    return await fileSource(path, samples, size, table, log);
  }
  if (table !== "not built yet") log(`cache ${path}: ${table}; rebuilding it`);
  try {
    await Deno.mkdir(dir, { recursive: true });
    await build(path, samples, size, fingerprint, split, log);
    table = await validate(path, samples.length, size, fingerprint);
    if (typeof table === "string") throw new Error(`cache file just written is ${table}`);
    return await fileSource(path, samples, size, table, log);
  } catch (e) {
    if (e instanceof DataError) throw e;
    // No usable cache (read-only folder, full disk...): training still works from memory.
    log(`cache ${path}: cannot write (${describeError(e)}); decoding into memory instead`);
    return await memorySource(samples, size, split, log);
  }
}

/**
 * Lists an LViT data set and opens its decoded-tensor cache, building it on first use (see the
 * module comment). Every sample read later equals `loadSample` bitwise.
 * @param kind the naming rules
 * @param root the data set folder; default env `LVIT_DATA`
 * @param size side length of images and masks (224 in every LViT configuration)
 * @throws DataError for a bad data folder or an undecodable sample; RangeError for a bad size
 */
export async function openDataset(
  kind: DatasetKind,
  root: string | undefined,
  size: number,
  o: OpenOptions,
): Promise<OpenedDataset> {
  if (!Number.isInteger(size) || size < 1 || size > 16384) {
    throw new RangeError(`size must be an integer in [1, 16384], got ${size}`);
  }
  const log = o.log ?? (() => {});
  // The checks of data:check that need no decoding (lib/data/check.ts); decoding and the
  // pair checks follow when the cache is built, through the same functions.
  const ds = await checkedListing(kind, root, log);
  const [fingerprint, identity] = await Promise.all([datasetFingerprint(ds), datasetIdentity(ds)]);
  const dir = o.cacheDir === null ? null : join(o.cacheDir, "decoded", `${fingerprint}-${size}`);
  const sources: RecordSource[] = [];
  const splits = {} as Record<Split, SplitData>;
  let closed = false;
  try {
    for (const split of SPLITS) {
      const samples = ds.splits[split];
      const source = await openSource(dir, samples, size, fingerprint, split, log);
      sources.push(source);
      splits[split] = splitData(split, samples, size, source, () => closed);
    }
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }
  return {
    root: ds.root,
    kind,
    fingerprint,
    identity,
    size,
    splits,
    close() {
      if (closed) return;
      closed = true;
      for (const s of sources) s.close();
    },
  };
}

function splitData(
  split: Split,
  samples: LvitSample[],
  size: number,
  source: RecordSource,
  isClosed: () => boolean,
): SplitData {
  const n = samples.length, per = size * size, rb = 4 * per;
  const buf = new Uint8Array(rb);
  // One read at a time: the file position and `buf` are shared by every call on this split.
  let queue: Promise<unknown> = Promise.resolve();
  const readNow = async (indices: readonly number[], img: Float32Array, mask: Float32Array) => {
    if (isClosed()) throw new Error(`dataset closed: cannot read ${split}`);
    for (let j = 0; j < indices.length; j++) {
      await source.get(indices[j], buf);
      expand(buf, size, img, j * 3 * per, mask, j * per);
    }
  };
  return {
    split,
    n,
    size,
    keys: samples.map((s) => s.key),
    texts: samples.map((s) => s.text),
    read(indices, outImages, outMasks) {
      for (const k of indices) {
        if (!Number.isInteger(k) || k < 0 || k >= n) {
          return Promise.reject(new RangeError(`${split}: index ${k} out of range [0, ${n})`));
        }
      }
      if (outImages.length < indices.length * 3 * per || outMasks.length < indices.length * per) {
        return Promise.reject(
          new RangeError(
            `${split}: out arrays hold ${outImages.length} / ${outMasks.length} values, ` +
              `${indices.length} samples need ${indices.length * 3 * per} / ${
                indices.length * per
              }`,
          ),
        );
      }
      const p = queue.then(() => readNow(indices, outImages, outMasks));
      queue = p.catch(() => {});
      return p;
    },
  };
}
