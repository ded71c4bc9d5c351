/**
 * safetensors read/write (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a JSON header mapping tensor names to {dtype, shape, data_offsets}, then the
 * raw little-endian data. Files are untrusted input: every length, offset, dtype and shape is
 * validated before a byte of data is read, and names are kept in a Map, never as object keys,
 * so a hostile header cannot reach prototypes.
 */

/** The dtypes of the format that are read and written. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

/** dtypes we read (converted to f32 on load) and their sizes in bytes. */
const DTYPES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Headers larger than this are refused (the format's reference reader uses 100 MB). */
const MAX_HEADER = 100_000_000;

/** One decoded tensor of a safetensors file. */
export interface TensorEntry {
  /** The dtype stored in the file (`F32`, `I64`, ...). */
  dtype: string;
  /** The dimensions, outermost first. */
  shape: number[];
  /** Values converted to f32 (integers and bools as their numeric value). */
  data: Float32Array;
}

/** A file that is not valid safetensors (bad header, offsets, dtype or size). */
export class SafetensorsError extends Error {
  /** The message is `file: not a valid safetensors file: why`. */
  constructor(file: string, why: string) {
    super(`${file}: not a valid safetensors file: ${why}`);
    this.name = "SafetensorsError";
  }
}

/**
 * A tensor to write: f32 values, stored as F32 or, for integer counters such as BatchNorm's
 * `num_batches_tracked` (int64 in PyTorch's state_dict), as I64 of the rounded values.
 */
export interface OutTensor {
  /** The dimensions, outermost first. */
  shape: readonly number[];
  /** The values, row-major. */
  data: Float32Array;
  /** How to store them (default F32). */
  dtype?: "F32" | "I64";
}

/**
 * A tensor given as its little-endian bytes in row-major order, written unchanged (a converted
 * PyTorch checkpoint keeps every dtype and bit).
 */
export interface RawOutTensor {
  /** The dimensions, outermost first. */
  shape: readonly number[];
  /** The dtype the bytes are in. */
  dtype: SafetensorsDtype;
  /** The raw tensor data; its length must match shape and dtype. */
  bytes: Uint8Array;
}

/**
 * Serialises tensors (in the given order) with optional string metadata: f32 values, or raw
 * bytes of any dtype the format has ({@link RawOutTensor}). The bytes of
 * {@link safetensorsParts}, in one buffer.
 */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, OutTensor | RawOutTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const parts = [...safetensorsParts(tensors, metadata)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The file of {@link encodeSafetensors} as consecutive pieces: the length and header first
 * (validated before anything is yielded), then each tensor's data. An f32 tensor is a view of
 * its own values on a little-endian host, so a large checkpoint streams to disk without a copy
 * of the whole file in memory; the tensors must not change until the pieces are consumed.
 */
export function safetensorsParts(
  tensors: ReadonlyMap<string, OutTensor | RawOutTensor>,
  metadata: Record<string, string> = {},
): Iterable<Uint8Array> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error("a tensor cannot be named __metadata__");
    const n = t.shape.reduce((a, b) => a * b, 1);
    let nbytes: number;
    if ("bytes" in t) {
      nbytes = Object.hasOwn(DTYPES, t.dtype) ? DTYPES[t.dtype] * n : NaN;
      if (nbytes !== t.bytes.length) {
        throw new Error(`${name}: shape [${t.shape}] ${t.dtype} but ${t.bytes.length} bytes`);
      }
    } else {
      if (n !== t.data.length) {
        throw new Error(`${name}: shape [${t.shape}] but ${t.data.length} values`);
      }
      nbytes = (t.dtype === "I64" ? 8 : 4) * n;
    }
    Object.defineProperty(header, name, {
      value: {
        dtype: t.dtype ?? "F32",
        shape: [...t.shape],
        data_offsets: [offset, offset + nbytes],
      },
      enumerable: true,
    });
    offset += nbytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += " ".repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const head = new Uint8Array(8 + hb.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(hb.length), true);
  head.set(hb, 8);
  return [head, ...[...tensors.values()].map(dataBytes)];
}

/** One tensor's data as little-endian bytes: a view where the host's layout is the file's. */
function dataBytes(t: OutTensor | RawOutTensor): Uint8Array {
  if ("bytes" in t) return t.bytes;
  if (t.dtype === "I64") {
    const out = new Uint8Array(8 * t.data.length);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < t.data.length; i++) {
      dv.setBigInt64(8 * i, BigInt(Math.round(t.data[i])), true);
    }
    return out;
  }
  if (isLittleEndian()) return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint8Array(t.data.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < t.data.length; i++) dv.setFloat32(4 * i, t.data[i], true);
  return out;
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

/** Parses and validates a safetensors file; `file` names it in error messages. */
export function decodeSafetensors(
  bytes: Uint8Array,
  file = "<buffer>",
): { tensors: Map<string, TensorEntry>; metadata: Map<string, string> } {
  const fail = (why: string): never => {
    throw new SafetensorsError(file, why);
  };
  if (bytes.length < 8) fail("shorter than the 8-byte header length");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = dv.getBigUint64(0, true);
  if (hlen > BigInt(Math.min(MAX_HEADER, bytes.length - 8))) {
    fail(`header length ${hlen} exceeds the file (${bytes.length} bytes) or ${MAX_HEADER}`);
  }
  const hl = Number(hlen);
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + hl)),
    );
  } catch (e) {
    fail(`header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }
  const dataStart = 8 + hl;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, TensorEntry>();
  const metadata = new Map<string, string>();
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        fail("__metadata__ is not an object");
      }
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`metadata '${k}' is not a string`);
        metadata.set(k, v as string);
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) fail(`entry '${name}' is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== "string" || !Object.hasOwn(DTYPES, dtype)) {
      fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)}`);
    }
    const shape = e.shape;
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) fail(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1] ||
      offs[1] > dataLen
    ) fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
    const n = (shape as number[]).reduce((a, b) => a * b, 1);
    const size = DTYPES[dtype as SafetensorsDtype];
    const [b0, b1] = offs as number[];
    if (b1 - b0 !== n * size) {
      fail(`tensor '${name}' [${shape}] ${dtype} needs ${n * size} bytes, offsets give ${b1 - b0}`);
    }
    spans.push([b0, b1, name]);
    tensors.set(name, {
      dtype: dtype as string,
      shape: [...(shape as number[])],
      data: convert(dv, dataStart + b0, n, dtype as string),
    });
  }
  // The data must be exactly covered by the tensors, with no overlap and no gap.
  spans.sort((a, b) => a[0] - b[0]);
  let at = 0;
  for (const [b0, b1, name] of spans) {
    if (b0 !== at) {
      fail(b0 < at ? `tensor '${name}' overlaps another` : `gap before tensor '${name}'`);
    }
    at = b1;
  }
  if (at !== dataLen) fail(`${dataLen - at} trailing bytes after the last tensor`);
  return { tensors, metadata };
}

function convert(dv: DataView, at: number, n: number, dtype: string): Float32Array {
  if (dtype === "F32" && isLittleEndian()) {
    // The common case: one copy (the slice also fixes any misalignment).
    return new Float32Array(dv.buffer.slice(dv.byteOffset + at, dv.byteOffset + at + 4 * n));
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case "F32":
        out[i] = dv.getFloat32(at + 4 * i, true);
        break;
      case "F64":
        out[i] = dv.getFloat64(at + 8 * i, true);
        break;
      case "F16":
        out[i] = half(dv.getUint16(at + 2 * i, true));
        break;
      case "BF16":
        out[i] =
          new Float32Array(new Uint32Array([dv.getUint16(at + 2 * i, true) << 16]).buffer)[0];
        break;
      case "I64":
        out[i] = Number(dv.getBigInt64(at + 8 * i, true));
        break;
      case "I32":
        out[i] = dv.getInt32(at + 4 * i, true);
        break;
      case "I16":
        out[i] = dv.getInt16(at + 2 * i, true);
        break;
      case "I8":
        out[i] = dv.getInt8(at + i);
        break;
      default: // U8, BOOL
        out[i] = dv.getUint8(at + i);
    }
  }
  return out;
}

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}
