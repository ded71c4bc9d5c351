/**
 * A model compiled for evaluation only: no training step, no Adam moments, so it builds faster
 * and takes less memory than a `Session`. It knows the model's whole state_dict (modules the
 * forward never uses included, as PyTorch's `state_dict()` does), starts from the same seeded
 * values a `Session` of the same seed starts from, and returns logits and probabilities.
 */
import { initValues, type Tensor } from "../graph/mod.ts";
import { compile } from "../backends/compile.ts";
import { Graph } from "../graph/mod.ts";
import type { Backend, Exe, Runtime } from "../backends/select.ts";
import type { OutTensor } from "../io/safetensors.ts";
import {
  evalOutputs,
  type Forward,
  forwardOf,
  isCounter,
  type Model,
  trainingForward,
} from "./session.ts";

/** The input an `Inference` is compiled for. */
export interface InferenceOptions {
  /** Image height and width in pixels. */
  size: number;
  /** Images per forward (default 1). */
  batch?: number;
  /** Image channels (default 3: RGB, as the data readers make every image). */
  channels?: number;
  /** Seed of the initial values (default 0); loaded weights replace them. */
  seed?: number;
}

/**
 * An eval-mode model on one backend.
 * @example
 * ```ts
 * import { buildModel, Inference, loadWeights, selectBackend } from "./mod.ts";
 * const m = await Inference.create(await selectBackend("cpu"), buildModel("unet"), { size: 224 });
 * await loadWeights(m, "best.safetensors");
 * const { logits, probabilities } = await m.forward(new Float32Array(3 * 224 * 224));
 * m.destroy();
 * ```
 */
export class Inference {
  /** Private: made by `Inference.create`. */
  private constructor(
    /** The backend it runs on. */
    readonly backend: Backend,
    private readonly rt: Runtime,
    /** The compiled evaluation program. */
    readonly program: Exe,
    /** Values of state_dict entries the forward does not read, kept on the host. */
    private readonly offDevice: Map<string, Float32Array>,
    private readonly shapes: Map<string, readonly number[]>,
    /** Images per forward. */
    readonly batch: number,
  ) {}

  /** Builds and compiles `model`'s evaluation graph and writes its seeded initial values. */
  static async create(backend: Backend, model: Model, o: InferenceOptions): Promise<Inference> {
    const dims = { batch: o.batch ?? 1, channels: o.channels ?? 3, height: o.size, width: o.size };
    // The training-mode graph registers every state_dict entry (and only builds; nothing is
    // compiled from it): its registration order seeds the initial values as a Session's does.
    const { g: tg } = trainingForward(model, dims);
    const eg = new Graph();
    const x = eg.input("x", [dims.batch, dims.channels, dims.height, dims.width]);
    const p: Tensor = model({ g: eg, training: false }, x);
    const rt = backend.runtime();
    const program = await rt.load(compile(evalOutputs(p), [], backend.limits, backend.name));
    const offDevice = new Map<string, Float32Array>();
    const shapes = new Map<string, readonly number[]>();
    tg.leaves().forEach((t, i) => {
      if (!t.init || (t.kind !== "param" && t.kind !== "state")) return;
      shapes.set(t.name!, t.shape);
      const v = initValues(t.init, t.shape, o.seed ?? 0, i);
      if (rt.hasLeaf(t.name!)) rt.write(t.name!, v);
      else offDevice.set(t.name!, v);
    });
    return new Inference(backend, rt, program, offDevice, shapes, dims.batch);
  }

  /**
   * Logits and probabilities of one batch: `x` holds `batch` images [batch, C, H, W] preprocessed
   * as in training (resized, / 255); `extra` the model's other inputs (LViT's `text`).
   */
  async forward(x: Float32Array, extra: Record<string, Float32Array> = {}): Promise<Forward> {
    return await forwardOf(this.program, x, extra);
  }

  /** Probabilities alone (what `forward` returns as `probabilities`). */
  async predict(x: Float32Array, extra: Record<string, Float32Array> = {}): Promise<Float32Array> {
    return (await this.forward(x, extra)).probabilities;
  }

  /** Whether the program reads the input `name` (e.g. LViT's `text`). */
  readsInput(name: string): boolean {
    return this.program.program.leaves.has(name);
  }

  /** The state_dict's shapes by name (every entry; `modelOnly` is accepted for symmetry). */
  leafShapes(_modelOnly = true): Map<string, readonly number[]> {
    return new Map(this.shapes);
  }

  /** Overwrites state_dict entries with loaded values. */
  loadState(values: Map<string, Float32Array>): void {
    for (const [name, v] of values) {
      if (this.rt.hasLeaf(name)) this.rt.write(name, v);
      else this.offDevice.set(name, v);
    }
  }

  /** The state_dict's current values (`num_batches_tracked` as int64 scalars, as PyTorch). */
  async state(_modelOnly = true): Promise<Map<string, OutTensor>> {
    const names = [...this.shapes.keys()];
    const onDevice = names.filter((n) => this.rt.hasLeaf(n));
    const read = await this.rt.readMany(onDevice);
    const values = new Map(onDevice.map((n, i) => [n, read[i]]));
    const out = new Map<string, OutTensor>();
    for (const [name, shape] of this.shapes) {
      const data = values.get(name) ?? this.offDevice.get(name)!;
      out.set(name, isCounter(name) ? { shape: [], data, dtype: "I64" } : { shape, data });
    }
    return out;
  }

  /** Frees the program and its buffers. */
  destroy(): void {
    this.program.destroy();
    this.rt.destroy();
  }
}
