/**
 * The graph API: symbolic tensors, the op table (semantics only: shape, gradient and float64
 * reference of each op), the backend-neutral plan and the model-building functions. Kernels and
 * their lowering tables live with the backends (lib/backends/*\/lower.ts, kernels/).
 */
import "./ops/elementwise.ts";
import "./ops/shape_ops.ts";
import "./ops/conv.ts";
import "./ops/pool.ts";
import "./ops/optim.ts";
import "./ops/norm.ts";
import "./ops/transformer.ts";
import "./ops/layer_norm.ts";
import "./ops/misc.ts";

export { allOps, defineOp, getOp, Graph, Tensor } from "./graph.ts";
export type { Attrs, GradArgs, OpDef, TensorKind } from "./graph.ts";
export { type Shape, ShapeError } from "./shape.ts";
export { gradients } from "./autodiff.ts";
export {
  type BufferPlan,
  type DeviceLimits,
  type Plan,
  plan,
  type PlannedNode,
  type ScratchRequest,
  SPEC_LIMITS,
} from "./plan.ts";
export type { InitSpec } from "./init.ts";
export { initValues, torchDefault } from "./init.ts";
export {
  add,
  affine,
  bce,
  bceGrad,
  div,
  exp,
  expand,
  fma,
  log,
  mul,
  neg,
  refBroadcast,
  relu,
  reluGrad,
  rsqrt,
  sigmoid,
  sigmoidGrad,
  sqrt,
  square,
  stepGt,
  stepLt,
  sub,
  sumTo,
} from "./ops/elementwise.ts";
export { concat, mean, pad, reshape, slice, sum } from "./ops/shape_ops.ts";
export { conv2d, type ConvAttrs, convTranspose } from "./ops/conv.ts";
export { maxpool2d, upsampleNearest2d } from "./ops/pool.ts";
export { type AdamAttrs, assign } from "./ops/optim.ts";
export { bnApplyOp, bnRunningUpdate, bnStatsOf } from "./ops/norm.ts";
export { linear, matmul, type MatmulAttrs, permute, softmax } from "./ops/transformer.ts";
export { layerNorm } from "./ops/layer_norm.ts";
export { dropout, type DropoutAttrs, gelu, geluGrad, maxAxis, maxAxisGrad } from "./ops/misc.ts";
