/**
 * Data movement on the CPU: slice, pad and concat along one axis. Each is a list of block copies
 * (`outer` blocks of contiguous floats per input), so they share one copier: long blocks go
 * through `TypedArray.set` (a memmove, ~6x faster than a JS loop), short ones through a
 * generated loop. Copies are exact, as the tests require (atol 0).
 */
import type { CpuKernel } from "./types.ts";
import { numel, type Shape } from "../../lib/graph/shape.ts";
import { jit, type RunFn } from "./elementwise.ts";

/** Block i copies `len` floats from `src[srcAt + i * srcStep]` to `out[dstAt + i * dstStep]`. */
export interface Blocks {
  count: number;
  len: number;
  srcAt: number;
  srcStep: number;
  dstAt: number;
  dstStep: number;
}

/** Blocks at least this long are copied with `set`; below it the call costs more than a loop. */
const SET_MIN = 256;

/** Splits a shape around `axis` into (outer, axis size, inner). */
function around(shape: Shape, axis: number) {
  return {
    outer: numel(shape.slice(0, axis)),
    len: shape[axis],
    inner: numel(shape.slice(axis + 1)),
  };
}

/** A copy of blocks from input `k` into `out`; `srcSize` is the input's element count. */
export function blockCopy(k: number, b0: Blocks, srcSize: number): RunFn {
  // Blocks that abut on both sides are one block.
  const b = b0.count > 1 && b0.srcStep === b0.len && b0.dstStep === b0.len
    ? { ...b0, count: 1, len: b0.count * b0.len }
    : b0;
  if (b.count === 0 || b.len === 0) return () => {};
  if (b.count === 1 && b.srcAt === 0 && b.len === srcSize) {
    return (ins, out) => out.set(ins[k], b.dstAt);
  }
  if (b.len >= SET_MIN) {
    let key: Float32Array | undefined;
    const views: Float32Array[] = [];
    return (ins, out) => {
      const x = ins[k];
      if (x !== key) {
        // The executor passes the same planned views on every run, so these sub-views are made
        // once, on the first run, and steady-state runs allocate nothing.
        views.length = 0;
        for (let i = 0; i < b.count; i++) {
          const at = b.srcAt + i * b.srcStep;
          views.push(x.subarray(at, at + b.len));
        }
        key = x;
      }
      for (let i = 0; i < b.count; i++) out.set(views[i], b.dstAt + i * b.dstStep);
    };
  }
  return jit(`const x = ins[${k}];
for (let i = 0; i < ${b.count}; i++) {
  const s = ${b.srcAt} + i * ${b.srcStep}, d = ${b.dstAt} + i * ${b.dstStep};
  for (let j = 0; j < ${b.len}; j++) out[d + j] = x[s + j];
}`);
}

/** `size` entries of `axis` from `start`. */
export function sliceCpu(shape: Shape, axis: number, start: number, size: number): CpuKernel {
  const { outer, len, inner } = around(shape, axis);
  const run = blockCopy(0, {
    count: outer,
    len: size * inner,
    srcAt: start * inner,
    srcStep: len * inner,
    dstAt: 0,
    dstStep: size * inner,
  }, numel(shape));
  return { run };
}

/** Zero padding of `axis` by `before` and `after` entries. */
export function padCpu(shape: Shape, axis: number, before: number, after: number): CpuKernel {
  const { outer, len, inner } = around(shape, axis);
  const ol = len + before + after;
  const copy = blockCopy(0, {
    count: outer,
    len: len * inner,
    srcAt: 0,
    srcStep: len * inner,
    dstAt: before * inner,
    dstStep: ol * inner,
  }, numel(shape));
  if (before === 0 && after === 0) return { run: copy };
  // Zeroing the whole output first is one memset, cheaper than a fill call per gap.
  return {
    run: (ins, out, scratch) => {
      out.fill(0);
      copy(ins, out, scratch);
    },
  };
}

/** Inputs laid side by side along `axis`. */
export function concatCpu(shapes: readonly Shape[], axis: number): CpuKernel {
  const ol = shapes.reduce((t, s) => t + s[axis], 0);
  let start = 0;
  const copies = shapes.map((s, k) => {
    const { outer, len, inner } = around(s, axis);
    const c = blockCopy(k, {
      count: outer,
      len: len * inner,
      srcAt: 0,
      srcStep: len * inner,
      dstAt: start * inner,
      dstStep: ol * inner,
    }, numel(s));
    start += len;
    return c;
  });
  return {
    run: (ins, out, scratch) => {
      for (let k = 0; k < copies.length; k++) copies[k](ins, out, scratch);
    },
  };
}
