/** Optimiser graph pieces: the Adam/AdamW update of every parameter as effects of the step. */
import type { Graph, Tensor } from "../graph/mod.ts";
import type { AdamAttrs } from "../graph/ops/optim.ts";

/** Adam settings; unset ones take PyTorch's defaults (0.9, 0.999, 1e-8, no weight decay). */
export interface AdamOptions {
  /** Decay rate of the first-moment estimate (default 0.9). */
  beta1?: number;
  /** Decay rate of the second-moment estimate (default 0.999). */
  beta2?: number;
  /** Denominator term for numerical stability (default 1e-8). */
  eps?: number;
  /** Weight decay factor (default 0). */
  weightDecay?: number;
  /** AdamW (decoupled weight decay) instead of Adam's L2 term. */
  decoupled?: boolean;
}

/** Name of the per-step hyper-parameter input: [lr, 1 - beta1^t, 1 - beta2^t]. */
export const HYPER = "optim.hyper";

/** Adds one `adam` effect per parameter, with moment states named `optim.{m,v}.<param>`. */
export function adamUpdate(
  g: Graph,
  params: Tensor[],
  grads: Tensor[],
  o: AdamOptions = {},
): AdamAttrs {
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
