/**
 * The CPU backend's lowering: a table from op (by its `OpDef`, the handle `defineOp` returns) to
 * the kernels of kernels/cpu/, and `lower`, which plans a graph (lib/graph/plan.ts) and pairs
 * every planned node with its kernel, specialised to the node's static shapes.
 */
import { type Attrs, getOp, type OpDef, type Tensor } from "../../graph/graph.ts";
import { type DeviceLimits, type Plan, plan, SPEC_LIMITS } from "../../graph/plan.ts";
import { normAxes, numel, type Shape } from "../../graph/shape.ts";
import {
  addDef,
  affineDef,
  bceDef,
  bceGradDef,
  divDef,
  expandDef,
  expDef,
  fmaDef,
  logDef,
  mulDef,
  negDef,
  reluDef,
  reluGradDef,
  rsqrtDef,
  sigmoidDef,
  sigmoidGradDef,
  sqrtDef,
  squareDef,
  stepGtDef,
  stepLtDef,
  subDef,
} from "../../graph/ops/elementwise.ts";
import { concatDef, padDef, sliceDef, sumDef } from "../../graph/ops/shape_ops.ts";
import {
  conv2dBwdDataDef,
  conv2dBwdWeightDef,
  conv2dDef,
  convGeom,
  convTGeom,
  convTransposeBwdDataDef,
  convTransposeBwdWeightDef,
  convTransposeDef,
} from "../../graph/ops/conv.ts";
import {
  maxpool2dBwdDef,
  maxpool2dDef,
  poolGeom,
  poolSumDef,
  upsampleNearestDef,
} from "../../graph/ops/pool.ts";
import { adamDef, assignDef } from "../../graph/ops/optim.ts";
import {
  bnApplyDef,
  bnBwdDataDef,
  bnBwdSumsDef,
  bnGeom,
  bnRunningUpdateDef,
  bnStatsDef,
} from "../../graph/ops/norm.ts";
import {
  matmulDef,
  mmGeom,
  permPlan,
  permuteDef,
  rows,
  softmaxDef,
  softmaxGradDef,
} from "../../graph/ops/transformer.ts";
import {
  lnApplyDef,
  lnBwdDataDef,
  lnBwdParamsDef,
  lnGeom,
  lnStatsDef,
} from "../../graph/ops/layer_norm.ts";
import {
  axisGeom,
  dropoutDef,
  dropoutGeom,
  geluDef,
  geluGradDef,
  maxAxisDef,
  maxAxisGradDef,
} from "../../graph/ops/misc.ts";
import type { CpuKernel } from "../../../kernels/cpu/types.ts";
import { elementwiseCpu, jsNum } from "../../../kernels/cpu/elementwise.ts";
import { sumCpu } from "../../../kernels/cpu/reduce.ts";
import { concatCpu, padCpu, sliceCpu } from "../../../kernels/cpu/movement.ts";
import {
  conv2dBwdDataCpu,
  conv2dBwdWeightCpu,
  conv2dCpu,
  convTransposeBwdDataCpu,
  convTransposeBwdWeightCpu,
  convTransposeCpu,
} from "../../../kernels/cpu/conv.ts";
import {
  maxpoolBwdCpu,
  maxpoolCpu,
  poolSumCpu,
  upsampleNearestCpu,
} from "../../../kernels/cpu/pool.ts";
import { adamCpu, assignCpu } from "../../../kernels/cpu/optim.ts";
import {
  bnApplyCpu,
  bnBwdDataCpu,
  bnBwdSumsCpu,
  bnRunningUpdateCpu,
  bnStatsCpu,
} from "../../../kernels/cpu/norm.ts";
import {
  matmulCpu,
  permuteCpu,
  softmaxCpu,
  softmaxGradCpu,
} from "../../../kernels/cpu/transformer.ts";
import {
  lnApplyCpu,
  lnBwdDataCpu,
  lnBwdParamsCpu,
  lnStatsCpu,
} from "../../../kernels/cpu/layer_norm.ts";
import {
  dropoutCpu,
  geluCpu,
  geluGradCpu,
  maxAxisCpu,
  maxAxisGradCpu,
} from "../../../kernels/cpu/misc.ts";

/** Makes one node's CPU kernel from its static input shapes, attributes and output shape. */
export type CpuLowering<A extends Attrs = Attrs> = (
  ins: Shape[],
  attrs: A,
  outShape: Shape,
) => CpuKernel;

/**
 * The lowering table: one entry per op that runs on the CPU. Alias ops (`reshape`) have none:
 * they share their input's buffer.
 */
export const cpuLowerings: Map<OpDef, CpuLowering> = new Map();

/** Adds `op`'s lowering; a second one for the same op is a programming error. */
function on<A extends Attrs>(op: OpDef<A>, f: CpuLowering<A>): void {
  const key = op as unknown as OpDef;
  if (cpuLowerings.has(key)) throw new Error(`op '${op.name}' lowered twice for cpu`);
  cpuLowerings.set(key, f as unknown as CpuLowering);
}

/**
 * An elementwise op as one generated loop nest over a JS expression of its operands, evaluated
 * in float64 and rounded to f32 on the store (kernels/cpu/elementwise.ts). Prefer branchless
 * forms: a data-dependent branch costs ~4x on random signs.
 */
function ew<A extends Attrs>(op: OpDef<A>, expr: (v: string[], a: A) => string): void {
  on(op, (ins, a, out) => elementwiseCpu(ins, out, (v) => expr(v, a)));
}

// Elementwise: JS expressions of the operand values.
ew(addDef, ([a, b]) => `${a} + ${b}`);
ew(subDef, ([a, b]) => `${a} - ${b}`);
ew(mulDef, ([a, b]) => `${a} * ${b}`);
ew(divDef, ([a, b]) => `${a} / ${b}`);
ew(fmaDef, ([a, b, c]) => `${a} * ${b} + ${c}`);
ew(affineDef, ([v], { a, b }) => `${jsNum(Math.fround(a))} * ${v} + ${jsNum(Math.fround(b))}`);
ew(negDef, ([v]) => `-${v}`);
ew(squareDef, ([v]) => `${v} * ${v}`);
ew(expDef, ([v]) => `Math.exp(${v})`);
ew(logDef, ([v]) => `Math.log(${v})`);
ew(sqrtDef, ([v]) => `Math.sqrt(${v})`);
ew(rsqrtDef, ([v]) => `1 / Math.sqrt(${v})`);
// Branchless: V8 compiles Math.max and ternaries to branches, 4x slower on random signs.
// (v + |v|) / 2 is exact for finite v (0 for v <= 0, -0 included); -Infinity gives NaN.
ew(reluDef, ([v]) => `(${v} + Math.abs(${v})) * 0.5`);
// Branchless, as relu (a boolean times a number compiles to a select). Differs from the
// reference only where d is infinite or NaN at an inactive unit (NaN, not 0).
ew(reluGradDef, ([v, d]) => `${d} * (${v} > 0)`);
ew(sigmoidDef, ([v]) => `1 / (1 + Math.exp(-${v}))`);
ew(sigmoidGradDef, ([s, d]) => `${d} * ${s} * (1 - ${s})`);
ew(stepGtDef, ([v], { t }) => `+(${v} > ${jsNum(Math.fround(t))})`);
ew(stepLtDef, ([v], { t }) => `+(${v} < ${jsNum(Math.fround(t))})`);
ew(expandDef, ([v]) => v);
ew(
  bceDef,
  ([p, y]) =>
    `-(${y} * Math.max(Math.log(${p}), -100) + (1 - ${y}) * Math.max(Math.log(1 - ${p}), -100))`,
);
ew(bceGradDef, ([p, y, d]) => `${d} * (${p} - ${y}) / Math.max(${p} * (1 - ${p}), 1e-12)`);

// Reductions and movement.
on(sumDef, (ins, a) => sumCpu(ins[0], normAxes("sum", ins[0], a.axes)));
on(sliceDef, (ins, a) => sliceCpu(ins[0], a.axis, a.start, a.size));
on(padDef, (ins, a) => padCpu(ins[0], a.axis, a.before, a.after));
on(concatDef, (ins, a) => concatCpu(ins, a.axis));

// Convolutions.
on(conv2dDef, (ins, a) => conv2dCpu(convGeom(ins[0], ins[1], a), ins.length === 3));
on(conv2dBwdDataDef, (ins, a) => conv2dBwdDataCpu(convGeom(a.inShape, ins[1], a)));
on(conv2dBwdWeightDef, (ins, a) => conv2dBwdWeightCpu(convGeom(ins[0], a.wShape, a)));
on(convTransposeDef, (ins) => convTransposeCpu(convTGeom(ins[0], ins[1]), ins.length === 3));
on(convTransposeBwdDataDef, (ins, _a, out) => convTransposeBwdDataCpu(convTGeom(out, ins[1])));
on(convTransposeBwdWeightDef, (ins, a) => convTransposeBwdWeightCpu(convTGeom(ins[0], a.wShape)));

// Pooling and resampling.
on(maxpool2dDef, (ins, a) => maxpoolCpu(poolGeom("maxpool2d", ins, a)));
on(maxpool2dBwdDef, (ins, a) => maxpoolBwdCpu(poolGeom("maxpool2d_bwd", ins, a)));
on(upsampleNearestDef, (ins, a) => {
  const [B, C, H, W] = ins[0];
  return upsampleNearestCpu(B, C, H, W, a.f);
});
on(poolSumDef, (ins, a) => {
  const [B, C, H, W] = ins[0];
  return poolSumCpu(B, C, H, W, a.f);
});

// Effects.
on(assignDef, () => assignCpu());
on(adamDef, (ins, a) => adamCpu(numel(ins[0]), a));

// Batch norm.
on(bnStatsDef, (ins) => bnStatsCpu(bnGeom("bn_stats", ins)));
on(bnApplyDef, (ins, a) => bnApplyCpu(bnGeom("bn_apply", ins), a.eps, !!a.relu));
on(bnBwdSumsDef, (ins, a) => bnBwdSumsCpu(bnGeom("bn_bwd_sums", ins), a.eps, !!a.relu));
on(bnBwdDataDef, (ins, a) => bnBwdDataCpu(bnGeom("bn_bwd_data", ins), a.eps, !!a.relu));
on(bnRunningUpdateDef, (ins, a) => bnRunningUpdateCpu(ins[0][0], a.momentum, a.unbiased));

// Transformer: matmul, permute, softmax.
on(matmulDef, (ins, a) => matmulCpu(mmGeom(ins, a)));
on(permuteDef, (ins, a) => {
  const p = permPlan(ins[0], a.perm);
  return permuteCpu(p.sizes, p.strides);
});
on(softmaxDef, (ins) => {
  const { R, L } = rows("softmax", ins);
  return softmaxCpu(R, L);
});
on(softmaxGradDef, (ins) => {
  const { R, L } = rows("softmax_grad", ins);
  return softmaxGradCpu(R, L);
});

// Layer norm.
on(lnStatsDef, (ins) => {
  const { R, C } = lnGeom("ln_stats", ins);
  return lnStatsCpu(R, C);
});
on(lnApplyDef, (ins, a) => {
  const { R, C } = lnGeom("ln_apply", ins);
  return lnApplyCpu(R, C, Math.fround(a.eps));
});
on(lnBwdDataDef, (ins, a) => {
  const { R, C } = lnGeom("ln_bwd_data", ins);
  return lnBwdDataCpu(R, C, Math.fround(a.eps));
});
on(lnBwdParamsDef, (ins, a) => {
  const { R, C } = lnGeom("ln_bwd_params", ins);
  return lnBwdParamsCpu(R, C, Math.fround(a.eps));
});

// GELU, dropout, max over an axis.
on(geluDef, (ins) => geluCpu(numel(ins[0])));
on(geluGradDef, (ins) => geluGradCpu(numel(ins[0])));
on(dropoutDef, (ins, a) => dropoutCpu(dropoutGeom(ins, a)));
on(maxAxisDef, (ins, a) => maxAxisCpu(axisGeom("max_axis", ins, a)));
on(maxAxisGradDef, (ins, a) => maxAxisGradCpu(axisGeom("max_axis_grad", ins, a)));

/** The CPU kernel of one node of `op`; throws for an op without a cpu lowering. */
export function cpuKernel(op: OpDef, ins: Shape[], attrs: Attrs, outShape: Shape): CpuKernel {
  const f = cpuLowerings.get(op);
  if (!f) throw new Error(`op '${op.name}' has no cpu kernel`);
  return f(ins, attrs, outShape);
}

/** One node on the CPU backend: its kernel and the buffers it reads and writes. */
export interface CpuStep {
  /** `op#id`, for profiles and error messages. */
  label: string;
  /** The kernel specialised to this node's shapes. */
  kernel: CpuKernel;
  /** What the kernel was made from, so another thread can make the same one (`cpuKernel`). */
  node: { op: string; inShapes: Shape[]; attrs: Attrs; outShape: Shape };
  /** Buffer and element count per input (in-place targets included). */
  ins: { buffer: number; size: number }[];
  /** Output buffer and element count; size 0 for effects. */
  out: { buffer: number; size: number };
  /** Buffer and element count of each temporary the kernel asked for. */
  scratch: { buffer: number; size: number }[];
}

/** A plan lowered to CPU kernels, ready for `CpuRuntime.load`. */
export interface CpuProgram extends Plan {
  /** The backend the steps were made for. */
  target: "cpu";
  /** One step per planned node, in order. */
  steps: CpuStep[];
}

/** Plans a graph (lib/graph/plan.ts, with each node's CPU scratch) and pairs nodes with kernels. */
export function lower(
  outputs: Record<string, Tensor>,
  effects: readonly Tensor[] = [],
  limits: DeviceLimits = SPEC_LIMITS,
): CpuProgram {
  const kernels = new Map<Tensor, CpuKernel>();
  const p = plan(outputs, effects, limits, (t) => {
    const k = cpuKernel(getOp(t.op), t.inputs.map((x) => x.shape), t.attrs, t.shape);
    kernels.set(t, k);
    return k.scratch ?? [];
  });
  const steps = p.nodes.map((n): CpuStep => {
    const t = n.tensor;
    const kernel = kernels.get(t)!;
    const sizes = kernel.scratch ?? [];
    return {
      label: n.label,
      kernel,
      node: { op: t.op, inShapes: t.inputs.map((x) => x.shape), attrs: t.attrs, outShape: t.shape },
      ins: t.inputs.map((x, k) => ({ buffer: n.ins[k], size: x.size })),
      out: n.out < 0 ? { buffer: -1, size: 0 } : { buffer: n.out, size: t.size },
      scratch: n.scratch.map((b, k) => ({ buffer: b, size: sizes[k] })),
    };
  });
  return { ...p, target: "cpu", steps };
}
