/**
 * Effect ops: they overwrite persistent tensors in place at the end of a step (parameters,
 * optimiser moments, batch-norm running statistics) and have no output of their own.
 */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { numel, sameShape, ShapeError } from "../shape.ts";

/** The `assign` op. */
export const assignDef: OpDef = defineOp({
  name: "assign",
  arity: 2,
  inplace: [0],
  shape: (ins) => {
    if (!sameShape(ins[0], ins[1])) throw new ShapeError("assign", ins, "shapes differ");
    return [0];
  },
  ref: (ins) => {
    ins[0].set(ins[1]);
    return new Float64Array(0);
  },
});

/** Adam hyper-parameters fixed at graph-build time; lr and bias corrections come per step. */
export interface AdamAttrs {
  /** Any further attribute is kept on the node as given. */
  [k: string]: unknown;
  /** Decay rate of the first-moment estimate. */
  beta1: number;
  /** Decay rate of the second-moment estimate. */
  beta2: number;
  /** Added to the root of the second moment in the denominator. */
  eps: number;
  /** Weight decay factor (0: none). */
  weightDecay: number;
  /** AdamW: decay the weights directly instead of adding wd * p to the gradient. */
  decoupled: boolean;
}

/**
 * torch.optim.Adam / AdamW, one step. Inputs: p, g, m, v and `hyper` = [lr, 1 - beta1^t,
 * 1 - beta2^t], written by the host each step so the schedule never needs a recompile.
 */
export const adamDef: OpDef<AdamAttrs> = defineOp({
  name: "adam",
  arity: 5,
  inplace: [0, 2, 3],
  shape: (ins) => {
    const [p, g, m, v, h] = ins;
    if (!sameShape(p, g) || !sameShape(p, m) || !sameShape(p, v) || numel(h) !== 3) {
      throw new ShapeError("adam", ins, "p, g, m, v must share a shape and hyper be [3]");
    }
    return [0];
  },
  ref: (ins, _s, a) => {
    const [p, g, m, v, h] = ins;
    const [lr, bc1, bc2] = h;
    for (let i = 0; i < p.length; i++) {
      let gi = g[i];
      if (a.weightDecay && !a.decoupled) gi += a.weightDecay * p[i];
      if (a.weightDecay && a.decoupled) p[i] *= 1 - lr * a.weightDecay;
      m[i] = a.beta1 * m[i] + (1 - a.beta1) * gi;
      v[i] = a.beta2 * v[i] + (1 - a.beta2) * gi * gi;
      p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + a.eps);
    }
    return new Float64Array(0);
  },
});

/** Overwrites persistent `dst` with `src` at the end of the step. */
export const assign = (dst: Tensor, src: Tensor): Tensor => dst.graph.apply("assign", [dst, src]);
