/**
 * Checkpoints as safetensors with the reference model's state_dict names, so converted official
 * PyTorch weights load directly. Loading reports missing and unexpected keys by name and fails
 * unless the caller allows them; DataParallel's `module.` prefix and thop's `total_ops` /
 * `total_params` buffers are recognised and dropped. `matchShared` takes only what fits (a
 * checkpoint of another model, as an initialisation). An official PyTorch `.pth` is read in
 * place of a safetensors file (lib/io/pth.ts: converted in memory, no pickle code run).
 */
import { writeAtomic } from "./atomic.ts";
import { BoundedReadError, readFileBounded } from "./bounded.ts";
import { type OutTensor, safetensorsParts } from "./safetensors.ts";
import { decodeCheckpoint } from "./pth.ts";

/** What `loadCheckpoint` tolerates; by default any mismatch with the model fails. */
export interface LoadOptions {
  /** Accept model tensors the file lacks (they are listed in `missing`). */
  allowMissing?: boolean;
  /** Accept file tensors the model lacks (they are listed in `unexpected`). */
  allowUnexpected?: boolean;
  /**
   * Names (after the `module.` prefix is dropped) to leave out as known, reported under
   * `ignored`: e.g. the trainer state a resumable checkpoint carries besides the model.
   */
  skip?: (name: string) => boolean;
  /**
   * Load tensors holding NaN or infinity (default: refused with a CheckpointError naming the
   * tensor, issue 15).
   */
  allowNonFinite?: boolean;
}

/** The outcome of loading a checkpoint against a model's expected tensors. */
export interface LoadReport {
  /** The matched tensors' values as f32, by state_dict name. */
  values: Map<string, Float32Array>;
  /** Expected names the file does not have. */
  missing: string[];
  /** Names in the file the model does not expect. */
  unexpected: string[];
  /** Keys dropped as known noise (thop counters) or by `skip`. */
  ignored: string[];
  /** The file's string metadata (safetensors `__metadata__`). */
  metadata: Map<string, string>;
}

/** A checkpoint that does not fit the model or cannot be used (bad shapes, names, values). */
export class CheckpointError extends Error {
  /** `message` names the file and every problem found. */
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

const THOP = /(^|\.)(total_ops|total_params)$/;

/** Where a tensor holds a value that is not finite. */
export interface NonFinite {
  name: string;
  index: number;
  value: number;
}

/** The first tensor (in order) holding NaN or +-Infinity, with the first such element; or null. */
export function firstNonFinite(
  tensors: Iterable<[string, Float32Array | { data: Float32Array }]>,
): NonFinite | null {
  for (const [name, t] of tensors) {
    const a = t instanceof Float32Array ? t : t.data;
    for (let i = 0; i < a.length; i++) {
      // x - x is 0 for every finite x, NaN for NaN and +-Infinity: one test per element.
      if (a[i] - a[i] !== 0) return { name, index: i, value: a[i] };
    }
  }
  return null;
}

/** A CheckpointError (exit 2) for a checkpoint whose tensor `bad` is not finite. */
export function nonFiniteError(file: string, bad: NonFinite, hint = ""): CheckpointError {
  return new CheckpointError(
    `${file}: tensor ${bad.name} holds ${bad.value} (element ${bad.index}): a checkpoint with ` +
      `NaN or infinite weights is refused${hint}`,
  );
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Whether a file tensor of shape `got` fits `want`; PyTorch's [] scalars fit our [1]. */
function fits(want: readonly number[], got: readonly number[]): boolean {
  const scalarPair = want.length <= 1 && got.length <= 1 && numel(want) === 1 &&
    numel(got) === 1;
  return scalarPair || (want.length === got.length && want.every((d, i) => d === got[i]));
}

/**
 * Matches a decoded file against the expected tensors (name -> shape). Shape mismatches always
 * fail; missing/unexpected names fail unless allowed.
 */
export function matchStateDict(
  file: string,
  bytes: Uint8Array,
  expected: Map<string, readonly number[]>,
  o: LoadOptions = {},
): LoadReport {
  // The partial match of LViT_pretrain, made strict: every misfit is a problem here.
  const { values, unexpected, misshapen: wrong, ignored, metadata } = matchShared(
    file,
    bytes,
    expected,
    o,
  );
  const problems = wrong.map((m) =>
    `${m.name}: shape [${m.file.join(", ")}] in the file, model needs [${m.model.join(", ")}]`
  );
  // Names present in the file with the wrong shape: reported as such, not again as missing.
  const misshapen = new Set(wrong.map((m) => m.name));
  const missing = [...expected.keys()].filter((k) => !values.has(k) && !misshapen.has(k));
  if (missing.length && !o.allowMissing) problems.push(`missing keys: ${missing.join(", ")}`);
  if (unexpected.length && !o.allowUnexpected) {
    problems.push(`unexpected keys: ${unexpected.join(", ")}`);
  }
  if (problems.length) {
    throw new CheckpointError(
      `${file}: does not match the model:\n  ${problems.join("\n  ")}\n` +
        `(allow missing/unexpected keys explicitly if this is intended)`,
    );
  }
  const bad = o.allowNonFinite ? null : firstNonFinite(values);
  if (bad) throw nonFiniteError(file, bad);
  return { values, missing, unexpected, ignored, metadata };
}

/**
 * Writes a checkpoint atomically: a temporary file in the same folder, then a rename. The
 * tensors stream to the file (no copy of the whole checkpoint in memory), so they must not
 * change until the returned promise settles.
 */
export async function saveCheckpoint(
  path: string,
  tensors: Map<string, OutTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeAtomic(path, safetensorsParts(tensors, metadata));
}

/**
 * Reads a safetensors (or PyTorch .pth) checkpoint and matches it against `expected` (name ->
 * shape) under the rules of `o`; throws a CheckpointError on any mismatch not allowed.
 */
export async function loadCheckpoint(
  path: string,
  expected: Map<string, readonly number[]>,
  o: LoadOptions = {},
): Promise<LoadReport> {
  return matchStateDict(path, await readCheckpointFile(path), expected, o);
}

/**
 * The largest checkpoint read (2 GiB): LViT-T at the reference size has 39.9 million
 * parameters, 160 MB as best.safetensors and 480 MB as a last.safetensors with Adam's two
 * moments. A file is read whole (and its tensors copied once more as float32), so this bounds
 * what loading one can take.
 */
export const MAX_CHECKPOINT_BYTES = 2 ** 31;

/**
 * Reads a checkpoint file within {@link MAX_CHECKPOINT_BYTES}, refusing anything but a regular
 * file before opening it. @throws CheckpointError naming the file and the limit
 */
export async function readCheckpointFile(path: string): Promise<Uint8Array> {
  try {
    return await readFileBounded(path, MAX_CHECKPOINT_BYTES, "checkpoints");
  } catch (e) {
    if (e instanceof BoundedReadError) throw new CheckpointError(e.message);
    throw e;
  }
}

/** What `matchShared` found in a file, by name. */
export interface SharedReport {
  /** The tensors the model has under the same name with the same shape, by model name. */
  values: Map<string, Float32Array>;
  /** File tensors (names as in the file) whose name the model does not have. */
  unexpected: string[];
  /** Names the model has with another shape than the file's. */
  misshapen: { name: string; file: number[]; model: number[] }[];
  /** Model names the file does not provide (with a fitting shape). */
  missing: string[];
  /** Keys dropped as known noise (thop counters) or by `skip`. */
  ignored: string[];
  metadata: Map<string, string>;
}

/**
 * Takes from a decoded file every tensor whose name (after the `module.` prefix is dropped, and
 * with `o.prefix` prepended) and shape the model has, as the reference's LViT_pretrain copies a
 * checkpoint into another model; never fails on what does not match, but reports it. `skip`
 * sees the name before the prefix is added.
 */
export function matchShared(
  file: string,
  bytes: Uint8Array,
  expected: Map<string, readonly number[]>,
  o: Pick<LoadOptions, "skip"> & { prefix?: string } = {},
): SharedReport {
  const prefix = o.prefix ?? "";
  const { tensors, metadata } = decodeCheckpoint(bytes, file);
  const values = new Map<string, Float32Array>();
  const unexpected: string[] = [];
  const misshapen: SharedReport["misshapen"] = [];
  const ignored: string[] = [];
  for (const [raw, t] of tensors) {
    const own = raw.startsWith("module.") ? raw.slice(7) : raw;
    if (THOP.test(raw) || o.skip?.(own)) {
      ignored.push(raw);
      continue;
    }
    const name = prefix + own;
    const want = expected.get(name);
    if (!want) unexpected.push(raw);
    else if (!fits(want, t.shape)) misshapen.push({ name, file: [...t.shape], model: [...want] });
    else values.set(name, t.data);
  }
  const missing = [...expected.keys()].filter((k) => !values.has(k));
  return { values, unexpected, misshapen, missing, ignored, metadata };
}
