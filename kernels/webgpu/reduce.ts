/**
 * Sum over axes with a fixed summation order (design.md 4: no atomics, device-independent
 * order). Large reductions with few outputs (batch-norm statistics) are split into contiguous
 * chunks whose partial sums are then added in chunk order, so both cores get work.
 */
import { numel, type Shape, stridesOf } from "../../lib/graph/shape.ts";
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, storageDecl, u32, WG } from "./common.ts";

/** Code decoding linear index `v` over (sizes, strides) into an offset added to `acc`. */
function decode(v: string, sizes: number[], strides: number[], acc: string): string {
  const lines: string[] = [`  var ${v}_r = ${v};`];
  for (let k = sizes.length - 1; k >= 0; k--) {
    const last = k === 0;
    const coord = last ? `${v}_r` : `(${v}_r % ${u32(sizes[k])})`;
    lines.push(`  ${acc} += ${coord} * ${u32(strides[k])};`);
    if (!last) lines.push(`  ${v}_r = ${v}_r / ${u32(sizes[k])};`);
  }
  return lines.join("\n");
}

/** Splits axes of `shape` into kept and reduced, each as (sizes, input strides). */
function axesSplit(shape: Shape, axes: number[]) {
  const st = stridesOf(shape);
  const kept = { sizes: [] as number[], strides: [] as number[] };
  const red = { sizes: [] as number[], strides: [] as number[] };
  shape.forEach((d, i) => {
    const tgt = axes.includes(i) ? red : kept;
    tgt.sizes.push(d);
    tgt.strides.push(st[i]);
  });
  return { kept, red };
}

/** Reduced elements per chunk when a reduction is split in two stages. */
const CHUNK = 256;

export function sumKernel(inShape: Shape, axes: number[]): KernelPlan {
  const { kept, red } = axesSplit(inShape, axes);
  const nOut = numel(kept.sizes);
  const R = numel(red.sizes);
  const chunks = nOut < 1024 && R > 4 * CHUNK ? ceilDiv(R, CHUNK) : 1;
  const L = chunks === 1 ? R : CHUNK;
  const body = (dst: string) => `
  let o = gi / ${u32(chunks)};
  let c = gi % ${u32(chunks)};
  if (o >= ${u32(nOut)}) { return; }
  var base = 0u;
${decode("o", kept.sizes, kept.strides, "base")}
  let r0 = c * ${u32(L)};
  let r1 = min(r0 + ${u32(L)}, ${u32(R)});
  var s = 0.0;
  for (var r = r0; r < r1; r++) {
    var off = base;
${decode("r", red.sizes, red.strides, "off")}
    s += x[off];
  }
  ${dst}[gi] = s;`;
  if (chunks === 1) {
    return {
      kernels: [{
        code: `${storageDecl(0, "x", false)}\n${storageDecl(1, "out", true)}\n${
          entry(body("out"))
        }`,
        bindings: [{ in: 0 }, { out: true }],
        workgroups: ceilDiv(nOut, WG),
      }],
    };
  }
  const stage2 = `${storageDecl(0, "part", false)}\n${storageDecl(1, "out", true)}\n${
    entry(`  if (gi >= ${u32(nOut)}) { return; }
  var s = 0.0;
  for (var c = 0u; c < ${u32(chunks)}; c++) { s += part[gi * ${u32(chunks)} + c]; }
  out[gi] = s;`)
  }`;
  return {
    scratch: [nOut * chunks],
    kernels: [
      {
        code: `${storageDecl(0, "x", false)}\n${storageDecl(1, "part", true)}\n${
          entry(body("part"))
        }`,
        bindings: [{ in: 0 }, { scratch: 0 }],
        workgroups: ceilDiv(nOut * chunks, WG),
      },
      { code: stage2, bindings: [{ scratchIn: 0 }, { out: true }], workgroups: ceilDiv(nOut, WG) },
    ],
  };
}

/** out[i] = x[map(i)] or 0 where the map says so: slices, zero-padding, concat pieces. */
export function gatherKernel(n: number, index: string, valid?: string): KernelPlan {
  const read = valid ? `select(0.0, x[${index}], ${valid})` : `x[${index}]`;
  // The select only guards the value; the index must stay in range, so callers clamp it.
  return {
    kernels: [{
      code: `${storageDecl(0, "x", false)}\n${storageDecl(1, "out", true)}\n${
        entry(`  let i = gi;\n  if (i >= ${u32(n)}) { return; }\n  out[i] = ${read};`)
      }`,
      bindings: [{ in: 0 }, { out: true }],
      workgroups: ceilDiv(n, WG),
    }],
  };
}
