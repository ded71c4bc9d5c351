/**
 * A model's full state_dict (every registered parameter and buffer, PyTorch's names, shapes and
 * dtypes) from its graph alone: the training-mode forward is built and its leaves listed, with no
 * program compiled. Registered-but-unused modules are included, as in PyTorch's
 * `model.state_dict()`, so this is the list an official checkpoint is matched against.
 */
import { Graph } from "../graph/mod.ts";
import type { Model } from "../train/session.ts";

/** One state_dict entry. */
export interface StateEntry {
  /** PyTorch's key, e.g. `down1.nConvs.0.conv.weight`. */
  name: string;
  /** The tensor's shape in PyTorch ([] for the int64 scalar `num_batches_tracked`). */
  shape: number[];
  /** `int64` for batch norm's `num_batches_tracked` (as PyTorch stores it), else `float32`. */
  dtype: "float32" | "int64";
  /** Whether training updates it by gradient (a parameter) rather than as a buffer. */
  trainable: boolean;
}

/** The input a model's graph is built for (shapes only; nothing runs). */
export interface StateDictInput {
  /** Images per batch (default 1; no entry depends on it). */
  batch?: number;
  /** Image channels (default 3). */
  channels?: number;
  /** Image height and width (default 224, the reference's). */
  size?: number;
}

/**
 * The state_dict of `model` in registration order.
 * @example
 * ```ts
 * import { buildModel, stateDict } from "./mod.ts";
 * const sd = stateDict(buildModel("lvit-t"));
 * console.log(sd.length); // 541
 * ```
 */
export function stateDict(model: Model, input: StateDictInput = {}): StateEntry[] {
  const { batch = 1, channels = 3, size = 224 } = input;
  const g = new Graph();
  model({ g, training: true }, g.input("x", [batch, channels, size, size]));
  return g.leaves()
    .filter((t) => t.kind === "param" || t.kind === "state")
    .map((t) => {
      // The engine keeps batch norm's step counter as one float; PyTorch as an int64 scalar.
      const counter = t.name!.endsWith("num_batches_tracked");
      return {
        name: t.name!,
        shape: counter ? [] : [...t.shape],
        dtype: counter ? "int64" : "float32",
        trainable: t.kind === "param",
      };
    });
}
