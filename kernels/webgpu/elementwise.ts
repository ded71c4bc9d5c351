/** WGSL for elementwise ops with numpy broadcasting: one output element per invocation. */
import { broadcastStrides, numel, type Shape, stridesOf } from "../../lib/graph/shape.ts";
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, storageDecl, u32, WG } from "./common.ts";

/**
 * Index expression of an input read as `outShape`. Inputs with the output's shape are read at `i`
 * directly; broadcast inputs rebuild their offset from the output coordinates, with size-1 axes
 * dropped so the generated code only does the divisions it needs.
 */
export function broadcastIndex(inShape: Shape, outShape: Shape, i = "i"): string {
  if (numel(inShape) === numel(outShape)) return i;
  if (numel(inShape) === 1) return "0u";
  const st = broadcastStrides(inShape, outShape);
  const os = stridesOf(outShape);
  const terms: string[] = [];
  for (let d = 0; d < outShape.length; d++) {
    if (st[d] === 0 || outShape[d] === 1) continue;
    const coord = d === 0
      ? `(${i} / ${u32(os[d])})`
      : `((${i} / ${u32(os[d])}) % ${u32(outShape[d])})`;
    terms.push(st[d] === 1 ? coord : `${coord} * ${u32(st[d])}`);
  }
  return terms.length ? terms.join(" + ") : "0u";
}

/** A kernel computing `expr(v0, v1, ...)` where vk is the k-th input read with broadcasting. */
export function elementwiseKernel(
  inShapes: Shape[],
  outShape: Shape,
  expr: (vars: string[]) => string,
): KernelPlan {
  const n = numel(outShape);
  const decls = inShapes.map((_, k) => storageDecl(k, `in${k}`, false));
  decls.push(storageDecl(inShapes.length, "out", true));
  const vars = inShapes.map((_, k) => `v${k}`);
  const loads = inShapes.map((s, k) => `  let v${k} = in${k}[${broadcastIndex(s, outShape)}];`);
  const code = `${decls.join("\n")}
${
    entry(`  let i = gi;
  if (i >= ${u32(n)}) { return; }
${loads.join("\n")}
  out[i] = ${expr(vars)};`)
  }`;
  return {
    kernels: [{
      code,
      bindings: [...inShapes.map((_, k) => ({ in: k })), { out: true as const }],
      workgroups: ceilDiv(Math.max(n, 1), WG),
    }],
  };
}
