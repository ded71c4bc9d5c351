/**
 * A training session on one backend: one compiled training-step program (forward, loss,
 * backward, Adam, BN running stats, loss accumulation) and one evaluation program sharing the
 * parameter buffers. A step writes the batch and the hyper-parameters and submits once.
 */
import { gradients, Graph, initValues, type Tensor } from "../graph/mod.ts";
import { compile } from "../backends/compile.ts";
import { schedule } from "../graph/plan.ts";
import { add, assign } from "../graph/mod.ts";
import type { Ctx } from "../nn/layers.ts";
import type { Backend, Exe, Runtime } from "../backends/select.ts";
import { segLoss } from "./loss.ts";
import { semiLoss } from "./lv_loss.ts";
import { STEP_INPUT } from "../models/lvit_blocks.ts";
import { adamHyper, type AdamOptions, adamUpdate, HYPER } from "./optim.ts";
import type { OutTensor } from "../io/safetensors.ts";

/** A model function: probabilities [B, 1, H, W] from images x, built into `c.g`. */
export type Model = (c: Ctx, x: Tensor) => Tensor;

/** The static shapes and training settings a session's programs are compiled for. */
export interface SessionOptions {
  /** Images per training step. */
  batch: number;
  /** Image channels. */
  channels: number;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** Seed of the parameter initialisation. */
  seed: number;
  /** Adam settings (PyTorch's defaults when omitted). */
  adam?: AdamOptions;
  /** Weights of the Dice and BCE terms (default 0.5 each, the reference). */
  loss?: { dice?: number; bce?: number };
  /** Also compile the unlabeled-batch step (pseudo labels + LV loss of weight lvWeight). */
  semi?: { lvWeight: number };
}

/** What an eval forward returns for one batch. */
export interface Forward {
  /**
   * The sigmoid head's input [B, 1, H, W], or null when the model's output is not a sigmoid
   * (LViT with several output channels returns raw scores as its probabilities).
   */
  logits: Float32Array | null;
  /** The model's output [B, 1, H, W]: per-pixel foreground probabilities. */
  probabilities: Float32Array;
}

/**
 * The model's output and, where that is a sigmoid, its input: the outputs an evaluation program
 * is compiled with (`p`, and `logits` when there is one).
 */
export function evalOutputs(p: Tensor): Record<string, Tensor> {
  return p.op === "sigmoid" ? { p, logits: p.inputs[0] } : { p };
}

/**
 * The training-mode forward graph of `model` on images x [B, C, H, W] with masks y [B, 1, H, W],
 * inputs registered first: every leaf's registration index, which seeds its initial value, is
 * then the same in every graph built from here (training steps, state dicts, inference).
 */
export function trainingForward(
  model: Model,
  o: Pick<SessionOptions, "batch" | "channels" | "height" | "width">,
): { g: Graph; p: Tensor; y: Tensor } {
  const { batch: B, channels: C, height: H, width: W } = o;
  const g = new Graph();
  const x = g.input("x", [B, C, H, W]);
  const y = g.input("y", [B, 1, H, W]);
  return { g, p: model({ g, training: true }, x), y };
}

/** Input name of the contrastive masks of the LV loss. */
const CONTRASTIVE_INPUT = "c";

const LOSS_SUM = "metrics.loss_sum";

/** A persistent leaf of the training graph (parameter or state), as checkpoints list it. */
interface LeafInfo {
  name: string;
  shape: readonly number[];
}

/**
 * Whether a leaf belongs to the model's state_dict (parameters and buffers) rather than to the
 * trainer (Adam moments `optim.*`, accumulators `metrics.*`).
 */
export function isModelState(name: string): boolean {
  return !name.startsWith("optim.") && !name.startsWith("metrics.");
}

/** Runs an evaluation program on one batch and reads its probabilities and logits. */
export async function forwardOf(
  exe: Exe,
  x: Float32Array,
  extra: Record<string, Float32Array>,
): Promise<Forward> {
  exe.run({ ...extra, x });
  const probabilities = await exe.read("p");
  const logits = exe.program.outputs.has("logits") ? await exe.read("logits") : null;
  return { logits, probabilities };
}

/** Whether a state_dict entry is BatchNorm's step counter (PyTorch: an int64 scalar). */
export const isCounter = (name: string): boolean => name.endsWith("num_batches_tracked");

/**
 * A model compiled for training and evaluation on one backend, with its parameters, batch-norm
 * statistics and Adam moments held by the runtime. Make one with `Session.create`.
 */
export class Session {
  /** Adam steps taken so far (the bias-correction counter). */
  t = 0;
  /** Private: sessions are made by `Session.create`. */
  private constructor(
    readonly backend: Backend,
    readonly rt: Runtime,
    readonly train: Exe,
    readonly evaluate: Exe,
    readonly paramNames: string[],
    readonly paramCount: number,
    private readonly o: SessionOptions,
    private readonly leafInfo: LeafInfo[],
    /** The unlabeled-batch training program (semi-supervised sessions only). */
    readonly semiTrain: Exe | null,
    /** Values of leaves no program uses (unused modules): kept on the host for checkpoints. */
    private readonly offDevice: Map<string, Float32Array>,
  ) {}

  /**
   * Builds the training-step and evaluation graphs of `model`, compiles them for `backend`,
   * loads them into one runtime and writes the seeded initial values of every leaf.
   */
  static async create(backend: Backend, model: Model, o: SessionOptions): Promise<Session> {
    const { batch: B, channels: C, height: H, width: W } = o;
    /**
     * One training-step graph: forward, `lossOf`, backward, Adam and the loss accumulator.
     * Every training graph registers the same leaves under the same names, so programs
     * compiled from them share parameters, batch-norm statistics and Adam moments at run time.
     */
    const trainGraph = (lossOf: (g: Graph, p: Tensor, y: Tensor) => Tensor) => {
      const { g, p, y } = trainingForward(model, o);
      const loss = lossOf(g, p, y);
      // Only parameters the loss depends on get gradients and Adam moments, as in PyTorch,
      // where registered-but-unused modules (LViT keeps several for checkpoint compatibility)
      // have no .grad and Adam skips them.
      const used = new Set(schedule([loss], []));
      const params = g.params().filter((t) => used.has(t));
      adamUpdate(g, params, gradients(loss, params), o.adam);
      const acc = g.state(LOSS_SUM, [1], { kind: "const", value: 0 });
      assign(acc, add(acc, loss));
      return { g, params, prog: compile({ loss }, g.effects, backend.limits, backend.name) };
    };
    const sup = trainGraph((_, p, y) => segLoss(p, y, o.loss));
    const tg = sup.g;
    const params = sup.params;
    const semi = o.semi
      ? trainGraph((g, p, y) =>
        semiLoss(p, y, g.input(CONTRASTIVE_INPUT, [B, 1, H, W]), {
          dice: o.loss?.dice ?? 0.5,
          bce: o.loss?.bce ?? 0.5,
          lv: o.semi!.lvWeight,
        })
      )
      : null;

    const eg = new Graph();
    const xe = eg.input("x", [B, C, H, W]);
    const pe = model({ g: eg, training: false }, xe);
    const evalProg = compile(evalOutputs(pe), [], backend.limits, backend.name);

    const rt = backend.runtime();
    const [train, evaluate, semiExe] = await Promise.all([
      rt.load(sup.prog),
      rt.load(evalProg),
      semi ? rt.load(semi.prog) : Promise.resolve(null),
    ]);
    // Leaves are initialised from (seed, registration index): independent of the device.
    // Leaves no program uses (unused modules) have no device buffer: their values stay here.
    const offDevice = new Map<string, Float32Array>();
    tg.leaves().forEach((t, i) => {
      if (!t.init) return;
      const v = initValues(t.init, t.shape, o.seed, i);
      if (rt.hasLeaf(t.name!)) rt.write(t.name!, v);
      else offDevice.set(t.name!, v);
    });
    const count = params.reduce((s, t) => s + t.size, 0);
    const info = tg.leaves().filter((t) => t.kind === "param" || t.kind === "state")
      .map((t) => ({ name: t.name!, shape: t.shape }));
    return new Session(
      backend,
      rt,
      train,
      evaluate,
      params.map((t) => t.name!),
      count,
      o,
      info,
      semiExe,
      offDevice,
    );
  }

  /**
   * One Adam step on a batch; returns immediately (the GPU runs it asynchronously). `extra`
   * holds the model's other inputs (LViT's `text`); the step counter that keys dropout masks
   * is written here when the model has dropout.
   */
  step(x: Float32Array, y: Float32Array, lr: number, extra: Record<string, Float32Array> = {}) {
    this.runStep(this.train, { ...extra, x, y }, lr);
  }

  /**
   * One Adam step on an unlabeled batch (semi-supervised): `y` holds the pseudo labels and `c`
   * the contrastive masks of the LV loss. Needs a session created with `semi`.
   */
  stepSemi(
    x: Float32Array,
    y: Float32Array,
    c: Float32Array,
    lr: number,
    extra: Record<string, Float32Array> = {},
  ) {
    if (!this.semiTrain) throw new Error("stepSemi: the session was created without semi");
    const inputs: Record<string, Float32Array> = { ...extra, x, y };
    if (this.semiTrain.program.leaves.has(CONTRASTIVE_INPUT)) inputs[CONTRASTIVE_INPUT] = c;
    this.runStep(this.semiTrain, inputs, lr);
  }

  /** Counts the Adam step, adds its hyperparameters (and the dropout step key) and submits. */
  private runStep(exe: Exe, inputs: Record<string, Float32Array>, lr: number) {
    this.t++;
    inputs[HYPER] = adamHyper(lr, this.t, this.o.adam);
    if (exe.program.leaves.has(STEP_INPUT)) inputs[STEP_INPUT] = Float32Array.of(this.t);
    exe.run(inputs);
  }

  /** Sum of the losses since the last call (a sync point), then resets the sum. */
  async takeLossSum(): Promise<number> {
    const v = (await this.rt.read(LOSS_SUM))[0];
    this.rt.write(LOSS_SUM, new Float32Array(1));
    return v;
  }

  /** Whether a program of the session reads the input `name` (e.g. LViT's `text`). */
  readsInput(name: string): boolean {
    return this.train.program.leaves.has(name) || this.evaluate.program.leaves.has(name);
  }

  /** Eval-mode probabilities for one batch (`extra`: the model's other inputs, e.g. text). */
  async predict(x: Float32Array, extra: Record<string, Float32Array> = {}): Promise<Float32Array> {
    this.evaluate.run({ ...extra, x });
    return await this.evaluate.read("p");
  }

  /**
   * Eval-mode logits and probabilities for one batch (`extra`: the model's other inputs, e.g.
   * LViT's `text`).
   */
  async forward(x: Float32Array, extra: Record<string, Float32Array> = {}): Promise<Forward> {
    return await forwardOf(this.evaluate, x, extra);
  }

  /** Current values of every parameter, by state_dict name. */
  async parameters(): Promise<Map<string, Float32Array>> {
    const values = await this.rt.readMany(this.paramNames);
    return new Map(this.paramNames.map((n, i) => [n, values[i]]));
  }

  /**
   * Every leaf of the training graph by name, in registration order: the model's state_dict
   * (with `num_batches_tracked` as int64 scalars, as PyTorch writes them) and, unless
   * `modelOnly`, the trainer's Adam moments and accumulators. Leaves no program uses keep their
   * initial (or loaded) values. With `view`, the CPU backend hands out its leaves themselves
   * (no copy), valid only until the next step: for a checkpoint written before training goes on.
   */
  async state(modelOnly = false, view = false): Promise<Map<string, OutTensor>> {
    const out = new Map<string, OutTensor>();
    const wanted = this.leafInfo.filter((l) => !modelOnly || isModelState(l.name));
    const onDevice = wanted.filter((l) => this.rt.hasLeaf(l.name)).map((l) => l.name);
    const read = await (view ? this.rt.viewMany(onDevice) : this.rt.readMany(onDevice));
    const values = new Map(onDevice.map((n, i) => [n, read[i]]));
    for (const l of wanted) {
      const data = values.get(l.name) ?? this.offDevice.get(l.name);
      if (!data) continue;
      out.set(
        l.name,
        isCounter(l.name) ? { shape: [], data, dtype: "I64" } : { shape: l.shape, data },
      );
    }
    return out;
  }

  /** Expected leaf shapes by name (for matching checkpoints); `modelOnly` as in `state`. */
  leafShapes(modelOnly = false): Map<string, readonly number[]> {
    const m = new Map<string, readonly number[]>();
    for (const l of this.leafInfo) {
      if (!modelOnly || isModelState(l.name)) m.set(l.name, l.shape);
    }
    return m;
  }

  /** Overwrites leaves with loaded values (names from `leafShapes`); sets the Adam step count. */
  loadState(values: Map<string, Float32Array>, adamSteps?: number): void {
    for (const [name, v] of values) {
      if (this.rt.hasLeaf(name)) this.rt.write(name, v);
      else this.offDevice.set(name, v);
    }
    if (adamSteps !== undefined) this.t = adamSteps;
  }

  /** Frees the programs and the runtime with all its leaves. */
  destroy(): void {
    this.train.destroy();
    this.semiTrain?.destroy();
    this.evaluate.destroy();
    this.rt.destroy();
  }
}
