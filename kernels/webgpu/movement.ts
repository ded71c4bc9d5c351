/** Movement ops as WGSL gathers: slice, zero-padding and concat along one axis. */
import { numel, type Shape } from "../../lib/graph/shape.ts";
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, storageDecl, u32, WG } from "./common.ts";
import { gatherKernel } from "./reduce.ts";

/** A shape as [outer, len, inner] around `axis`. */
function around(shape: Shape, axis: number) {
  return {
    outer: numel(shape.slice(0, axis)),
    len: shape[axis],
    inner: numel(shape.slice(axis + 1)),
  };
}

/** `size` entries of `axis` from `start`: one gather over the output. */
export function sliceKernel(shape: Shape, axis: number, start: number, size: number): KernelPlan {
  const { outer, inner, len } = around(shape, axis);
  const blk = size * inner;
  return gatherKernel(
    outer * blk,
    `(i / ${u32(blk)}) * ${u32(len * inner)} + ${u32(start * inner)} + i % ${u32(blk)}`,
  );
}

/** Zero padding of `axis` by `before` and `after` entries: one gather, zero where invalid. */
export function padKernel(shape: Shape, axis: number, before: number, after: number): KernelPlan {
  const { outer, inner, len } = around(shape, axis);
  const ol = len + before + after;
  const c = `((i % ${u32(ol * inner)}) / ${u32(inner)})`;
  const valid = `${c} >= ${u32(before)} && ${c} < ${u32(before + len)}`;
  const cc = `select(0u, ${c} - ${u32(before)}, ${valid})`;
  return gatherKernel(
    outer * ol * inner,
    `((i / ${u32(ol * inner)}) * ${u32(len)} + ${cc}) * ${u32(inner)} + i % ${u32(inner)}`,
    valid,
  );
}

/** Inputs laid side by side along `axis`: one dispatch per input, each writing its own slab. */
export function concatKernel(shapes: readonly Shape[], axis: number): KernelPlan {
  const ol = shapes.reduce((t, s) => t + s[axis], 0);
  let start = 0;
  const kernels = shapes.map((s, k) => {
    const { inner, len } = around(s, axis);
    const n = numel(s);
    const blk = len * inner;
    const code = `${storageDecl(0, "x", false)}\n${storageDecl(1, "out", true)}\n${
      entry(`  let i = gi;
  if (i >= ${u32(n)}) { return; }
  out[(i / ${u32(blk)}) * ${u32(ol * inner)} + ${u32(start * inner)} + i % ${u32(blk)}] = x[i];`)
    }`;
    start += len;
    return { code, bindings: [{ in: k }, { out: true as const }], workgroups: ceilDiv(n, WG) };
  });
  return { kernels };
}
