/**
 * The WebGPU backend's lowering: a table from op (by its `OpDef`, the handle `defineOp` returns)
 * to the WGSL kernels of kernels/webgpu/, and `lower`, which plans a graph (lib/graph/plan.ts)
 * and turns every planned node into its dispatches with their buffer bindings. Device limits
 * per dispatch (storage buffers, writable aliasing) are checked here, naming the node.
 *
 * The adapter class (`limits.kernels`, set by lib/backends/webgpu/device.ts from the adapter or
 * LVIT_WEBGPU_KERNELS) picks the GEMM generator of the conv family and matmul: `software`
 * (register blocks) or `hardware` (tiled through workgroup memory, tiles sized from the limits).
 * The program records its class; the same class, limits and shapes give the same program.
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
import {
  type KernelClass,
  type KernelPlan,
  type KernelTarget,
  SOFTWARE_TARGET,
  type WgslKernel,
} from "../../../kernels/webgpu/types.ts";
import { f32 } from "../../../kernels/webgpu/common.ts";
import { elementwiseKernel } from "../../../kernels/webgpu/elementwise.ts";
import { sumKernel } from "../../../kernels/webgpu/reduce.ts";
import { concatKernel, padKernel, sliceKernel } from "../../../kernels/webgpu/movement.ts";
import {
  conv2dBackwardData,
  conv2dBackwardWeight,
  conv2dForward,
  convTBackwardData,
  convTBackwardWeight,
  convTForward,
} from "../../../kernels/webgpu/conv.ts";
import {
  maxpoolBackward,
  maxpoolForward,
  poolSum,
  upsampleNearest,
} from "../../../kernels/webgpu/pool.ts";
import { adamKernel, assignKernel } from "../../../kernels/webgpu/optim.ts";
import {
  bnApply,
  bnBackwardData,
  bnBackwardSums,
  bnStats,
  runningUpdate,
} from "../../../kernels/webgpu/norm.ts";
import {
  matmulKernel,
  permuteKernel,
  softmaxGradKernel,
  softmaxKernel,
} from "../../../kernels/webgpu/transformer.ts";
import {
  lnApplyKernel,
  lnBwdDataKernel,
  lnBwdParamsKernel,
  lnStatsKernel,
} from "../../../kernels/webgpu/layer_norm.ts";
import {
  dropoutKernel,
  geluBackward,
  geluForward,
  maxAxisBackward,
  maxAxisForward,
} from "../../../kernels/webgpu/misc.ts";

/**
 * Makes one node's WGSL dispatches from its static input shapes, attributes and output shape,
 * for the kernel class and limits of `target`.
 */
export type WgslLowering<A extends Attrs = Attrs> = (
  ins: Shape[],
  attrs: A,
  outShape: Shape,
  target: KernelTarget,
) => KernelPlan;

/**
 * Limits as the WebGPU lowering reads them: the plan's, plus the kernel class and what sizes
 * workgroup tiles. Absent fields mean the software class and the spec's defaults (compiling
 * without a device: inspect, counts, tests).
 */
export interface WebGpuLimits extends DeviceLimits {
  /** The adapter class whose kernels the program gets. */
  kernels?: KernelClass;
  maxComputeWorkgroupStorageSize?: number;
  maxComputeInvocationsPerWorkgroup?: number;
}

/** The kernel target (class and tile-sizing limits) of a lowering's limits. */
export function kernelTarget(l: WebGpuLimits): KernelTarget {
  return {
    kernels: l.kernels ?? "software",
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize ??
      SOFTWARE_TARGET.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup ??
      SOFTWARE_TARGET.maxComputeInvocationsPerWorkgroup,
  };
}

/**
 * The lowering table: one entry per op that runs on WebGPU. Alias ops (`reshape`) have none:
 * they share their input's buffer.
 */
export const wgslLowerings: Map<OpDef, WgslLowering> = new Map();

/** Adds `op`'s lowering; a second one for the same op is a programming error. */
function on<A extends Attrs>(op: OpDef<A>, f: WgslLowering<A>): void {
  const key = op as unknown as OpDef;
  if (wgslLowerings.has(key)) throw new Error(`op '${op.name}' lowered twice for webgpu`);
  wgslLowerings.set(key, f as unknown as WgslLowering);
}

/** An elementwise op as one broadcasting kernel of a WGSL expression of its operands. */
function ew<A extends Attrs>(op: OpDef<A>, expr: (v: string[], a: A) => string): void {
  on(op, (ins, a, out) => elementwiseKernel(ins, out, (v) => expr(v, a)));
}

// Elementwise: WGSL expressions of the operand values.
ew(addDef, ([a, b]) => `${a} + ${b}`);
ew(subDef, ([a, b]) => `${a} - ${b}`);
ew(mulDef, ([a, b]) => `${a} * ${b}`);
ew(divDef, ([a, b]) => `${a} / ${b}`);
ew(fmaDef, ([a, b, c]) => `fma(${a}, ${b}, ${c})`);
ew(affineDef, ([v], { a, b }) => `${f32(a)} * ${v} + ${f32(b)}`);
ew(negDef, ([v]) => `-${v}`);
ew(squareDef, ([v]) => `${v} * ${v}`);
ew(expDef, ([v]) => `exp(${v})`);
ew(logDef, ([v]) => `log(${v})`);
ew(sqrtDef, ([v]) => `sqrt(${v})`);
ew(rsqrtDef, ([v]) => `1.0 / sqrt(${v})`);
ew(reluDef, ([v]) => `max(${v}, 0.0)`);
ew(reluGradDef, ([v, d]) => `select(0.0, ${d}, ${v} > 0.0)`);
ew(sigmoidDef, ([v]) => `1.0 / (1.0 + exp(-${v}))`);
ew(sigmoidGradDef, ([s, d]) => `${d} * ${s} * (1.0 - ${s})`);
ew(stepGtDef, ([v], { t }) => `select(0.0, 1.0, ${v} > ${f32(t)})`);
ew(stepLtDef, ([v], { t }) => `select(0.0, 1.0, ${v} < ${f32(t)})`);
ew(expandDef, ([v]) => v);
ew(
  bceDef,
  ([p, y]) =>
    `-(${y} * max(select(-100.0, log(${p}), ${p} > 0.0), -100.0) + (1.0 - ${y}) * max(select(-100.0, log(1.0 - ${p}), ${p} < 1.0), -100.0))`,
);
ew(bceGradDef, ([p, y, d]) => `${d} * (${p} - ${y}) / max(${p} * (1.0 - ${p}), 1e-12f)`);

// Reductions and movement.
on(sumDef, (ins, a) => sumKernel(ins[0], normAxes("sum", ins[0], a.axes)));
on(sliceDef, (ins, a) => sliceKernel(ins[0], a.axis, a.start, a.size));
on(padDef, (ins, a) => padKernel(ins[0], a.axis, a.before, a.after));
on(concatDef, (ins, a) => concatKernel(ins, a.axis));

// Convolutions: implicit GEMMs of the target's class.
on(conv2dDef, (ins, a, _o, t) => conv2dForward(convGeom(ins[0], ins[1], a), ins.length === 3, t));
on(conv2dBwdDataDef, (ins, a, _o, t) => conv2dBackwardData(convGeom(a.inShape, ins[1], a), t));
on(conv2dBwdWeightDef, (ins, a, _o, t) => conv2dBackwardWeight(convGeom(ins[0], a.wShape, a), t));
on(
  convTransposeDef,
  (ins, _a, _o, t) => convTForward(convTGeom(ins[0], ins[1]), ins.length === 3, t),
);
on(convTransposeBwdDataDef, (ins, _a, out, t) => convTBackwardData(convTGeom(out, ins[1]), t));
on(
  convTransposeBwdWeightDef,
  (ins, a, _o, t) => convTBackwardWeight(convTGeom(ins[0], a.wShape), t),
);

// Pooling and resampling.
on(maxpool2dDef, (ins, a) => maxpoolForward(poolGeom("maxpool2d", ins, a)));
on(maxpool2dBwdDef, (ins, a) => maxpoolBackward(poolGeom("maxpool2d_bwd", ins, a)));
on(upsampleNearestDef, (ins, a) => {
  const [B, C, H, W] = ins[0];
  return upsampleNearest(B, C, H, W, a.f);
});
on(poolSumDef, (ins, a) => {
  const [B, C, H, W] = ins[0];
  return poolSum(B, C, H, W, a.f);
});

// Effects.
on(assignDef, (ins) => assignKernel(numel(ins[0])));
on(adamDef, (ins, a) => adamKernel(numel(ins[0]), a));

// Batch norm.
on(bnStatsDef, (ins) => bnStats(bnGeom("bn_stats", ins)));
on(bnApplyDef, (ins, a) => bnApply(bnGeom("bn_apply", ins), a.eps, !!a.relu));
on(bnBwdSumsDef, (ins, a) => bnBackwardSums(bnGeom("bn_bwd_sums", ins), a.eps, !!a.relu));
on(bnBwdDataDef, (ins, a) => bnBackwardData(bnGeom("bn_bwd_data", ins), a.eps, !!a.relu));
on(bnRunningUpdateDef, (ins, a) => runningUpdate(ins[0][0], a.momentum, a.unbiased));

// Transformer: matmul, permute, softmax.
on(matmulDef, (ins, a, _o, t) => matmulKernel(mmGeom(ins, a), t));
on(permuteDef, (ins, a) => {
  const p = permPlan(ins[0], a.perm);
  return permuteKernel(p.sizes, p.strides);
});
on(softmaxDef, (ins) => {
  const { R, L } = rows("softmax", ins);
  return softmaxKernel(R, L);
});
on(softmaxGradDef, (ins) => {
  const { R, L } = rows("softmax_grad", ins);
  return softmaxGradKernel(R, L);
});

// Layer norm.
on(lnStatsDef, (ins) => {
  const { R, C } = lnGeom("ln_stats", ins);
  return lnStatsKernel(R, C);
});
on(lnApplyDef, (ins, a) => {
  const { R, C } = lnGeom("ln_apply", ins);
  return lnApplyKernel(R, C, a.eps);
});
on(lnBwdDataDef, (ins, a) => {
  const { R, C } = lnGeom("ln_bwd_data", ins);
  return lnBwdDataKernel(R, C, a.eps);
});
on(lnBwdParamsDef, (ins, a) => {
  const { R, C } = lnGeom("ln_bwd_params", ins);
  return lnBwdParamsKernel(R, C, a.eps);
});

// GELU, dropout, max over an axis.
on(geluDef, (ins) => geluForward(numel(ins[0])));
on(geluGradDef, (ins) => geluBackward(numel(ins[0])));
on(dropoutDef, (ins, a) => dropoutKernel(dropoutGeom(ins, a)));
on(maxAxisDef, (ins, a) => maxAxisForward(axisGeom("max_axis", ins, a)));
on(maxAxisGradDef, (ins, a) => maxAxisBackward(axisGeom("max_axis_grad", ins, a)));

/**
 * The WGSL plan of one node of `op` for a target (default: software class, spec limits); throws
 * for an op without a webgpu lowering.
 */
export function wgslPlan(
  op: OpDef,
  ins: Shape[],
  attrs: Attrs,
  outShape: Shape,
  target: KernelTarget = SOFTWARE_TARGET,
): KernelPlan {
  const f = wgslLowerings.get(op);
  if (!f) throw new Error(`op '${op.name}' has no webgpu kernel`);
  return f(ins, attrs, outShape, target);
}

/** One WebGPU dispatch of a program: its kernel and the buffers bound to it. */
export interface Step {
  /** `op#id`, for profiles and error messages. */
  label: string;
  /** The WGSL module and workgroup count of this dispatch. */
  kernel: WgslKernel;
  /** Buffer index per binding, and whether the binding is written. */
  buffers: { buffer: number; write: boolean }[];
}

/** A plan lowered to WebGPU dispatches, ready for `WebGPURuntime.load`. */
export interface WebGpuProgram extends Plan {
  /** The backend the steps were made for. */
  target: "webgpu";
  /** The adapter class whose kernels the steps use. */
  kernels: KernelClass;
  /** The dispatches, in order (a node may have several). */
  steps: Step[];
}

/**
 * Plans a graph (lib/graph/plan.ts, with each node's WGSL scratch) and lowers every planned node
 * to its dispatches, with the kernels of `limits.kernels`' class (default software). Throws,
 * naming the node, where a dispatch breaks a device limit.
 */
export function lower(
  outputs: Record<string, Tensor>,
  effects: readonly Tensor[] = [],
  limits: WebGpuLimits = SPEC_LIMITS,
): WebGpuProgram {
  const target = kernelTarget(limits);
  const kernels = new Map<Tensor, KernelPlan>();
  const p = plan(outputs, effects, limits, (t) => {
    const k = wgslPlan(getOp(t.op), t.inputs.map((x) => x.shape), t.attrs, t.shape, target);
    kernels.set(t, k);
    return k.scratch ?? [];
  });
  const steps: Step[] = [];
  for (const n of p.nodes) {
    for (const k of kernels.get(n.tensor)!.kernels) {
      const bs = k.bindings.map((b) => {
        if ("in" in b) return { buffer: n.ins[b.in], write: false };
        if ("inplace" in b) return { buffer: n.ins[b.inplace], write: true };
        if ("out" in b) return { buffer: n.out, write: true };
        if ("scratch" in b) return { buffer: n.scratch[b.scratch], write: true };
        return { buffer: n.scratch[b.scratchIn], write: false };
      });
      checkBindings(n.label, bs, limits);
      steps.push({ label: n.label, kernel: k, buffers: bs });
    }
  }
  return { ...p, target: "webgpu", kernels: target.kernels, steps };
}

function checkBindings(label: string, bs: { buffer: number; write: boolean }[], l: DeviceLimits) {
  if (bs.length > l.maxStorageBuffersPerShaderStage) {
    throw new Error(
      `${label} binds ${bs.length} storage buffers; the device allows ${l.maxStorageBuffersPerShaderStage}`,
    );
  }
  // WebGPU forbids a buffer being both written and bound again within one dispatch.
  for (const a of bs) {
    if (a.write && bs.filter((b) => b.buffer === a.buffer).length > 1) {
      throw new Error(`${label} would bind buffer ${a.buffer} as writable and again`);
    }
  }
}
