/**
 * Elementwise CPU kernels with numpy broadcasting, generated per node.
 *
 * Each op gives a JS expression of its operands (the `js` field of its table entry); this module
 * wraps it in a loop nest specialised to the node's static shapes and compiles it with
 * `new Function`. Sizes and strides become literals and every generated function sees only
 * Float32Arrays, so V8 compiles each node to a tight monomorphic loop. The generated source is
 * built only from the op table's own expressions and from numbers formatted by `jsNum`, never
 * from user input.
 *
 * The loop nest comes from coalescing the output axes: size-1 axes are dropped and neighbouring
 * axes merged wherever every operand walks them contiguously (or not at all), so
 * - same-shape operands become one flat loop with no index arithmetic;
 * - a scalar operand is loaded once, before that loop;
 * - a per-channel operand ([1, C, 1, 1] against [N, C, H, W]) gives loops over (n, c) blocks
 *   with the channel value hoisted and a contiguous inner loop over h * w;
 * - any other broadcast still gets a contiguous or hoisted innermost axis (the innermost kept
 *   axis of a row-major operand has stride 1 or 0), with outer offsets added per block.
 */
import type { CpuKernel } from "./types.ts";
import { broadcastStrides, numel, type Shape } from "../../lib/graph/shape.ts";

/** A JS expression of one output element from its operands' variable names (`v0`, `v1`, ...). */
export type JsExpr = (v: string[]) => string;

/** The signature of a kernel's `run`. */
export type RunFn = CpuKernel["run"];

/**
 * Compiles a kernel body that sees `ins`, `out` and `scratch`. Callers build `body` from their
 * own code and numbers only (see the module comment); V8 then optimises each node separately.
 */
export function jit(body: string): RunFn {
  return new Function("ins", "out", "scratch", `"use strict";\n${body}`) as RunFn;
}

/** The signature of a kernel's `runPart`. */
export type RunPartFn = NonNullable<CpuKernel["runPart"]>;

/** Like `jit`, for a body that also sees `part` and `parts` (see CpuKernel.runPart). */
export function jitPart(body: string): RunPartFn {
  return new Function(
    "ins",
    "out",
    "scratch",
    "part",
    "parts",
    `"use strict";\n${body}`,
  ) as RunPartFn;
}

/**
 * Source lines setting `lo` and `hi` to part `part` of `parts` of [0, n): contiguous, in order,
 * sizes differing by at most one.
 */
export function partRange(n: number | string): string {
  return `const lo = Math.floor(${n} * part / parts), hi = Math.floor(${n} * (part + 1) / parts);`;
}

/** A JS numeric literal of `x`, parenthesised so it can stand anywhere in an expression. */
export function jsNum(x: number): string {
  if (typeof x !== "number") throw new Error(`not a number: ${x}`);
  if (Object.is(x, -0)) return "(-0)";
  return `(${x})`;
}

/** Coalesced iteration space: sizes outermost first, and each operand's stride per axis. */
export interface LoopNest {
  dims: number[];
  strides: number[][];
}

/** The output's axes with size-1 axes dropped and contiguous neighbours merged (see above). */
export function loopNest(inShapes: readonly Shape[], outShape: Shape): LoopNest {
  const st = inShapes.map((s) => broadcastStrides(s, outShape));
  const dims: number[] = [];
  const strides: number[][] = inShapes.map(() => []);
  for (let d = 0; d < outShape.length; d++) {
    const size = outShape[d];
    if (size === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && st.every((s, k) => strides[k][last] === s[d] * size)) {
      dims[last] *= size;
      st.forEach((s, k) => (strides[k][last] = s[d]));
    } else {
      dims.push(size);
      st.forEach((s, k) => strides[k].push(s[d]));
    }
  }
  if (dims.length === 0) {
    dims.push(1);
    strides.forEach((s) => s.push(0));
  }
  return { dims, strides };
}

/** `base + term`, folding a zero base. */
const plus = (base: string, term: string) => (base === "0" ? term : `${base} + ${term}`);

/**
 * Source of the loop nest computing `expr` over broadcast operands into `out`. `split`: the body
 * of a `runPart`, which takes only its part of the outermost loop (`jitPart`).
 */
export function elementwiseSource(
  inShapes: readonly Shape[],
  outShape: Shape,
  expr: JsExpr,
  split = false,
) {
  const { dims, strides } = loopNest(inShapes, outShape);
  const K = inShapes.length;
  const r = dims.length;
  const L = dims[r - 1];
  const vars = inShapes.map((_, k) => `v${k}`);
  const lines: string[] = [];
  if (K) lines.push(`const ${vars.map((_, k) => `x${k} = ins[${k}]`).join(", ")};`);
  if (split) lines.push(partRange(dims[0]));
  const perOuter = dims.slice(1).reduce((a, b) => a * b, 1);
  if (r > 1) lines.push(split ? `let o = lo * ${perOuter};` : "let o = 0;");
  let ind = "";
  let base = vars.map(() => "0");
  for (let d = 0; d < r - 1; d++) {
    const from = split && d === 0 ? "lo" : "0", to = split && d === 0 ? "hi" : `${dims[d]}`;
    lines.push(`${ind}for (let i${d} = ${from}; i${d} < ${to}; i${d}++) {`);
    ind += "  ";
    base = base.map((b, k) => {
      const s = strides[k][d];
      if (s === 0) return b;
      lines.push(`${ind}const b${k}_${d} = ${plus(b, s === 1 ? `i${d}` : `i${d} * ${s}`)};`);
      return `b${k}_${d}`;
    });
  }
  // Operands constant along the innermost axis are loaded once per block.
  const inner: string[] = [];
  for (let k = 0; k < K; k++) {
    const s = strides[k][r - 1];
    if (s === 0) lines.push(`${ind}const v${k} = x${k}[${base[k]}];`);
    else inner.push(`const v${k} = x${k}[${plus(base[k], s === 1 ? "j" : `j * ${s}`)}];`);
  }
  const o = r > 1 ? "o + j" : "j";
  const [j0, j1] = split && r === 1 ? ["lo", "hi"] : ["0", `${L}`];
  lines.push(`${ind}for (let j = ${j0}; j < ${j1}; j++) {`);
  for (const l of inner) lines.push(`${ind}  ${l}`);
  lines.push(`${ind}  out[${o}] = ${expr(vars)};`);
  lines.push(`${ind}}`);
  if (r > 1) lines.push(`${ind}o += ${L};`);
  for (let d = r - 2; d >= 0; d--) {
    ind = ind.slice(2);
    lines.push(`${ind}}`);
  }
  return lines.join("\n");
}

/**
 * The CPU kernel of an elementwise op: `expr` of the broadcast operands, computed in float64 (JS
 * numbers) and rounded to f32 once, on the store.
 */
export function elementwiseCpu(inShapes: readonly Shape[], outShape: Shape, expr: JsExpr) {
  const n = numel(outShape);
  // A pure copy of a same-size operand (expand to its own shape) is a memcpy.
  if (inShapes.length === 1 && numel(inShapes[0]) === n && expr(["v0"]) === "v0") {
    return {
      run: (ins: Float32Array[], out: Float32Array) => out.set(ins[0]),
      runPart: (ins, out, _s, part, parts) => {
        const lo = Math.floor(n * part / parts), hi = Math.floor(n * (part + 1) / parts);
        out.set(ins[0].subarray(lo, hi), lo);
      },
    } as CpuKernel;
  }
  return {
    run: jit(elementwiseSource(inShapes, outShape, expr)),
    runPart: jitPart(elementwiseSource(inShapes, outShape, expr, true)),
  } as CpuKernel;
}
