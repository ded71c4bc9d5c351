/**
 * Loading and saving a model's weights (its state_dict) for anything that holds them: a training
 * `Session` or an eval-only `Inference`. `strict` is PyTorch's `load_state_dict(strict=True)`
 * (every name present with its shape, nothing else; the trainer state a resumable checkpoint
 * carries is left out); `partial` is the reference's LViT_pretrain copy (every tensor whose name
 * and shape the model has, the rest listed). Either way the report says what was loaded and why
 * anything was not.
 */
import {
  firstNonFinite,
  loadCheckpoint,
  matchShared,
  nonFiniteError,
  readCheckpointFile,
  saveCheckpoint,
} from "../io/checkpoint.ts";
import type { OutTensor } from "../io/safetensors.ts";
import { isModelState } from "./session.ts";

/** What holds weights: a `Session` or an `Inference`. */
export interface WeightHolder {
  /** Expected leaf shapes by name (`modelOnly`: the state_dict, without trainer state). */
  leafShapes(modelOnly?: boolean): Map<string, readonly number[]>;
  /** Overwrites leaves with the given values. */
  loadState(values: Map<string, Float32Array>): void;
  /** Every leaf's current value (`modelOnly`: the state_dict alone). */
  state(modelOnly?: boolean): Promise<Map<string, OutTensor>>;
}

/** How `loadWeights` matches a file against the model. */
export interface LoadWeightsOptions {
  /**
   * `strict` (default): the file must hold exactly the model's state_dict, or a CheckpointError
   * lists every difference and nothing is loaded. `partial`: load what fits by name and shape.
   */
  mode?: "strict" | "partial";
  /** Load tensors holding NaN or infinity (refused by default). */
  allowNonFinite?: boolean;
}

/** What `loadWeights` did. */
export interface WeightsReport {
  /** The file read. */
  file: string;
  /** state_dict names loaded from it. */
  loaded: string[];
  /** Model names the file does not provide (they keep their values). */
  missing: string[];
  /** File names the model does not have. */
  unexpected: string[];
  /** Names present in both with different shapes (partial mode; strict refuses them). */
  misshapen: { name: string; file: number[]; model: number[] }[];
  /** File tensors left out on purpose: trainer state (`optim.*`, `metrics.*`), thop counters. */
  ignored: string[];
  /** The file's string metadata (safetensors `__metadata__`). */
  metadata: Map<string, string>;
}

/**
 * Loads a safetensors or PyTorch `.pth` checkpoint into `target`'s model state.
 * @throws CheckpointError naming the file and every problem (strict mismatch, bad file, NaN)
 * @example
 * ```ts
 * import { Inference, lvit, loadWeights, selectBackend } from "./mod.ts";
 * const m = await Inference.create(await selectBackend("cpu"), lvit(), { size: 224 });
 * const r = await loadWeights(m, "runs/monuseg/default/97e80d8c/checkpoints/best.safetensors");
 * console.log(`${r.loaded.length} tensors loaded, ${r.missing.length} missing`);
 * ```
 */
export async function loadWeights(
  target: WeightHolder,
  file: string,
  o: LoadWeightsOptions = {},
): Promise<WeightsReport> {
  const expected = target.leafShapes(true);
  const skip = (n: string) => !isModelState(n);
  if ((o.mode ?? "strict") === "strict") {
    const r = await loadCheckpoint(file, expected, { skip, allowNonFinite: o.allowNonFinite });
    target.loadState(r.values);
    return { file, loaded: [...r.values.keys()], misshapen: [], ...r };
  }
  const m = matchShared(file, await readCheckpointFile(file), expected, { skip });
  const bad = o.allowNonFinite ? null : firstNonFinite(m.values);
  if (bad) throw nonFiniteError(file, bad);
  target.loadState(m.values);
  return {
    file,
    loaded: [...m.values.keys()],
    missing: m.missing.filter((n) => !m.misshapen.some((x) => x.name === n)),
    unexpected: m.unexpected,
    misshapen: m.misshapen,
    ignored: m.ignored,
    metadata: m.metadata,
  };
}

/**
 * Writes `target`'s state_dict (PyTorch's names; `num_batches_tracked` as int64 scalars) as a
 * safetensors file, atomically; `metadata` goes to its `__metadata__`.
 */
export async function saveWeights(
  target: WeightHolder,
  file: string,
  metadata: Record<string, string> = {},
): Promise<void> {
  await saveCheckpoint(file, await target.state(true), metadata);
}
