/**
 * PyTorch checkpoints (`.pth` / `.pt`, `torch.save` since 1.6) read without running any pickle
 * code, and converted to safetensors.
 *
 * The format: a zip archive whose entries are stored uncompressed, all under one folder
 * (`<archive>/`): `data.pkl` (a pickle of the saved object), `data/<key>` (the raw bytes of each
 * tensor storage, little-endian), `version`, and since PyTorch 2.1 `byteorder`. The pickle names
 * each storage by a persistent id `("storage", torch.FloatStorage, "<key>", "cpu", numel)` and
 * rebuilds tensors with `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
 *
 * What is read (lib/io/pickle.ts does the decoding, with only these globals):
 * - `collections.OrderedDict` (called with no arguments; BUILD may set its `_metadata`),
 * - `torch._utils._rebuild_tensor_v2` and `torch._utils._rebuild_parameter`,
 * - the storage classes of {@link STORAGES} (float32/64, float16, bfloat16, int64/32/16/8, uint8,
 *   bool), only as the type inside a persistent id.
 * Anything else (`os.system`, `builtins.eval`, a pickled `torch.nn.Module`, numpy arrays, ...)
 * is refused when its name is read, with nothing executed. The legacy format of PyTorch < 1.6
 * (a bare pickle stream, not a zip) is refused with how to re-save it.
 *
 * Bounds: the file's size (from its stat, before reading; only regular files), the zip (stored
 * entries only, every entry's local header and data descriptor against the central directory,
 * every entry's CRC-32), the pickle's size, nesting depth, stack and memo, the number of
 * tensors, and the bytes the tensors expand to (a view may repeat its storage with stride 0).
 * Tensors keep their dtype and bytes exactly: views (storage offsets, non-contiguous strides)
 * are gathered into contiguous row-major data, checked against the storage's length.
 */
import { createHash } from "node:crypto";
import { basename } from "node:path";
import { BoundedReadError, fmtBytes, readFileBounded } from "./bounded.ts";
import { crc32 } from "../data/zip.ts";
import {
  type GlobalHandler,
  PickleError,
  PyDict,
  PyGlobal,
  PyList,
  PySet,
  PyTuple,
  unpickle,
} from "./pickle.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type RawOutTensor,
  type SafetensorsDtype,
} from "./safetensors.ts";

/** Limits on what a .pth may hold (see the module comment). */
export interface PthLimits {
  /** The file's size. */
  maxFileBytes: number;
  /** data.pkl's size. */
  maxPickleBytes: number;
  /** Tensors rebuilt by the pickle (all of them, not only the state_dict's). */
  maxTensors: number;
  /** Zip entries. */
  maxEntries: number;
  /** Bytes of the converted tensors together. */
  maxOutputBytes: number;
  /** MARK nesting of the pickle. */
  maxDepth: number;
}

export const PTH_LIMITS: PthLimits = {
  maxFileBytes: 2 * 1024 ** 3,
  maxPickleBytes: 64 * 1024 ** 2,
  maxTensors: 100_000,
  maxEntries: 200_016,
  maxOutputBytes: 2 * 1024 ** 3,
  maxDepth: 100,
};

/**
 * A .pth that cannot be read or is refused: bad input (exit 2), its message names the file.
 * `global` is the refused pickle global, if that is why.
 */
export class PthError extends Error {
  constructor(file: string, why: string, readonly global: string | null = null) {
    super(`${file}: ${why}`);
    this.name = "PthError";
  }
}

/** The storage classes accepted, with the safetensors dtype and element size of each. */
export const STORAGES: ReadonlyMap<string, { dtype: SafetensorsDtype; size: number }> = new Map(
  [
    ["FloatStorage", { dtype: "F32", size: 4 }],
    ["DoubleStorage", { dtype: "F64", size: 8 }],
    ["HalfStorage", { dtype: "F16", size: 2 }],
    ["BFloat16Storage", { dtype: "BF16", size: 2 }],
    ["LongStorage", { dtype: "I64", size: 8 }],
    ["IntStorage", { dtype: "I32", size: 4 }],
    ["ShortStorage", { dtype: "I16", size: 2 }],
    ["CharStorage", { dtype: "I8", size: 1 }],
    ["ByteStorage", { dtype: "U8", size: 1 }],
    ["BoolStorage", { dtype: "BOOL", size: 1 }],
  ] as const,
);

// ---------------------------------------------------------------------------------------------
// The zip container

interface Entry {
  name: string;
  crc: number;
  size: number;
  /** Where the entry's bytes start in the file. */
  start: number;
}

const LOCAL = 0x04034b50, CENTRAL = 0x02014b50, EOCD = 0x06054b50, DESCRIPTOR = 0x08074b50;

/** `PK\x03\x04` (a zip's first local header) or `PK\x05\x06` (an empty zip). */
export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b &&
    ((bytes[2] === 3 && bytes[3] === 4) || (bytes[2] === 5 && bytes[3] === 6));
}

/** PyTorch < 1.6's format: a pickle (protocol 2) of the magic number 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8];
export function isLegacyPth(bytes: Uint8Array): boolean {
  return LEGACY_MAGIC.every((b, i) => bytes[i] === b);
}

/**
 * The entries of a zip whose entries are all stored (PyTorch never compresses), each checked:
 * local header against the central directory (name, method, sizes and CRC unless a data
 * descriptor follows, which is then checked), data inside the file before the directory, the
 * CRC-32 of the data.
 */
function readStoredZip(bytes: Uint8Array, lim: PthLimits, bad: (why: string) => never) {
  const len = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  let e = -1;
  for (let i = len - 22; i >= 0 && i >= len - 22 - 65535; i--) {
    if (u32(i) === EOCD) {
      e = i;
      break;
    }
  }
  if (e < 0) bad("not a complete zip archive: no end-of-central-directory record (truncated?)");
  const count = u16(e + 10), cdSize = u32(e + 12), cdOffset = u32(e + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    bad("a ZIP64 archive beyond 4 GiB or 65535 entries (larger than a .pth read here)");
  }
  if (u16(e + 4) !== 0 || u16(e + 6) !== 0 || u16(e + 8) !== count) {
    bad("a multi-part (spanned) zip archive");
  }
  if (count > lim.maxEntries) bad(`${count} zip entries, more than the ${lim.maxEntries} read`);
  if (cdOffset + cdSize > e || count * 46 > cdSize) {
    bad(
      `the zip's central directory (${count} entries, ${cdSize} bytes at ${cdOffset}) does ` +
        `not fit before its end record at ${e} (truncated or damaged)`,
    );
  }
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const entries = new Map<string, Entry>();
  let compressed: string | null = null;
  let p = cdOffset;
  const cdEnd = cdOffset + cdSize;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdEnd || u32(p) !== CENTRAL) bad(`zip directory entry ${i} is damaged`);
    const flags = u16(p + 8), method = u16(p + 10);
    const crc = u32(p + 16), csize = u32(p + 20), size = u32(p + 24);
    const nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32);
    const lo = u32(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cdEnd) {
      bad(`zip directory entry ${i} runs past the directory`);
    }
    const rawName = bytes.subarray(p + 46, p + 46 + nameLen);
    let name = "";
    try {
      name = utf8.decode(rawName);
    } catch {
      bad(`zip directory entry ${i} has a name that is not UTF-8`);
    }
    p += 46 + nameLen + extraLen + commentLen;
    const ebad = (why: string): never => bad(`zip entry ${name} ${why}`);
    if (entries.has(name)) ebad("is listed twice");
    if (flags & 1) ebad("is encrypted");
    if (method !== 0) {
      // Reported after the directory is read: a TorchScript archive says what it is first.
      compressed ??= `zip entry ${name} is compressed (method ${method}); torch.save stores ` +
        "entries uncompressed (was the file re-zipped? save it again with torch.save)";
      entries.set(name, { name, crc, size, start: -1 });
      continue;
    }
    if (csize !== size) ebad(`is stored with ${csize} bytes but declares ${size}`);
    // The local header: same name and method; sizes and CRC there unless a descriptor follows.
    if (lo + 30 > cdOffset || u32(lo) !== LOCAL) ebad(`has no local header at byte ${lo}`);
    const lname = u16(lo + 26), lextra = u16(lo + 28);
    const start = lo + 30 + lname + lextra;
    if (start + size > cdOffset) {
      ebad(`(${size} bytes at byte ${start}) runs past the end of the data (truncated?)`);
    }
    if (lname !== nameLen || !rawName.every((b, k) => bytes[lo + 30 + k] === b)) {
      ebad("has another name in its local header");
    }
    if (u16(lo + 8) !== 0) ebad("has another method in its local header");
    if (u16(lo + 6) & 8) {
      // Data descriptor: [signature] crc, compressed size, size (4 bytes each, or 8 for ZIP64).
      let d = start + size;
      if (d + 4 <= cdOffset && u32(d) === DESCRIPTOR) d += 4;
      if (d + 12 > cdOffset) ebad("lacks the data descriptor its header announces");
      const dsize = u32(d + 4);
      const dsizeAlt = d + 20 <= cdOffset ? dv.getBigUint64(d + 4, true) : -1n;
      if (u32(d) !== crc || (dsize !== size && dsizeAlt !== BigInt(size))) {
        ebad(
          `has a data descriptor (crc 0x${u32(d).toString(16)}, ${dsize} bytes) that differs ` +
            `from the directory (crc 0x${crc.toString(16)}, ${size} bytes)`,
        );
      }
    } else if (u32(lo + 14) !== crc || u32(lo + 18) !== csize || u32(lo + 22) !== size) {
      ebad("has other sizes or CRC in its local header than in the directory");
    }
    const got = crc32(bytes.subarray(start, start + size));
    if (got !== crc) {
      ebad(
        `fails its CRC-32 check (0x${got.toString(16).padStart(8, "0")}, the archive says ` +
          `0x${crc.toString(16).padStart(8, "0")}): the file is damaged`,
      );
    }
    entries.set(name, { name, crc, size, start });
  }
  if ([...entries.keys()].some((n) => /^[^/]+\/(constants\.pkl|code\/)/.test(n))) {
    bad(
      "a TorchScript archive (torch.jit.save), not a checkpoint of weights: save " +
        "model.state_dict() with torch.save instead",
    );
  }
  if (compressed) bad(compressed);
  return entries;
}

// ---------------------------------------------------------------------------------------------
// The pickle's tensors

/** A storage named by a persistent id. */
interface StorageRef {
  key: string;
  type: string;
  dtype: SafetensorsDtype;
  elementSize: number;
  numel: number;
}

/** A tensor as the pickle describes it: a view of a storage. */
export class PthTensor {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
  get dtype(): SafetensorsDtype {
    return this.storage.dtype;
  }
}

const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

function intTuple(v: unknown, what: string, fail: (why: string) => never): number[] {
  if (!(v instanceof PyTuple) || !v.items.every((x) => isIndex(x) && x >= 0)) {
    fail(`${what} is not a tuple of non-negative integers`);
  }
  return [...(v as PyTuple).items] as number[];
}

/** A short description of a decoded value, for messages ("int 3", "dict of 2 entries"). */
function describe(v: unknown): string {
  if (v instanceof PthTensor) return `tensor ${v.dtype} [${v.shape.join(", ")}]`;
  if (v instanceof PyDict) {
    const n = v.entries.size;
    return `${v.type ?? "dict"} of ${n} entr${n === 1 ? "y" : "ies"}`;
  }
  if (v instanceof PyTuple) return `tuple of ${v.items.length}`;
  if (v instanceof PyList) return `list of ${v.items.length}`;
  if (v instanceof PySet) return `set of ${v.items.length}`;
  if (v === null) return "None";
  if (typeof v === "string") {
    return `str ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v)}`;
  }
  if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))) return `int ${v}`;
  if (typeof v === "number") return `float ${v}`;
  if (typeof v === "boolean") return v ? "True" : "False";
  if (v instanceof Uint8Array) return `bytes of ${v.length}`;
  if (v instanceof PyGlobal) return v.qualified;
  return typeof v;
}

/** A dict of str -> tensor with at least one entry: a state_dict. */
function isTensorDict(v: unknown): v is PyDict {
  if (!(v instanceof PyDict) || v.entries.size === 0) return false;
  for (const [k, t] of v.entries) {
    if (typeof k !== "string" || !(t instanceof PthTensor)) return false;
  }
  return true;
}

/** The pickle's globals for a tensor state_dict, and how each is used. */
function torchGlobals(
  lim: PthLimits,
  storageOf: (pid: unknown) => StorageRef,
  fail: (why: string) => never,
): { globals: Map<string, GlobalHandler>; persistentLoad: (pid: unknown) => unknown } {
  let tensors = 0;
  const emptyHooks = (h: unknown, what: string) => {
    if (!(h instanceof PyDict) || h.entries.size !== 0) {
      fail(`${what}: backward hooks must be an empty OrderedDict (hooks are code, not data)`);
    }
  };
  const globals = new Map<string, GlobalHandler>([
    ["collections.OrderedDict", {
      call: (args) => {
        if (args.length !== 0) fail("collections.OrderedDict called with arguments");
        return new PyDict("collections.OrderedDict");
      },
      build: (obj, state) => {
        // A state_dict's `_metadata` (the modules' versions): kept aside, not needed.
        const dictState = state instanceof PyTuple && state.items.length === 2
          ? state.items[0]
          : state;
        if (!(dictState instanceof PyDict)) fail("an OrderedDict's state is not a dict");
        (obj as PyDict).attrs = dictState as PyDict;
      },
    }],
    ["torch._utils._rebuild_tensor_v2", {
      call: (args) => {
        if (++tensors > lim.maxTensors) fail(`more than ${lim.maxTensors} tensors`);
        if (args.length !== 6 && args.length !== 7) {
          fail(`_rebuild_tensor_v2 with ${args.length} arguments (6 or 7 expected)`);
        }
        const [storage, offset, size, stride, requiresGrad, hooks, meta] = args;
        if (!(storage instanceof StorageHandle)) fail("a tensor whose storage is not a storage");
        if (!isIndex(offset) || offset < 0) fail("a tensor's storage offset is not an integer");
        const shape = intTuple(size, "a tensor's size", fail);
        const strides = intTuple(stride, "a tensor's stride", fail);
        if (shape.length !== strides.length) fail("a tensor's size and stride differ in length");
        if (typeof requiresGrad !== "boolean") fail("a tensor's requires_grad is not a bool");
        emptyHooks(hooks, "a tensor");
        if (args.length === 7 && meta !== null && !(meta instanceof PyDict && !meta.entries.size)) {
          fail(`a tensor with metadata (${describe(meta)}), which is not read`);
        }
        return new PthTensor((storage as StorageHandle).ref, offset as number, shape, strides);
      },
    }],
    ["torch._utils._rebuild_parameter", {
      call: (args) => {
        if (args.length !== 3 || !(args[0] instanceof PthTensor)) {
          fail("_rebuild_parameter with arguments other than (tensor, requires_grad, hooks)");
        }
        emptyHooks(args[2], "a parameter");
        return args[0];
      },
    }],
    // Storage classes: only as data (the type in a persistent id), never called.
    ...[...STORAGES.keys()].map((k) => [`torch.${k}`, {}] as [string, GlobalHandler]),
  ]);
  return { globals, persistentLoad: (pid) => new StorageHandle(storageOf(pid)) };
}

/** A storage, as the pickle's persistent id resolved it (only _rebuild_tensor_v2 takes one). */
class StorageHandle {
  constructor(readonly ref: StorageRef) {}
}

/** A hint for a refused global, after "refused global X". */
function globalHint(q: string): string {
  if (/^torch\.nn\.modules\./.test(q) || q.startsWith("__main__.") || q.startsWith("__torch__")) {
    return ": the file holds a pickled model object, not weights. Save the weights with " +
      "torch.save(model.state_dict(), path) instead";
  }
  if (/^torch\.[A-Za-z0-9]*Storage$/.test(q) || /^torch\.storage\./.test(q)) {
    return ": a storage type that is not read (read are: " +
      `${[...STORAGES.keys()].join(", ")})`;
  }
  if (q.startsWith("numpy.")) {
    return ": numpy objects are not read (only torch tensors; save torch.from_numpy(x))";
  }
  return ": only the globals of a tensor state_dict are accepted (collections.OrderedDict, " +
    "torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.*Storage)";
}

// ---------------------------------------------------------------------------------------------
// Reading and converting

/** A tensor of a converted state_dict: its dtype and its contiguous little-endian bytes. */
export interface PthTensorData {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface PthReadOptions {
  /** The top-level key of the state_dict when the file holds a dict of several. */
  key?: string;
  limits?: Partial<PthLimits>;
}

/** A state_dict read from a .pth. */
export interface PthStateDict {
  tensors: Map<string, PthTensorData>;
  /** The top-level key the state_dict was taken from, or null when the file is one. */
  key: string | null;
  /** The other top-level keys of the file, described ("epoch: int 3"). */
  others: string[];
  /** Whether DataParallel's `module.` prefix was stripped from every name. */
  strippedPrefix: boolean;
  /** The archive's folder name and format version. */
  archive: string;
  version: string;
}

/**
 * Decodes a PyTorch zip checkpoint held in memory (see the module comment).
 * @param file names the file in messages
 * @throws PthError (exit 2) naming the file and what is wrong
 */
export function decodePth(bytes: Uint8Array, file: string, o: PthReadOptions = {}): PthStateDict {
  const lim = { ...PTH_LIMITS, ...o.limits };
  const bad = (why: string, global: string | null = null): never => {
    throw new PthError(file, why, global);
  };
  if (isLegacyPth(bytes)) {
    bad(
      "a checkpoint in PyTorch's legacy format (torch < 1.6, not a zip archive), which is not " +
        "read. Re-save it with PyTorch >= 1.6: torch.save(torch.load(path), new_path)",
    );
  }
  if (!isZip(bytes)) {
    bad("not a PyTorch checkpoint: torch.save (>= 1.6) writes a zip archive, this is not one");
  }
  const entries = readStoredZip(bytes, lim, (why) => bad(why));
  // One folder holds everything: <archive>/data.pkl.
  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) {
    bad(
      pkls.length
        ? `${pkls.length} data.pkl entries (${pkls.join(", ")}): not one torch.save archive`
        : "a zip archive without <archive>/data.pkl: not written by torch.save",
    );
  }
  const archive = pkls[0].slice(0, -"/data.pkl".length);
  const entryBytes = (e: Entry) => bytes.subarray(e.start, e.start + e.size);
  const versionEntry = entries.get(`${archive}/version`) ?? entries.get(`${archive}/.data/version`);
  if (!versionEntry) bad(`no ${archive}/version entry: not written by torch.save`);
  const version = new TextDecoder().decode(entryBytes(versionEntry!)).trim();
  if (!/^[1-9][0-9]{0,3}$/.test(version)) {
    bad(`${archive}/version holds ${JSON.stringify(version.slice(0, 20))}, not a version number`);
  }
  const order = entries.get(`${archive}/byteorder`);
  if (order) {
    const s = new TextDecoder().decode(entryBytes(order)).trim();
    if (s !== "little") {
      bad(`storages in ${JSON.stringify(s.slice(0, 20))} byte order (only little is read)`);
    }
  }
  const pkl = entries.get(pkls[0])!;
  if (pkl.size > lim.maxPickleBytes) {
    bad(`data.pkl is ${fmtBytes(pkl.size)}, more than the ${fmtBytes(lim.maxPickleBytes)} read`);
  }

  // Storages by key; one key is one storage of one type.
  const storages = new Map<string, StorageRef>();
  const storageOf = (pid: unknown): StorageRef => {
    const items = pid instanceof PyTuple ? pid.items : [];
    const [tag, type, key, location, numel] = items;
    if (
      items.length !== 5 || tag !== "storage" || !(type instanceof PyGlobal) ||
      typeof key !== "string" || typeof location !== "string" || !isIndex(numel) || numel < 0
    ) {
      return bad(
        "a persistent id that is not ('storage', <storage type>, key, location, numel)",
      );
    }
    const t = type as PyGlobal;
    const kind = t.module === "torch" ? STORAGES.get(t.name) : undefined;
    if (!kind) return bad(`${t.qualified} used as a storage type`);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(key as string)) {
      bad(`a storage key ${JSON.stringify(key)}`);
    }
    const seen = storages.get(key as string);
    if (seen) {
      if (seen.type !== t.name || seen.numel !== numel) {
        bad(
          `storage ${key} is named as ${seen.type} of ${seen.numel} and as ${t.name} of ${numel}`,
        );
      }
      return seen;
    }
    const entry = entries.get(`${archive}/data/${key}`);
    if (!entry) bad(`storage ${key} has no ${archive}/data/${key} entry (damaged archive)`);
    if (entry!.size !== (numel as number) * kind.size) {
      bad(
        `storage ${key} holds ${entry!.size} bytes, but the pickle says ${numel} ${kind.dtype} ` +
          `elements (${(numel as number) * kind.size} bytes)`,
      );
    }
    const ref: StorageRef = {
      key: key as string,
      type: t.name,
      dtype: kind.dtype,
      elementSize: kind.size,
      numel: numel as number,
    };
    storages.set(key as string, ref);
    return ref;
  };
  const fail = (why: string): never => bad(`data.pkl: ${why}`);
  const { globals, persistentLoad } = torchGlobals(lim, storageOf, fail);
  let root: unknown;
  try {
    root = unpickle(entryBytes(pkl), {
      globals,
      persistentLoad,
      limits: { maxDepth: lim.maxDepth },
    });
  } catch (e) {
    if (!(e instanceof PickleError)) throw e;
    const hint = e.global ? `${globalHint(e.global)}. Nothing in the file was executed` : "";
    bad(`data.pkl: ${e.message}${hint}`, e.global);
  }

  // The state_dict: the file itself, the dict under --key, or the one dict of tensors.
  let sd: PyDict;
  let key: string | null = null;
  const top = root instanceof PyDict ? root : null;
  const strKeys = top ? [...top.entries.keys()].filter((k) => typeof k === "string") : [];
  const listing = () =>
    top
      ? [...top.entries].slice(0, 12).map(([k, v]) => `${String(k)}: ${describe(v)}`).join("; ") +
        (top.entries.size > 12 ? "; ..." : "")
      : describe(root);
  if (o.key !== undefined) {
    if (!top || !top.entries.has(o.key)) {
      bad(`--key ${o.key}: the file holds no such top-level key (it holds ${listing()})`);
    }
    if (!isTensorDict(top!.entries.get(o.key))) {
      bad(`--key ${o.key} is ${describe(top!.entries.get(o.key))}, not a dict of tensors`);
    }
    key = o.key;
    sd = top!.entries.get(o.key) as PyDict;
  } else if (isTensorDict(root)) {
    sd = root;
  } else {
    const found = strKeys.filter((k) => isTensorDict(top!.entries.get(k))) as string[];
    if (found.length === 0) {
      bad(`holds no state_dict (a dict of name -> tensor): it holds ${listing()}`);
    }
    if (found.length > 1) {
      bad(
        `holds ${found.length} state_dicts (${found.join(", ")}): choose one with --key ` +
          `(e.g. --key ${found[0]})`,
      );
    }
    key = found[0];
    sd = top!.entries.get(key) as PyDict;
  }
  const others = top && key !== null
    ? [...top.entries].filter(([k]) => k !== key).map(([k, v]) => `${String(k)}: ${describe(v)}`)
    : [];

  // Gather every tensor into contiguous bytes.
  const names = [...sd!.entries.keys()] as string[];
  const strippedPrefix = names.every((n) => n.startsWith("module."));
  if (names.includes(strippedPrefix ? "module.__metadata__" : "__metadata__")) {
    bad("a tensor named __metadata__, a name safetensors reserves");
  }
  const tensors = new Map<string, PthTensorData>();
  let total = 0;
  for (const name of names) {
    const t = sd!.entries.get(name) as PthTensor;
    const n = t.shape.reduce((a, b) => a * b, 1);
    total += n * t.storage.elementSize;
    if (!Number.isSafeInteger(total) || total > lim.maxOutputBytes) {
      bad(`the tensors expand to more than the ${fmtBytes(lim.maxOutputBytes)} converted`);
    }
    const data = entryBytes(entries.get(`${archive}/data/${t.storage.key}`)!);
    const out = gather(t, n, data, (why) => bad(`tensor ${name}: ${why}`));
    tensors.set(strippedPrefix ? name.slice(7) : name, {
      dtype: t.dtype,
      shape: [...t.shape],
      bytes: out,
    });
  }
  return { tensors, key, others, strippedPrefix, archive, version };
}

/** Copies a strided view of `data` (the storage) into contiguous row-major bytes. */
function gather(
  t: PthTensor,
  n: number,
  data: Uint8Array,
  bad: (why: string) => never,
): Uint8Array {
  const es = t.storage.elementSize;
  const out = new Uint8Array(n * es);
  if (n === 0) return out;
  const rank = t.shape.length;
  let last = t.offset;
  for (let d = 0; d < rank; d++) last += (t.shape[d] - 1) * t.stride[d];
  if (last >= t.storage.numel) {
    bad(
      `size [${t.shape.join(", ")}], stride [${t.stride.join(", ")}] and offset ${t.offset} ` +
        `reach element ${last}, past the storage's ${t.storage.numel} (storage ${t.storage.key})`,
    );
  }
  // The innermost dims that are laid out contiguously form one run copied at once.
  let run = 1, d = rank;
  while (d > 0 && (t.shape[d - 1] === 1 || t.stride[d - 1] === run)) run *= t.shape[--d];
  const runBytes = run * es;
  if (d === 0) {
    out.set(data.subarray(t.offset * es, t.offset * es + runBytes));
    return out;
  }
  // An odometer over the outer dims 0..d-1.
  const idx = new Array<number>(d).fill(0);
  let src = t.offset;
  for (let at = 0; at < out.length; at += runBytes) {
    out.set(data.subarray(src * es, src * es + runBytes), at);
    for (let k = d - 1; k >= 0; k--) {
      if (++idx[k] < t.shape[k]) {
        src += t.stride[k];
        break;
      }
      src -= (t.shape[k] - 1) * t.stride[k];
      idx[k] = 0;
    }
  }
  return out;
}

/** Reads a .pth file: a regular file no larger than the limit (checked by stat before reading). */
export async function readPthBytes(path: string, maxBytes = PTH_LIMITS.maxFileBytes) {
  try {
    return await readFileBounded(path, maxBytes, "PyTorch checkpoints");
  } catch (e) {
    if (e instanceof BoundedReadError) throw new PthError(e.path, e.problem);
    throw e;
  }
}

/** Hex sha256 of bytes. */
export const sha256Hex = (bytes: Uint8Array): string =>
  createHash("sha256").update(bytes).digest("hex");

/** safetensors bytes of a state_dict read from a .pth, with metadata naming its source. */
export function pthToSafetensors(
  sd: PthStateDict,
  source: { file: string; sha256: string },
): Uint8Array {
  const out = new Map<string, RawOutTensor>();
  for (const [name, t] of sd.tensors) {
    out.set(name, { shape: t.shape, dtype: t.dtype, bytes: t.bytes });
  }
  const meta: Record<string, string> = {
    format: "pt",
    source: basename(source.file),
    source_sha256: source.sha256,
    converted_by: "lvit-deno convert (restricted pickle reader, nothing executed)",
  };
  if (sd.key !== null) meta.source_key = sd.key;
  if (sd.strippedPrefix) meta.stripped_prefix = "module.";
  return encodeSafetensors(out, meta);
}

/** Whether a path names a PyTorch checkpoint by its extension. */
export const isPthPath = (path: string): boolean => /\.(pth|pt|ckpt|tar)$/i.test(path);

/**
 * The one entry point of checkpoint loading for files that may be PyTorch's: the bytes of a
 * checkpoint as safetensors. A PyTorch zip (by its magic bytes, or a `.pth`/`.pt` name) is
 * converted with {@link decodePth} (exit 2 on anything refused); anything else is returned as
 * is for the safetensors reader to validate.
 */
export function checkpointBytes(bytes: Uint8Array, file: string): Uint8Array {
  if (!isZip(bytes) && !isLegacyPth(bytes) && !isPthPath(file)) return bytes;
  return pthToSafetensors(decodePth(bytes, file), { file, sha256: sha256Hex(bytes) });
}

/**
 * {@link decodeSafetensors} for a checkpoint that may be a PyTorch .pth instead (converted
 * first, see {@link checkpointBytes}): what checkpoint loading calls.
 */
export function decodeCheckpoint(
  bytes: Uint8Array,
  file: string,
): ReturnType<typeof decodeSafetensors> {
  return decodeSafetensors(checkpointBytes(bytes, file), file);
}
