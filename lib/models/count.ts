/**
 * Model accounting from the graph itself (no hand-written tables): registered and used
 * parameters, thop-style MACs as lvit-reference.md 1.8 defines them (the convention behind the
 * paper's "54.1 G"), exact MACs, a per-module breakdown, and the planned peak memory of the
 * training and evaluation programs (from the compiler's buffer plan).
 */
import { add, assign, getOp, gradients, Graph, type Tensor } from "../graph/mod.ts";
import { compile } from "../backends/compile.ts";
import { schedule } from "../graph/plan.ts";
import type { Ctx } from "../nn/layers.ts";
import { segLoss } from "../train/loss.ts";
import { adamUpdate } from "../train/optim.ts";

/** Builds a forward graph: probabilities for images x (any other inputs it creates itself). */
export type ModelFn = (c: Ctx, x: Tensor) => Tensor;

/** One row of the per-module table (a top-level module of the state_dict). */
export interface ModuleRow {
  /** The module's state_dict prefix (`down1`, `outc`...). */
  module: string;
  /** Shape of the module's last forward node; null when the module never runs. */
  shape: number[] | null;
  /** Sizes of the module's parameter leaves, summed. */
  paramsRegistered: number;
  /** Of those, the parameters the output depends on. */
  paramsUsed: number;
  /** thop-style MACs of the module's nodes (see `ModelCount.macsReference`). */
  macsReference: number;
  /** Exact MACs of the module's nodes (see `ModelCount.macs`). */
  macs: number;
}

/** Parameter and MAC counts of a model, in total and per top-level module. */
export interface ModelCount {
  /** Sum of the sizes of every parameter leaf (the state_dict's parameters()). */
  paramsRegistered: number;
  /** Parameters the output depends on. */
  paramsUsed: number;
  /**
   * thop's parameter convention: used parameters that belong to leaf modules, i.e. without the
   * bare nn.Parameter position embeddings.
   */
  paramsThop: number;
  /** thop-style MACs of one forward (1.8): conv/linear + 4 x norm inputs; attention = 0. */
  macsReference: number;
  /** Every multiply-accumulate of conv, transposed conv and matmul nodes, attention included. */
  macs: number;
  /** The same counts per top-level module, in order of first appearance. */
  modules: ModuleRow[];
}

/** Follows views (reshape, permute) back to a parameter: x W^T against a weight is a Linear. */
function isWeight(t: Tensor): boolean {
  if (t.kind === "param") return true;
  return t.kind === "node" && (t.op === "reshape" || t.op === "permute") && isWeight(t.inputs[0]);
}

/** Whether t is computed from a BN running-variance state (an evaluation-mode batch norm). */
function fromRunningVar(t: Tensor, depth = 6): boolean {
  if (t.kind === "state") return t.name!.endsWith(".running_var");
  if (t.kind !== "node" || depth === 0) return false;
  return t.inputs.some((x) => fromRunningVar(x, depth - 1));
}

/** thop's MACs of one node (lvit-reference.md 1.8). */
export function referenceMacs(t: Tensor): number {
  const ins = t.inputs.map((x) => x.shape);
  switch (t.op) {
    case "conv2d":
      return getOp("conv2d").macs!(ins, t.attrs, t.shape);
    case "conv_transpose": {
      // thop's calculate_conv2d_flops does not special-case transposed convolutions: it counts
      // output elements x input channels x kernel area, f^2 times the true work here.
      const [cin, , kh, kw] = ins[1];
      return t.size * cin * kh * kw;
    }
    case "matmul":
      // Linear layers count; the activation-by-activation attention products do not.
      return t.inputs.some(isWeight) ? getOp("matmul").macs!(ins, t.attrs, t.shape) : 0;
    case "ln_apply":
    case "bn_apply":
      return 4 * t.inputs[0].size;
    case "fma":
      // Evaluation-mode BN is x * scale + shift with the scale from the running variance.
      return fromRunningVar(t.inputs[1]) ? 4 * t.inputs[0].size : 0;
    default:
      return 0;
  }
}

/** Exact MACs of one node: whatever its op table entry declares. */
export function exactMacs(t: Tensor): number {
  if (t.kind !== "node") return 0;
  const def = getOp(t.op);
  return def.macs ? def.macs(t.inputs.map((x) => x.shape), t.attrs, t.shape) : 0;
}

/**
 * Floating-point operations of one run of a compiled program: 2 x the exact MACs of its conv,
 * transposed-conv (forward and both gradients) and matmul nodes. Elementwise work is not counted,
 * as FLOP/s figures of other frameworks do not count it either.
 */
export function programFlops(order: readonly Tensor[]): number {
  return 2 * order.reduce((s, t) => s + exactMacs(t), 0);
}

const topModule = (name: string) => name.split(".")[0] || "(top)";

/** Counts a forward graph `g` whose output is `out` (build it in evaluation mode). */
export function countGraph(g: Graph, out: Tensor): ModelCount {
  const live = schedule([out], []);
  const liveSet = new Set(live);
  const rows = new Map<string, ModuleRow>();
  const row = (m: string) => {
    let r = rows.get(m);
    if (!r) {
      r = { module: m, shape: null, paramsRegistered: 0, paramsUsed: 0, macsReference: 0, macs: 0 };
      rows.set(m, r);
    }
    return r;
  };
  const c: ModelCount = {
    paramsRegistered: 0,
    paramsUsed: 0,
    paramsThop: 0,
    macsReference: 0,
    macs: 0,
    modules: [],
  };
  for (const p of g.params()) {
    const r = row(topModule(p.name!));
    r.paramsRegistered += p.size;
    c.paramsRegistered += p.size;
    if (liveSet.has(p)) {
      r.paramsUsed += p.size;
      c.paramsUsed += p.size;
      if (!p.name!.endsWith("position_embeddings")) c.paramsThop += p.size;
    }
  }
  for (const t of live) {
    if (t.kind !== "node") continue;
    const r = row(topModule(t.scope));
    const ref = referenceMacs(t), ex = exactMacs(t);
    r.macsReference += ref;
    r.macs += ex;
    c.macsReference += ref;
    c.macs += ex;
    // Creation order is topological, so the last node seen is the module's output.
    r.shape = [...t.shape];
  }
  c.modules = [...rows.values()];
  return c;
}

/** Builds `model` for images [batch, channels, size, size] in evaluation mode and counts it. */
export function countModel(
  model: ModelFn,
  batch: number,
  size: number,
  channels = 3,
): ModelCount {
  const g = new Graph();
  const x = g.input("x", [batch, channels, size, size]);
  const out = model({ g, training: false }, x);
  return countGraph(g, out);
}

/** Limits that never bind: planning only, no device (buffers beyond 4 GiB are still planned). */
const PLAN_LIMITS = {
  maxStorageBufferBindingSize: Number.MAX_SAFE_INTEGER,
  maxStorageBuffersPerShaderStage: 1 << 20,
  maxComputeWorkgroupsPerDimension: 65535,
};

/** Planned peak memory of one compiled program, from the compiler's buffer plan. */
export interface PeakMemory {
  /** Leaves (inputs, parameters, BN and optimiser states) + planned temporaries, bytes. */
  bytes: number;
  /** The leaves alone, bytes. */
  leafBytes: number;
  /** All temporaries at once (the planned peak above the leaves), bytes. */
  tempBytes: number;
}

/**
 * Planned peak memory of one training step, built as the training session builds it: forward in
 * training mode, the reference loss, backward, Adam and the loss accumulator. Only parameters the
 * loss depends on get gradients and Adam moments, as PyTorch's Adam skips parameters whose
 * gradient is None; registered-but-unused parameters are not part of the program.
 */
export function trainPeak(model: ModelFn, batch: number, size: number, channels = 3): PeakMemory {
  const g = new Graph();
  const x = g.input("x", [batch, channels, size, size]);
  const y = g.input("y", [batch, 1, size, size]);
  const p = model({ g, training: true }, x);
  const loss = segLoss(p, y);
  const live = new Set(schedule([loss], []));
  const params = g.params().filter((t) => live.has(t));
  adamUpdate(g, params, gradients(loss, params));
  const acc = g.state("metrics.loss_sum", [1], { kind: "const", value: 0 });
  assign(acc, add(acc, loss));
  const prog = compile({ loss }, g.effects, PLAN_LIMITS, "webgpu");
  return {
    bytes: prog.leafBytes + prog.tempBytes,
    leafBytes: prog.leafBytes,
    tempBytes: prog.tempBytes,
  };
}

/** Planned peak memory of the evaluation program (probabilities for one batch). */
export function evalPeak(model: ModelFn, batch: number, size: number, channels = 3): PeakMemory {
  const g = new Graph();
  const x = g.input("x", [batch, channels, size, size]);
  const p = model({ g, training: false }, x);
  const prog = compile({ p }, [], PLAN_LIMITS, "webgpu");
  return {
    bytes: prog.leafBytes + prog.tempBytes,
    leafBytes: prog.leafBytes,
    tempBytes: prog.tempBytes,
  };
}
