/**
 * The fused batch-norm kernels on the CPU (lib/graph/ops/norm.ts defines the ops). Statistics
 * and sums accumulate in float64 (JS numbers) in a fixed order and are stored as f32.
 */
import type { BnGeom } from "../../lib/graph/ops/norm.ts";
import type { CpuKernel } from "./types.ts";
import { ranged } from "./parts.ts";

/**
 * statsInto for Float32Array only: a monomorphic copy keeps V8's hot loop specialised. Still two
 * passes (the variance is the mean of squared deviations from the mean, never E[x^2] - m^2), per
 * channel, so a [HW] slice of up to 224 * 224 f32 (200 KB) is still in L2 for the second pass.
 *
 * Each [HW] run is read as four concurrent quarter streams (tail into the first accumulator):
 * a single sequential stream is latency-bound on DRAM here (~1.6 ns per f32) while four run at
 * ~0.6 ns, and four float64 accumulators also break the add latency chain. Combined as
 * (a0 + a1) + (a2 + a3), so the order is a function of the shapes alone.
 */
function statsF32(g: BnGeom, x: Float32Array, out: Float32Array, c0 = 0, c1 = g.C) {
  const { B, C, HW } = g;
  const n = B * HW;
  const q = HW >> 2, q4 = 4 * q;
  for (let c = c0; c < c1; c++) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * C + c) * HW;
      const end = base + q;
      for (let j = base; j < end; j++) {
        s0 += x[j];
        s1 += x[j + q];
        s2 += x[j + 2 * q];
        s3 += x[j + 3 * q];
      }
      for (let j = base + q4; j < base + HW; j++) s0 += x[j];
    }
    const m = ((s0 + s1) + (s2 + s3)) / n;
    let v0 = 0, v1 = 0, v2 = 0, v3 = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * C + c) * HW;
      const end = base + q;
      for (let j = base; j < end; j++) {
        const d0 = x[j] - m, d1 = x[j + q] - m, d2 = x[j + 2 * q] - m, d3 = x[j + 3 * q] - m;
        v0 += d0 * d0;
        v1 += d1 * d1;
        v2 += d2 * d2;
        v3 += d3 * d3;
      }
      for (let j = base + q4; j < base + HW; j++) {
        const d = x[j] - m;
        v0 += d * d;
      }
    }
    out[c] = m;
    out[C + c] = ((v0 + v1) + (v2 + v3)) / n;
  }
}

/**
 * `bn_stats`: per-channel mean and biased variance [2, C].
 *
 * Accumulates in float64 (JS numbers), in a fixed order; stored as f32.
 */
export function bnStatsCpu(g: BnGeom): CpuKernel {
  return ranged(g.C, (xs, out, c0, c1) => statsF32(g, xs[0], out, c0, c1));
}

/**
 * `bn_apply`: y = (x - mean) / sqrt(var + eps) * gamma + beta, then the optional ReLU.
 *
 * Per (n, c) run: y = x * k + sh with k, sh hoisted, and the run read and written as four
 * concurrent quarter streams, which keeps more DRAM requests in flight (see statsF32).
 */
export function bnApplyCpu(g: BnGeom, epsilon: number, withRelu: boolean): CpuKernel {
  const { B, C, HW } = g;
  const eps = Math.fround(epsilon);
  const relu = withRelu;
  const q = HW >> 2, q4 = 4 * q;
  return ranged(C, ([x, s, gm, bt], y, c0, c1) => {
    for (let b = 0; b < B; b++) {
      for (let c = c0; c < c1; c++) {
        const k = gm[c] / Math.sqrt(s[C + c] + eps);
        const sh = bt[c] - s[c] * k;
        const base = (b * C + c) * HW;
        const end = base + q;
        if (relu) {
          // (v + |v|) / 2 is max(v, 0) without a data-dependent branch (Math.max is slower).
          for (let j = base; j < end; j++) {
            const v0 = x[j] * k + sh, v1 = x[j + q] * k + sh;
            const v2 = x[j + 2 * q] * k + sh, v3 = x[j + 3 * q] * k + sh;
            y[j] = (v0 + Math.abs(v0)) * 0.5;
            y[j + q] = (v1 + Math.abs(v1)) * 0.5;
            y[j + 2 * q] = (v2 + Math.abs(v2)) * 0.5;
            y[j + 3 * q] = (v3 + Math.abs(v3)) * 0.5;
          }
          for (let j = base + q4; j < base + HW; j++) {
            const v = x[j] * k + sh;
            y[j] = (v + Math.abs(v)) * 0.5;
          }
        } else {
          for (let j = base; j < end; j++) {
            y[j] = x[j] * k + sh;
            y[j + q] = x[j + q] * k + sh;
            y[j + 2 * q] = x[j + 2 * q] * k + sh;
            y[j + 3 * q] = x[j + 3 * q] * k + sh;
          }
          for (let j = base + q4; j < base + HW; j++) y[j] = x[j] * k + sh;
        }
      }
    }
  });
}

/**
 * `bn_bwd_sums`: per channel, sum(dy * xhat) and sum(dy) [2, C] (dy masked by y > 0 with ReLU).
 *
 * Per channel, each [HW] run is read as four concurrent quarter streams (tail into the first
 * accumulators): more DRAM requests in flight than one sequential stream (see statsF32), and
 * four float64 accumulators per sum, combined as (a0 + a1) + (a2 + a3), break the add latency
 * chain in a fixed order. The ReLU mask is dy * +(y > 0), not a ternary: V8 compiles the ternary
 * to a branch that mispredicts on real activations (~2x slower in the U-Net step).
 */
export function bnBwdSumsCpu(g: BnGeom, epsilon: number, withRelu: boolean): CpuKernel {
  const { B, C, HW } = g;
  const eps = Math.fround(epsilon);
  const relu = withRelu;
  const q = HW >> 2, q4 = 4 * q;
  return ranged(C, ([x, s, dy, y], out, c0, c1) => {
    for (let c = c0; c < c1; c++) {
      const m = s[c];
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;
      for (let b = 0; b < B; b++) {
        const base = (b * C + c) * HW;
        const end = base + q;
        if (relu) {
          for (let j = base; j < end; j++) {
            const j1 = j + q, j2 = j + 2 * q, j3 = j + 3 * q;
            const u0 = dy[j] * +(y[j] > 0), u1 = dy[j1] * +(y[j1] > 0);
            const u2 = dy[j2] * +(y[j2] > 0), u3 = dy[j3] * +(y[j3] > 0);
            a0 += u0 * (x[j] - m);
            a1 += u1 * (x[j1] - m);
            a2 += u2 * (x[j2] - m);
            a3 += u3 * (x[j3] - m);
            d0 += u0;
            d1 += u1;
            d2 += u2;
            d3 += u3;
          }
          for (let j = base + q4; j < base + HW; j++) {
            const u = dy[j] * +(y[j] > 0);
            a0 += u * (x[j] - m);
            d0 += u;
          }
        } else {
          for (let j = base; j < end; j++) {
            const j1 = j + q, j2 = j + 2 * q, j3 = j + 3 * q;
            a0 += dy[j] * (x[j] - m);
            a1 += dy[j1] * (x[j1] - m);
            a2 += dy[j2] * (x[j2] - m);
            a3 += dy[j3] * (x[j3] - m);
            d0 += dy[j];
            d1 += dy[j1];
            d2 += dy[j2];
            d3 += dy[j3];
          }
          for (let j = base + q4; j < base + HW; j++) {
            a0 += dy[j] * (x[j] - m);
            d0 += dy[j];
          }
        }
      }
      out[c] = ((a0 + a1) + (a2 + a3)) / Math.sqrt(s[C + c] + eps);
      out[C + c] = (d0 + d1) + (d2 + d3);
    }
  });
}

/**
 * `bn_bwd_data`: dx from dy and the sums of `bn_bwd_sums`.
 *
 * dx = k d + (x p + r) with k = gamma inv, p = -k ps0 inv / n and r = k (m ps0 inv - ps1) / n:
 * the reference formula re-associated in float64 (far below the f32 rounding), two ops per
 * element fewer. Each (n, c) run is read and written as two concurrent half streams for more
 * DRAM requests in flight (four measured no better with four arrays); the mask is
 * dy * +(y > 0) as in bn_bwd_sums.
 */
export function bnBwdDataCpu(g: BnGeom, epsilon: number, withRelu: boolean): CpuKernel {
  const { B, C, HW } = g;
  const n = B * HW;
  const eps = Math.fround(epsilon);
  const relu = withRelu;
  const h = HW >> 1, hP = 2 * h;
  return ranged(C, ([x, s, gm, dy, ps, y], dx, c0, c1) => {
    for (let b = 0; b < B; b++) {
      for (let c = c0; c < c1; c++) {
        const inv = 1 / Math.sqrt(s[C + c] + eps);
        const k = gm[c] * inv;
        const a2 = ps[c] * inv / n;
        const p = -k * a2;
        const r = k * (s[c] * a2 - ps[C + c] / n);
        const base = (b * C + c) * HW;
        const end = base + h;
        if (relu) {
          for (let j = base; j < end; j++) {
            const j1 = j + h;
            dx[j] = dy[j] * +(y[j] > 0) * k + (x[j] * p + r);
            dx[j1] = dy[j1] * +(y[j1] > 0) * k + (x[j1] * p + r);
          }
          for (let j = base + hP; j < base + HW; j++) {
            dx[j] = dy[j] * +(y[j] > 0) * k + (x[j] * p + r);
          }
        } else {
          for (let j = base; j < end; j++) {
            const j1 = j + h;
            dx[j] = dy[j] * k + (x[j] * p + r);
            dx[j1] = dy[j1] * k + (x[j1] * p + r);
          }
          for (let j = base + hP; j < base + HW; j++) dx[j] = dy[j] * k + (x[j] * p + r);
        }
      }
    }
  });
}

/** `bn_running_update`: the running mean and variance [C] updated in place. */
export function bnRunningUpdateCpu(C: number, momentum: number, unbiased: number): CpuKernel {
  const m = Math.fround(momentum);
  const k = m * Math.fround(unbiased);
  return {
    run: ([rm, rv, st]) => {
      for (let c = 0; c < C; c++) {
        rm[c] = (1 - m) * rm[c] + m * st[c];
        rv[c] = (1 - m) * rv[c] + k * st[C + c];
      }
    },
  };
}
