/**
 * CPU kernels of the LViT-specific ops (gelu, dropout, max over an axis), twins of
 * kernels/webgpu/misc.ts. Arithmetic is float64 (JS numbers) rounded to f32 on the store, with the
 * kernels' f32 fit coefficients and exp.ts's exp; nothing is allocated in `run` (the Philox output
 * words live in a buffer made once per node).
 */
import type { CpuKernel } from "./types.ts";
import { ERFC_COEFFS } from "../webgpu/misc.ts";
import { type AxisGeom, type DropoutGeom, stepToU32 } from "../../lib/graph/ops/misc.ts";
import { PHILOX_BLOCKS_MAX, philoxBlocks } from "../../lib/rng/philox_blocks.ts";
import { partOf, ranged } from "./parts.ts";
import { expF64 } from "./exp.ts";
import { geluGradRange, geluRange } from "./gelu_wasm.ts";

// The fit's coefficients as the WGSL literals hold them. The conversion constants 1/sqrt 2 and
// 1/sqrt(2 pi) stay float64: this backend computes in float64, and their f32 rounding would add
// ~2 z^2 1e-8 relative error to erfc's tail for nothing.
const [C0, C1, C2, C3, C4, C5, C6, C7, C8, C9] = ERFC_COEFFS.map(Math.fround);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * 1 + erf(x / sqrt 2), the same formula as the WGSL `gelu_phi2`. The mirror for x >= 0 is
 * e + s (2 - 2e) with s = 0 or 1 instead of a branch: the sign of x is random in activations and
 * a mispredicted branch costs more than the two flops; for s = 0 the result is exactly e.
 *
 * The fit's polynomial is evaluated by Estrin's scheme (the WGSL twin uses Horner's): in float64
 * the two differ by ~1e-15 relative, far below the f32 store, and the shorter dependency chain
 * lets the loop's iterations overlap (gelu ~1.5x faster on the CPU).
 */
export function geluPhi2(x: number): number {
  const z = Math.abs(x) * Math.SQRT1_2;
  const t = 1 / (1 + 0.5 * z);
  const t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
  const p = ((C0 + t * C1) + t2 * (C2 + t * C3)) +
    t4 * ((C4 + t * C5) + t2 * (C6 + t * C7)) + t8 * (C8 + t * C9);
  const e = t * expF64(-z * z + p);
  return e + +(x >= 0) * (2 - 2 * e);
}

/** y = x/2 (1 + erf(x / sqrt 2)) of one element: the formula gelu_wasm.ts runs, as a reference. */
export function geluScalar(v: number): number {
  return 0.5 * v * geluPhi2(v);
}

/** dx = dy (Phi(x) + x phi(x)) of one element: the formula gelu_wasm.ts runs, as a reference. */
export function geluGradScalar(v: number, dy: number): number {
  return dy * (0.5 * geluPhi2(v) + v * INV_SQRT_2PI * expF64(-0.5 * v * v));
}

/** y = x/2 (1 + erf(x / sqrt 2)), by gelu_wasm.ts (geluScalar's bits, ~4x faster). */
export function geluCpu(n: number): CpuKernel {
  return ranged(n, ([x], out, lo, hi) => geluRange(x, out, lo, hi));
}

/** dx = dy (Phi(x) + x phi(x)), by gelu_wasm.ts (geluGradScalar's bits, ~4x faster). */
export function geluGradCpu(n: number): CpuKernel {
  return ranged(n, ([x, dy], out, lo, hi) => geluGradRange(x, dy, out, lo, hi));
}

/**
 * Inverted dropout with the mask layout of kernels/webgpu/misc.ts `dropoutKernel`: element i takes word
 * i % 4 of the Philox block (i / 4, 0, step, 0) under key (seed, stream). Each output is x times
 * 0 or scale, one product of two f32 values rounded once to f32 as the GPU does, so the two
 * backends agree bit for bit (signed zeros included).
 */
export function dropoutCpu(g: DropoutGeom): CpuKernel {
  const { n, thr, scale, seed, stream } = g;
  const blocks = Math.ceil(n / 4);
  // Philox blocks [b0, b1), each masking 4 elements, drawn PHILOX_BLOCKS_MAX at a time.
  const range = (
    x: Float32Array,
    stepv: Float32Array,
    out: Float32Array,
    b0: number,
    b1: number,
  ) => {
    const step = stepToU32(stepv[0]);
    for (let c = b0; c < b1; c += PHILOX_BLOCKS_MAX) {
      const e = Math.min(b1, c + PHILOX_BLOCKS_MAX);
      const words = philoxBlocks(c, e - c, 0, step, 0, seed, stream);
      const i0 = 4 * c, i1 = Math.min(n, 4 * e);
      for (let i = i0; i < i1; i++) out[i] = x[i] * (+(words[i - i0] >>> 8 >= thr) * scale);
    }
  };
  return {
    run: ([x, stepv], out) => range(x, stepv, out, 0, blocks),
    runPart: ([x, stepv], out, _s, p, ps) => range(x, stepv, out, ...partOf(blocks, p, ps)),
  };
}

/** y[o, 0, j] = max over a of x[o, a, j], the first maximum winning (strictly greater). */
export function maxAxisCpu(g: AxisGeom): CpuKernel {
  const { outer, A, inner } = g;
  // Parts take columns [j0, j1) of every o.
  return ranged(inner, ([x], out, j0, j1) => {
    for (let o = 0; o < outer; o++) {
      const base = o * A * inner;
      const ob = o * inner;
      for (let j = j0; j < j1; j++) out[ob + j] = x[base + j];
      // Row by row over a keeps the reads contiguous along j.
      for (let a = 1; a < A; a++) {
        const row = base + a * inner;
        for (let j = j0; j < j1; j++) {
          const v = x[row + j];
          if (v > out[ob + j]) out[ob + j] = v;
        }
      }
    }
  });
}

/**
 * dx: dy of each slice at its first argmax, zero elsewhere. Scratch 0 holds the running argmax
 * of every column j of the current o (integers, exact in f32), updated by the forward's strict
 * comparison row by row so that the reads stay contiguous; the GPU's gather finds the same
 * winner. On the CPU the scatter of one dy per slice is sequential and so deterministic.
 */
export function maxAxisGradCpu(g: AxisGeom): CpuKernel {
  const { outer, A, inner } = g;
  // Parts take columns [j0, j1) of every (o, a), and the same slice of the scratch.
  const go = (
    ins: Float32Array[],
    out: Float32Array,
    best: Float32Array,
    j0: number,
    j1: number,
  ) => {
    const [x, dy] = ins;
    for (let o = 0; o < outer; o++) {
      const base = o * A * inner;
      for (let a = 0; a < A; a++) out.fill(0, base + a * inner + j0, base + a * inner + j1);
      for (let j = j0; j < j1; j++) best[j] = 0;
      for (let a = 1; a < A; a++) {
        const row = base + a * inner;
        for (let j = j0; j < j1; j++) {
          if (x[row + j] > x[base + best[j] * inner + j]) best[j] = a;
        }
      }
      for (let j = j0; j < j1; j++) out[base + best[j] * inner + j] = dy[o * inner + j];
    }
  };
  return {
    scratch: [inner],
    run: (ins, out, [best]) => go(ins, out, best, 0, inner),
    runPart: (ins, out, [best], part, parts) => go(ins, out, best, ...partOf(inner, part, parts)),
  };
}
