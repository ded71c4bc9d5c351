/**
 * Fused batch normalisation for training mode. Composed from elementwise ops and sums, one
 * BatchNorm costs ~20 passes over the activation in forward and backward; fused it costs four
 * (statistics, apply, backward sums, backward data). The composed form stays available
 * (`batchNorm2d(..., { fused: false })`) and the tests check the two against each other.
 *
 * `bn_apply` differentiates through the batch statistics itself, so its `stats` input must be
 * `bn_stats` of the same x and gets no gradient of its own; `bn_stats` refuses any other
 * gradient path. That contract is checked when the gradient graph is built.
 */
import type { Tensor } from "../graph.ts";
import { defineOp } from "../op.ts";
import { type Shape, ShapeError } from "../shape.ts";
import {
  bnApply,
  bnBackwardData,
  bnBackwardSums,
  type BnGeom,
  bnStats,
  runningUpdate,
} from "../../../kernels/webgpu/norm.ts";
import { reshape, slice } from "./shape_ops.ts";
import { ranged } from "../../../kernels/cpu/parts.ts";

function geom(op: string, ins: Shape[]): BnGeom {
  const x = ins[0];
  if (x.length < 2) throw new ShapeError(op, ins, "expects x [B, C, ...]");
  const HW = x.slice(2).reduce((a, b) => a * b, 1);
  return { B: x[0], C: x[1], HW };
}

function expectStats(op: string, ins: Shape[], k: number, C: number) {
  if (ins[k].length !== 2 || ins[k][0] !== 2 || ins[k][1] !== C) {
    throw new ShapeError(op, ins, `input ${k} must be [2, ${C}]`);
  }
}

function expectVec(op: string, ins: Shape[], k: number, C: number) {
  if (ins[k].length !== 1 || ins[k][0] !== C) {
    throw new ShapeError(op, ins, `input ${k} must be [${C}]`);
  }
}

/** Visits x in (channel, n, hw) order: the fixed summation order of every reference loop. */
function perChannel(g: BnGeom, f: (c: number, i: number) => void) {
  for (let c = 0; c < g.C; c++) {
    for (let b = 0; b < g.B; b++) {
      const base = (b * g.C + c) * g.HW;
      for (let j = 0; j < g.HW; j++) f(c, base + j);
    }
  }
}

function statsInto(g: BnGeom, x: ArrayLike<number>, out: { [i: number]: number }) {
  const n = g.B * g.HW;
  for (let c = 0; c < g.C; c++) {
    let s = 0;
    for (let b = 0; b < g.B; b++) {
      const base = (b * g.C + c) * g.HW;
      for (let j = 0; j < g.HW; j++) s += x[base + j];
    }
    const m = s / n;
    let v = 0;
    for (let b = 0; b < g.B; b++) {
      const base = (b * g.C + c) * g.HW;
      for (let j = 0; j < g.HW; j++) {
        const d = x[base + j] - m;
        v += d * d;
      }
    }
    out[c] = m;
    out[g.C + c] = v / n;
  }
}

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

/** eps, and whether a ReLU follows (fused: forward clamps, backward masks dy by y > 0). */
type BnAttrs = { eps: number; relu?: boolean };

defineOp({
  name: "bn_stats",
  arity: 1,
  shape: (ins) => [2, geom("bn_stats", ins).C],
  grad: () => {
    throw new Error("bn_stats is differentiable only through bn_apply of the same input");
  },
  ref: (ins, shapes) => {
    const out = new Float64Array(2 * shapes[0][1]);
    statsInto(geom("bn_stats", shapes), ins[0], out);
    return out;
  },
  // Accumulates in float64 (JS numbers), in a fixed order; stored as f32.
  cpu: (ins) => {
    const g = geom("bn_stats", ins);
    return ranged(g.C, (xs, out, c0, c1) => statsF32(g, xs[0], out, c0, c1));
  },
  wgsl: (ins) => bnStats(geom("bn_stats", ins)),
});

defineOp<BnAttrs>({
  name: "bn_apply",
  arity: 4,
  shape: (ins) => {
    const g = geom("bn_apply", ins);
    expectStats("bn_apply", ins, 1, g.C);
    expectVec("bn_apply", ins, 2, g.C);
    expectVec("bn_apply", ins, 3, g.C);
    return ins[0];
  },
  grad: ({ x, y, dy, attrs }) => {
    const [xi, stats, gamma] = x;
    if (stats.op !== "bn_stats" || stats.inputs[0] !== xi) {
      throw new Error("bn_apply: stats must be bn_stats of the same input to be differentiated");
    }
    // With a fused ReLU the output itself is the mask: y > 0 exactly where the input of the
    // ReLU was positive.
    const mask = attrs.relu ? [y] : [];
    const sums = dy.graph.apply("bn_bwd_sums", [xi, stats, dy, ...mask], attrs);
    const C = gamma.shape[0];
    return [
      dy.graph.apply("bn_bwd_data", [xi, stats, gamma, dy, sums, ...mask], attrs),
      null,
      reshape(slice(sums, 0, 0, 1), [C]),
      reshape(slice(sums, 0, 1, 1), [C]),
    ];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_apply", shapes);
    const [x, s, gm, bt] = ins;
    const y = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      const v = (x[i] - s[c]) / Math.sqrt(s[g.C + c] + Math.fround(a.eps)) * gm[c] + bt[c];
      y[i] = a.relu ? Math.max(v, 0) : v;
    });
    return y;
  },
  // Per (n, c) run: y = x * k + sh with k, sh hoisted, and the run read and written as four
  // concurrent quarter streams, which keeps more DRAM requests in flight (see statsF32).
  cpu: (ins, a) => {
    const { B, C, HW } = geom("bn_apply", ins);
    const eps = Math.fround(a.eps);
    const relu = !!a.relu;
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
  },
  wgsl: (ins, a) => bnApply(geom("bn_apply", ins), a.eps, !!a.relu),
});

function maskArity(op: string, ins: Shape[], n: number, a: BnAttrs) {
  if (ins.length !== n + (a.relu ? 1 : 0)) {
    throw new ShapeError(op, ins, `expects ${n} inputs${a.relu ? " and the ReLU output y" : ""}`);
  }
  if (a.relu && ins[n].join() !== ins[0].join()) throw new ShapeError(op, ins, "y must match x");
}

defineOp<BnAttrs>({
  name: "bn_bwd_sums",
  shape: (ins, a) => {
    const g = geom("bn_bwd_sums", ins);
    maskArity("bn_bwd_sums", ins, 3, a);
    expectStats("bn_bwd_sums", ins, 1, g.C);
    if (ins[2].join() !== ins[0].join()) {
      throw new ShapeError("bn_bwd_sums", ins, "dy must match x");
    }
    return [2, g.C];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_bwd_sums", shapes);
    const [x, s, dy, y] = ins;
    const out = new Float64Array(2 * g.C);
    perChannel(g, (c, i) => {
      const d = a.relu && !(y[i] > 0) ? 0 : dy[i];
      out[c] += d * (x[i] - s[c]) / Math.sqrt(s[g.C + c] + Math.fround(a.eps));
      out[g.C + c] += d;
    });
    return out;
  },
  // Per channel, each [HW] run is read as four concurrent quarter streams (tail into the first
  // accumulators): more DRAM requests in flight than one sequential stream (see statsF32), and
  // four float64 accumulators per sum, combined as (a0 + a1) + (a2 + a3), break the add latency
  // chain in a fixed order. The ReLU mask is dy * +(y > 0), not a ternary: V8 compiles the ternary
  // to a branch that mispredicts on real activations (~2x slower in the U-Net step).
  cpu: (ins, a) => {
    const { B, C, HW } = geom("bn_bwd_sums", ins);
    const eps = Math.fround(a.eps);
    const relu = !!a.relu;
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
  },
  wgsl: (ins, a) => bnBackwardSums(geom("bn_bwd_sums", ins), a.eps, !!a.relu),
});

defineOp<BnAttrs>({
  name: "bn_bwd_data",
  shape: (ins, a) => {
    const g = geom("bn_bwd_data", ins);
    maskArity("bn_bwd_data", ins, 5, a);
    expectStats("bn_bwd_data", ins, 1, g.C);
    expectVec("bn_bwd_data", ins, 2, g.C);
    expectStats("bn_bwd_data", ins, 4, g.C);
    return ins[0];
  },
  ref: (ins, shapes, a) => {
    const g = geom("bn_bwd_data", shapes);
    const [x, s, gm, dy, ps, y] = ins;
    const n = g.B * g.HW;
    const dx = new Float64Array(x.length);
    perChannel(g, (c, i) => {
      const inv = 1 / Math.sqrt(s[g.C + c] + Math.fround(a.eps));
      const xh = (x[i] - s[c]) * inv;
      const d = a.relu && !(y[i] > 0) ? 0 : dy[i];
      dx[i] = gm[c] * inv * (d - (ps[g.C + c] + xh * ps[c]) / n);
    });
    return dx;
  },
  // dx = k d + (x p + r) with k = gamma inv, p = -k ps0 inv / n and r = k (m ps0 inv - ps1) / n:
  // the reference formula re-associated in float64 (far below the f32 rounding), two ops per
  // element fewer. Each (n, c) run is read and written as two concurrent half streams for more
  // DRAM requests in flight (four measured no better with four arrays); the mask is
  // dy * +(y > 0) as in bn_bwd_sums.
  cpu: (ins, a) => {
    const { B, C, HW } = geom("bn_bwd_data", ins);
    const n = B * HW;
    const eps = Math.fround(a.eps);
    const relu = !!a.relu;
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
  },
  wgsl: (ins, a) => bnBackwardData(geom("bn_bwd_data", ins), a.eps, !!a.relu),
});

/** Batch statistics [2, C]: per-channel mean and biased variance over (n, h, w). */
export const bnStatsOf = (x: Tensor): Tensor => x.graph.apply("bn_stats", [x]);
/** Training-mode batch norm from `bnStatsOf(x)`, differentiable through the statistics. */
export const bnApplyOp = (
  x: Tensor,
  stats: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  relu: boolean = false,
): Tensor => x.graph.apply("bn_apply", [x, stats, gamma, beta], { eps, relu });

type RunningAttrs = { momentum: number; unbiased: number };

/**
 * Running statistics update of nn.BatchNorm2d as one effect: rm = (1-m) rm + m mean,
 * rv = (1-m) rv + m var * N/(N-1). One node instead of eight tiny ones per layer.
 */
defineOp<RunningAttrs>({
  name: "bn_running_update",
  arity: 3,
  inplace: [0, 1],
  shape: (ins) => {
    const C = ins[0][0];
    if (ins[0].length !== 1 || ins[1].join() !== `${C}`) {
      throw new ShapeError("bn_running_update", ins, "running mean and var must be [C]");
    }
    expectStats("bn_running_update", ins, 2, C);
    return [0];
  },
  ref: (ins, _s, a) => {
    const [rm, rv, st] = ins;
    const C = rm.length;
    const m = Math.fround(a.momentum);
    for (let c = 0; c < C; c++) {
      rm[c] = (1 - m) * rm[c] + m * st[c];
      rv[c] = (1 - m) * rv[c] + m * Math.fround(a.unbiased) * st[C + c];
    }
    return new Float64Array(0);
  },
  cpu: (ins, a) => {
    const C = ins[0][0];
    const m = Math.fround(a.momentum);
    const k = m * Math.fround(a.unbiased);
    return {
      run: ([rm, rv, st]) => {
        for (let c = 0; c < C; c++) {
          rm[c] = (1 - m) * rm[c] + m * st[c];
          rv[c] = (1 - m) * rv[c] + k * st[C + c];
        }
      },
    };
  },
  wgsl: (ins, a) => runningUpdate(ins[0][0], a.momentum, a.unbiased),
});

/** Updates persistent running mean/var [C] from batch statistics [2, C] (an effect). */
export const bnRunningUpdate = (
  rm: Tensor,
  rv: Tensor,
  stats: Tensor,
  momentum: number,
  unbiased: number,
): Tensor => rm.graph.apply("bn_running_update", [rm, rv, stats], { momentum, unbiased });
