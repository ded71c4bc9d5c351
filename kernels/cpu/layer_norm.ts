/**
 * CPU kernels of the fused layer norm over the last axis (R rows of C channels): loops over rows
 * with float64 accumulators in a fixed order. Accumulators that outlive a loop are allocated when
 * the kernel is built, so `run` allocates nothing.
 */
import type { CpuKernel } from "./types.ts";

/** stats [2, R]: mean and biased variance of each row of C values, two-pass. */
export function lnStatsCpu(R: number, C: number): CpuKernel {
  return {
    run: ([x], out) => {
      for (let r = 0; r < R; r++) {
        const base = r * C, end = base + C;
        let s = 0;
        for (let j = base; j < end; j++) s += x[j];
        const m = s / C;
        let v = 0;
        for (let j = base; j < end; j++) {
          const d = x[j] - m;
          v += d * d;
        }
        out[r] = m;
        out[R + r] = v / C;
      }
    },
  };
}

/** y = (x - mean) / sqrt(var + eps) * gamma + beta. */
export function lnApplyCpu(R: number, C: number, eps: number): CpuKernel {
  return {
    run: ([x, st, gm, bt], y) => {
      for (let r = 0; r < R; r++) {
        const m = st[r];
        const inv = 1 / Math.sqrt(st[R + r] + eps);
        const base = r * C;
        for (let c = 0; c < C; c++) y[base + c] = (x[base + c] - m) * inv * gm[c] + bt[c];
      }
    },
  };
}

/** dx = inv * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, per row. */
export function lnBwdDataCpu(R: number, C: number, eps: number): CpuKernel {
  return {
    run: ([x, st, gm, dy], dx) => {
      for (let r = 0; r < R; r++) {
        const m = st[r];
        const inv = 1 / Math.sqrt(st[R + r] + eps);
        const base = r * C;
        let s1 = 0, s2 = 0;
        for (let c = 0; c < C; c++) {
          const g = dy[base + c] * gm[c];
          s1 += g;
          s2 += g * (x[base + c] - m);
        }
        const a1 = s1 / C;
        const a2 = s2 * inv / C;
        for (let c = 0; c < C; c++) {
          dx[base + c] = inv * (dy[base + c] * gm[c] - a1 - (x[base + c] - m) * inv * a2);
        }
      }
    },
  };
}

/** psums [2, C]: per channel, sum over rows of dy * xhat and of dy. */
export function lnBwdParamsCpu(R: number, C: number, eps: number): CpuKernel {
  // Row-major traversal (contiguous reads) needs one float64 accumulator per channel and sum.
  const acc = new Float64Array(2 * C);
  return {
    run: ([x, st, dy], out) => {
      acc.fill(0);
      for (let r = 0; r < R; r++) {
        const m = st[r];
        const inv = 1 / Math.sqrt(st[R + r] + eps);
        const base = r * C;
        for (let c = 0; c < C; c++) {
          const d = dy[base + c];
          acc[c] += d * (x[base + c] - m) * inv;
          acc[C + c] += d;
        }
      }
      for (let i = 0; i < 2 * C; i++) out[i] = acc[i];
    },
  };
}
