/**
 * The effect ops (lib/graph/ops/optim.ts, kernels/{webgpu,cpu}/optim.ts): assign and adam update
 * params/states in place, so they have no samples of the forward/backward kind; the driver
 * (tests/optim_ops_test.ts) checks them against hand-written loops. Their kernel shapes for
 * tests/kernels_static_test.ts are here.
 */
import type { OpTable } from "../op_suite.ts";

const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export const OPTIM_TABLE: OpTable = {
  family: "optim",
  groups: [],
  static: [
    { op: "assign", inputs: [[3, 5], [3, 5]] },
    ...[false, true].map((decoupled) => ({
      op: "adam",
      inputs: [[5, 7], [5, 7], [5, 7], [5, 7], [3]],
      attrs: { ...adam, decoupled },
    })),
  ],
};
