/** The graph API: symbolic tensors, the op table and the model-building functions. */
import "./ops/elementwise.ts";
import "./ops/shape_ops.ts";
import "./ops/conv.ts";
import "./ops/pool.ts";
import "./ops/optim.ts";
import "./ops/norm.ts";
import "./ops/transformer.ts";
import "./ops/misc.ts";

export { Graph, Tensor } from "./graph.ts";
export type { Attrs, TensorKind } from "./graph.ts";
export { allOps, defineOp, getOp } from "./op.ts";
export type {
  Binding,
  CpuKernel,
  CpuPartFn,
  GradArgs,
  KernelPlan,
  OpDef,
  WgslKernel,
} from "./op.ts";
export { type Shape, ShapeError } from "./shape.ts";
export { gradients } from "./autodiff.ts";
export {
  type BufferPlan,
  compile,
  type CpuStep,
  type DeviceLimits,
  type Program,
  SPEC_LIMITS,
  type Step,
  type Target,
} from "./compile.ts";
export type { InitSpec } from "./init.ts";
export { initValues, torchDefault } from "./init.ts";
export * from "./ops/elementwise.ts";
export { concat, mean, pad, reshape, slice, sum } from "./ops/shape_ops.ts";
export { conv2d, type ConvAttrs, convTranspose } from "./ops/conv.ts";
export { maxpool2d, upsampleNearest2d } from "./ops/pool.ts";
export { type AdamAttrs, assign } from "./ops/optim.ts";
export { bnApplyOp, bnRunningUpdate, bnStatsOf } from "./ops/norm.ts";
export {
  layerNorm,
  linear,
  matmul,
  type MatmulAttrs,
  permute,
  softmax,
} from "./ops/transformer.ts";
export { dropout, type DropoutAttrs, gelu, geluGrad, maxAxis, maxAxisGrad } from "./ops/misc.ts";
