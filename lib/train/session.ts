/**
 * A training session on one backend: one compiled training-step program (forward, loss,
 * backward, Adam, BN running stats, loss accumulation) and one evaluation program sharing the
 * parameter buffers. A step writes the batch and the hyper-parameters and submits once.
 */
import { compile, gradients, Graph, initValues, type Tensor } from "../graph/mod.ts";
import { schedule } from "../graph/compile.ts";
import { add, assign } from "../graph/mod.ts";
import type { Ctx } from "../nn/layers.ts";
import type { Backend, Exe, Runtime } from "../backends/select.ts";
import { segLoss } from "./loss.ts";
import { STEP_INPUT } from "../models/lvit_blocks.ts";
import { adamHyper, type AdamOptions, adamUpdate, HYPER } from "./optim.ts";

export type Model = (c: Ctx, x: Tensor) => Tensor;

export interface SessionOptions {
  batch: number;
  channels: number;
  height: number;
  width: number;
  seed: number;
  adam?: AdamOptions;
}

const LOSS_SUM = "metrics.loss_sum";

export class Session {
  /** Adam steps taken so far (the bias-correction counter). */
  t = 0;
  private constructor(
    readonly backend: Backend,
    readonly rt: Runtime,
    readonly train: Exe,
    readonly evaluate: Exe,
    readonly paramNames: string[],
    readonly paramCount: number,
    private readonly o: SessionOptions,
  ) {}

  static async create(backend: Backend, model: Model, o: SessionOptions): Promise<Session> {
    const { batch: B, channels: C, height: H, width: W } = o;
    const tg = new Graph();
    const x = tg.input("x", [B, C, H, W]);
    const y = tg.input("y", [B, 1, H, W]);
    const p = model({ g: tg, training: true }, x);
    const loss = segLoss(p, y);
    // Only parameters the loss depends on get gradients and Adam moments, as in PyTorch, where
    // registered-but-unused modules (LViT keeps several for checkpoint compatibility) have no
    // .grad and Adam skips them.
    const used = new Set(schedule([loss], []));
    const params = tg.params().filter((t) => used.has(t));
    adamUpdate(tg, params, gradients(loss, params), o.adam);
    const acc = tg.state(LOSS_SUM, [1], { kind: "const", value: 0 });
    assign(acc, add(acc, loss));
    const trainProg = compile({ loss }, tg.effects, backend.limits, backend.name);

    const eg = new Graph();
    const xe = eg.input("x", [B, C, H, W]);
    const pe = model({ g: eg, training: false }, xe);
    const evalProg = compile({ p: pe }, [], backend.limits, backend.name);

    const rt = backend.runtime();
    const [train, evaluate] = await Promise.all([rt.load(trainProg), rt.load(evalProg)]);
    // Leaves are initialised from (seed, registration index): independent of the device.
    tg.leaves().forEach((t, i) => {
      // Leaves no program uses (unused modules) have no device buffer and are not written.
      if (t.init && rt.hasLeaf(t.name!)) rt.write(t.name!, initValues(t.init, t.shape, o.seed, i));
    });
    const count = params.reduce((s, t) => s + t.size, 0);
    return new Session(backend, rt, train, evaluate, params.map((t) => t.name!), count, o);
  }

  /**
   * One Adam step on a batch; returns immediately (the GPU runs it asynchronously). `extra`
   * holds the model's other inputs (LViT's `text`); the step counter that keys dropout masks
   * is written here when the model has dropout.
   */
  step(x: Float32Array, y: Float32Array, lr: number, extra: Record<string, Float32Array> = {}) {
    this.t++;
    const inputs: Record<string, Float32Array> = { ...extra, x, y };
    inputs[HYPER] = adamHyper(lr, this.t, this.o.adam);
    if (this.train.program.leaves.has(STEP_INPUT)) inputs[STEP_INPUT] = Float32Array.of(this.t);
    this.train.run(inputs);
  }

  /** Sum of the losses since the last call (a sync point), then resets the sum. */
  async takeLossSum(): Promise<number> {
    const v = (await this.rt.read(LOSS_SUM))[0];
    this.rt.write(LOSS_SUM, new Float32Array(1));
    return v;
  }

  /** Eval-mode probabilities for one batch (`extra`: the model's other inputs, e.g. text). */
  async predict(x: Float32Array, extra: Record<string, Float32Array> = {}): Promise<Float32Array> {
    this.evaluate.run({ ...extra, x });
    return await this.evaluate.read("p");
  }

  /** Current values of every parameter, by state_dict name. */
  async parameters(): Promise<Map<string, Float32Array>> {
    const m = new Map<string, Float32Array>();
    for (const n of this.paramNames) m.set(n, await this.rt.read(n));
    return m;
  }

  destroy(): void {
    this.train.destroy();
    this.evaluate.destroy();
    this.rt.destroy();
  }
}
