/** Optimiser graph pieces: the Adam/AdamW update of every parameter as effects of the step. */
import type { Graph, Tensor } from "../graph/mod.ts";
import type { AdamAttrs } from "../graph/ops/optim.ts";

export interface AdamOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** AdamW (decoupled weight decay) instead of Adam's L2 term. */
  decoupled?: boolean;
}

/** Name of the per-step hyper-parameter input: [lr, 1 - beta1^t, 1 - beta2^t]. */
export const HYPER = "optim.hyper";

/** Adds one `adam` effect per parameter, with moment states named `optim.{m,v}.<param>`. */
export function adamUpdate(g: Graph, params: Tensor[], grads: Tensor[], o: AdamOptions = {}) {
  const hyper = g.input(HYPER, [3]);
  const attrs: AdamAttrs = {
    beta1: o.beta1 ?? 0.9,
    beta2: o.beta2 ?? 0.999,
    eps: o.eps ?? 1e-8,
    weightDecay: o.weightDecay ?? 0,
    decoupled: o.decoupled ?? false,
  };
  params.forEach((p, i) => {
    const zero = { kind: "const" as const, value: 0 };
    const m = g.state(`optim.m.${p.name}`, p.shape, zero);
    const v = g.state(`optim.v.${p.name}`, p.shape, zero);
    g.apply("adam", [p, grads[i], m, v, hyper], attrs);
  });
  return attrs;
}

/** The host-side values of the hyper input at step t (1-based), computed in float64. */
export function adamHyper(lr: number, t: number, o: AdamOptions = {}): Float32Array {
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  return Float32Array.of(lr, 1 - Math.pow(b1, t), 1 - Math.pow(b2, t));
}
