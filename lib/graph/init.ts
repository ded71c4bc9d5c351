/** Parameter and state initialisers, drawn from the counter-based RNG so that they are seeded. */
import { fillNormal, fillUniform, Stream } from "../rng/philox.ts";
import type { Shape } from "./shape.ts";
import { numel } from "./shape.ts";

/** How a param or state is initialised: a constant, or seeded uniform or normal draws. */
export type InitSpec =
  | { kind: "const"; value: number }
  | { kind: "uniform"; bound: number } // U(-bound, bound)
  | { kind: "normal"; std: number; mean?: number };

/** PyTorch's default for conv/linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
export function torchDefault(fanIn: number): InitSpec {
  return { kind: "uniform", bound: 1 / Math.sqrt(fanIn) };
}

/**
 * Initial values of one leaf. `salt` distinguishes leaves (their registration index) so that a
 * parameter's values depend only on (seed, its position), never on how many numbers others drew.
 */
export function initValues(spec: InitSpec, shape: Shape, seed: number, salt: number): Float32Array {
  const out = new Float32Array(numel(shape));
  switch (spec.kind) {
    case "const":
      out.fill(spec.value);
      break;
    case "uniform":
      fillUniform(out, seed, Stream.init, salt);
      for (let i = 0; i < out.length; i++) out[i] = (2 * out[i] - 1) * spec.bound;
      break;
    case "normal":
      fillNormal(out, seed, Stream.init, salt, spec.mean ?? 0, spec.std);
      break;
  }
  return out;
}
