/**
 * Max pooling, its gradient, nearest upsampling and block sums on the CPU, generated per node
 * with the geometry as literals (the source is built from shapes only). Windows of up to
 * MAX_UNROLL taps are unrolled.
 */
import type { CpuKernel } from "./types.ts";
import type { PoolGeom } from "../../lib/graph/ops/pool.ts";
import { jitPart, partRange } from "./elementwise.ts";
import type { RunPartFn } from "./elementwise.ts";

/** The kernel of a generated body that computes its part (`lo`..`hi`) of the work. */
function parted(runPart: RunPartFn): CpuKernel {
  return { run: (ins, out, scratch) => runPart(ins, out, scratch, 0, 1), runPart };
}

/** Windows with at most this many taps are written out tap by tap. */
const MAX_UNROLL = 16;

/** Row-major offsets of a k x k window in rows of width W. */
function taps(k: number, W: number): number[] {
  const t: number[] = [];
  for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) t.push(a * W + b);
  return t;
}

/**
 * Statements leaving in `k` the index of the window's first maximum (origin `r`), as the
 * reference scans it: a tap replaces the best only when strictly greater. The choice is index
 * arithmetic on a 0/1 comparison instead of a branch: pooling compares values in random order,
 * and a mispredicted branch per tap made the loop ~3x slower.
 */
function argmaxSource(g: PoolGeom): string {
  const t = taps(g.k, g.W);
  if (t.length <= MAX_UNROLL) {
    const lines = ["let k = r;", "let m = x[r];"];
    t.slice(1).forEach((off, i) => {
      lines.push(`{ const j = r + ${off}; k += (j - k) * +(x[j] > m); }`);
      if (i < t.length - 2) lines.push("m = x[k];");
    });
    return lines.join("\n");
  }
  return `let k = r;
let m = x[r];
for (let a = 0; a < ${g.k}; a++) {
  for (let b = 0; b < ${g.k}; b++) {
    const j = r + a * ${g.W} + b;
    k += (j - k) * +(x[j] > m);
    m = x[k];
  }
}`;
}

/**
 * Loops over the windows in output order with `r` the window origin and `o` the output index,
 * for the planes [lo, hi) of this part.
 */
function overWindows(g: PoolGeom, body: string, before = ""): string {
  const { B, C, H, W, s, OH, OW } = g;
  return `${partRange(B * C)}
${before}
let o = lo * ${OH * OW};
for (let p = lo; p < hi; p++) {
  for (let oy = 0; oy < ${OH}; oy++) {
    let r = p * ${H * W} + oy * ${s * W};
    for (let ox = 0; ox < ${OW}; ox++, r += ${s}, o++) {
${body}
    }
  }
}`;
}

/** Max over each k x k window (stride s), the first maximum in scan order winning. */
export function maxpoolCpu(g: PoolGeom): CpuKernel {
  return parted(
    jitPart(`const x = ins[0];\n${overWindows(g, `${argmaxSource(g)}\nout[o] = x[k];`)}`),
  );
}

/**
 * dx: each window's dy added at its first maximum, in window order; pixels under no window's
 * maximum stay zero. With overlapping windows (k > s) a pixel accumulates at most
 * ceil(k/s)^2 terms in f32.
 */
export function maxpoolBwdCpu(g: PoolGeom): CpuKernel {
  // A window's maximum lies in its own plane, so a part zeroes and fills its planes only.
  const hw = g.H * g.W;
  return parted(jitPart(`const x = ins[0], dy = ins[1];
${
    overWindows(g, `${argmaxSource(g)}\nout[k] += dy[o];`, `out.fill(0, lo * ${hw}, hi * ${hw});`)
  }`));
}

/** Nearest upsampling by f: each input value written to its f x f block. */
export function upsampleNearestCpu(B: number, C: number, H: number, W: number, f: number) {
  const WO = W * f;
  const body = f * f <= MAX_UNROLL
    ? taps(f, WO).map((off) => `out[d + ${off}] = v;`).join(" ")
    : `for (let a = 0; a < ${f}; a++) for (let b = 0; b < ${f}; b++) out[d + a * ${WO} + b] = v;`;
  const runPart = jitPart(`const x = ins[0];
${partRange(B * C * H)}
let i = lo * ${W};
for (let p = lo; p < hi; p++) {
  const row = p * ${f * WO};
  for (let ix = 0; ix < ${W}; ix++, i++) {
    const v = x[i];
    const d = row + ix * ${f};
    ${body}
  }
}`);
  return parted(runPart);
}

/**
 * Sums over f x f blocks (the gradient of nearest upsampling): each block in row-major order in
 * a float64 local, stored as f32.
 */
export function poolSumCpu(B: number, C: number, H: number, W: number, f: number): CpuKernel {
  const t = taps(f, W);
  const sum = t.length <= MAX_UNROLL ? t.map((off) => `x[r + ${off}]`).join(" + ") : "0";
  const loop = t.length <= MAX_UNROLL
    ? ""
    : `for (let a = 0; a < ${f}; a++) for (let b = 0; b < ${f}; b++) s += x[r + a * ${W} + b];`;
  const g: PoolGeom = { B, C, H, W, k: f, s: f, OH: H / f, OW: W / f };
  return parted(
    jitPart(`const x = ins[0];\n${overWindows(g, `let s = ${sum};\n${loop}\nout[o] = s;`)}`),
  );
}
