/**
 * `sum` over axes on the CPU, generated per node like the elementwise kernels (the source is
 * built from shapes only).
 *
 * Each output is a gather over its reduced elements in row-major order, accumulated in float64
 * locals (JS numbers) and rounded to f32 once. The summation order depends only on the shapes,
 * so results are bitwise reproducible, and float64 accumulation makes them as accurate as the
 * reference to within the final rounding (the f32 kernels on the GPU err by ~sqrt(R) ulp).
 *
 * Axes are coalesced first (size-1 axes dropped, neighbours of the same kind merged), so the
 * common cases become short nests without special code:
 * - over [0, 2, 3] of NCHW (batch-norm statistics, bias gradients): per channel, a loop over n
 *   around a contiguous run over h * w;
 * - over all axes: one contiguous run;
 * - over trailing axes: one contiguous run per output;
 * - any other pattern: the same nest with a strided innermost run.
 * Contiguous runs are read as four concurrent quarter streams (the tail goes to s0), each with its
 * own float64 accumulator, combined as (s0 + s1) + (s2 + s3). One sequential stream is
 * latency-bound on DRAM here (~1.6 ns per f32 against ~0.6 ns for four), and four accumulators
 * break the add latency chain; the order stays a function of the shapes alone.
 */
import type { CpuKernel } from "./types.ts";
import type { Shape } from "../../lib/graph/shape.ts";
import { jit, jitPart, partRange } from "./elementwise.ts";
import { ranged } from "./parts.ts";

/** A run of merged axes: total size, row-major stride, and whether it is reduced. */
interface Group {
  size: number;
  stride: number;
  reduced: boolean;
}

/** Input axes with size-1 axes dropped and neighbours of the same kind merged. */
export function reduceGroups(shape: Shape, axes: readonly number[]): Group[] {
  const gs: Group[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const reduced = axes.includes(d);
    const last = gs[gs.length - 1];
    if (last && last.reduced === reduced) last.size *= shape[d];
    else gs.push({ size: shape[d], stride: 0, reduced });
  }
  let s = 1;
  for (let i = gs.length - 1; i >= 0; i--) {
    gs[i].stride = s;
    s *= gs[i].size;
  }
  return gs;
}

/** Runs at least this long are split into four quarter streams. */
const UNROLL_MIN = 8;

/**
 * Source of the sum kernel: kept axes outside, reduced axes inside, in row-major order. `parted`:
 * the body of a `runPart` that takes its part (`lo`..`hi`) of the outermost kept axis (there
 * must be one).
 */
export function sumSource(shape: Shape, axes: readonly number[], parted = false): string {
  const gs = reduceGroups(shape, axes);
  const kept = gs.filter((g) => !g.reduced);
  const red = gs.filter((g) => g.reduced);
  const rest = kept.slice(1).reduce((n, g) => n * g.size, 1);
  const lines = parted
    ? ["const x = ins[0];", partRange(kept[0].size), `let o = lo * ${rest};`]
    : ["const x = ins[0];", "let o = 0;"];
  let ind = "";
  const open = (g: Group, name: string, base: string) => {
    const from = parted && name === "k0" ? "lo" : "0", to = parted && name === "k0" ? "hi" : g.size;
    lines.push(`${ind}for (let ${name} = ${from}; ${name} < ${to}; ${name}++) {`);
    ind += "  ";
    const term = g.stride === 1 ? name : `${name} * ${g.stride}`;
    lines.push(`${ind}const b_${name} = ${base === "0" ? term : `${base} + ${term}`};`);
    return `b_${name}`;
  };
  let base = "0";
  kept.forEach((g, i) => (base = open(g, `k${i}`, base)));
  const depth = ind.length;
  lines.push(`${ind}let s0 = 0, s1 = 0, s2 = 0, s3 = 0;`);
  red.slice(0, -1).forEach((g, i) => (base = open(g, `r${i}`, base)));
  const inner = red[red.length - 1];
  const at = (j: string) => (base === "0" ? j : `${base} + ${j}`);
  if (inner.stride === 1 && inner.size >= UNROLL_MIN) {
    const q = inner.size >> 2;
    lines.push(`${ind}for (let j = 0; j < ${q}; j++) {`);
    lines.push(`${ind}  const p = ${at("j")};`);
    lines.push(
      `${ind}  s0 += x[p]; s1 += x[p + ${q}]; s2 += x[p + ${2 * q}]; s3 += x[p + ${3 * q}];`,
    );
    lines.push(`${ind}}`);
    if (4 * q < inner.size) {
      lines.push(`${ind}for (let j = ${4 * q}; j < ${inner.size}; j++) s0 += x[${at("j")}];`);
    }
  } else {
    const j = inner.stride === 1 ? "j" : `j * ${inner.stride}`;
    lines.push(`${ind}for (let j = 0; j < ${inner.size}; j++) s0 += x[${at(j)}];`);
  }
  while (ind.length > depth) {
    ind = ind.slice(2);
    lines.push(`${ind}}`);
  }
  lines.push(`${ind}out[o++] = (s0 + s1) + (s2 + s3);`);
  while (ind.length > 0) {
    ind = ind.slice(2);
    lines.push(`${ind}}`);
  }
  return lines.join("\n");
}

/** Inner runs at least this long make a middle-axis sum row-wise (see `rowSum`). */
const ROW_MIN = 64;

/**
 * A sum over a middle axis group whose kept inner run is contiguous, e.g. over the channels of
 * NCHW ([outer, R, inner] with the R axis reduced): reading x[o, r, j] for fixed j would stride
 * by `inner` floats and miss the cache on every read, so whole rows are added instead, into
 * float64 accumulators (one per j, allocated once per node). Each output is still the sum over r
 * in ascending order: the order depends on the shapes only.
 */
function rowSum(outer: number, R: number, inner: number): CpuKernel {
  const acc = new Float64Array(inner);
  // Parts take columns [j0, j1) of every o (and the same slice of this thread's accumulators).
  return ranged(inner, ([x], out, j0, j1) => {
    for (let o = 0; o < outer; o++) {
      const b0 = o * R * inner;
      for (let j = j0; j < j1; j++) acc[j] = x[b0 + j];
      for (let r = 1; r < R; r++) {
        const b = b0 + r * inner;
        for (let j = j0; j < j1; j++) acc[j] += x[b + j];
      }
      const ob = o * inner;
      for (let j = j0; j < j1; j++) out[ob + j] = acc[j];
    }
  });
}

/**
 * The CPU kernel of `sum(x, axes)` (axes normalised and sorted). A sum over no axis of size > 1
 * is a copy.
 */
export function sumCpu(shape: Shape, axes: readonly number[]): CpuKernel {
  const gs = reduceGroups(shape, axes);
  if (!gs.some((g) => g.reduced)) {
    return { run: (ins, out) => out.set(ins[0]) };
  }
  // [kept?, reduced, kept inner]: row-wise.
  const n = gs.length, last = gs[n - 1];
  if (n >= 2 && n <= 3 && !last.reduced && gs[n - 2].reduced && last.size >= ROW_MIN) {
    return rowSum(n === 3 ? gs[0].size : 1, gs[n - 2].size, last.size);
  }
  if (!gs.some((g) => !g.reduced)) return { run: jit(sumSource(shape, axes)) };
  const runPart = jitPart(sumSource(shape, axes, true));
  return { run: (ins, out, scratch) => runPart(ins, out, scratch, 0, 1), runPart };
}
