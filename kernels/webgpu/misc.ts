/**
 * WGSL for the LViT-specific ops: exact (erf) GELU and its gradient, Philox dropout, and the max
 * over one axis with its gradient. Every kernel writes each output element from one invocation
 * (gathers only, no atomics), in the fixed order design.md section 4 asks for.
 */
import type { AxisGeom, DropoutGeom } from "../../lib/graph/ops/misc.ts";
import type { KernelPlan } from "./types.ts";
import { ceilDiv, entry, f32, storageDecl, u32, WG } from "./common.ts";
import { PHILOX_WGSL } from "./philox.ts";

/**
 * Coefficients of P(t), lowest degree first, in erfc(z) ~= t exp(-z^2 + P(t)), t = 1/(1 + z/2),
 * z >= 0. They come from a degree-9 least-squares fit on 2000 Chebyshev nodes of t in (0, 1]
 * against the float64 erfc of lib/graph/ops/misc.ts, rounded to f32; the fit lands on the
 * classic Chebyshev-fitted erfc of this form to about 7 digits. The relative error of erfc is the
 * absolute error of P: 1.1e-7 with these f32 coefficients, uniformly in z (tails included), which
 * keeps GELU's negative tail accurate relative to its own size. tests/misc_ops_test.ts checks
 * the bound; the CPU kernel evaluates the same formula with the same coefficients in float64.
 */
export const ERFC_COEFFS: readonly number[] = [
  -1.265512228012085,
  1.0000237226486206,
  0.3740919530391693,
  0.09678418934345245,
  -0.18628805875778198,
  0.27886804938316345,
  -1.1352039575576782,
  1.488515853881836,
  -0.8221521973609924,
  0.1708727777004242,
];

/** Horner form of P(t) as a WGSL expression of `t`. */
function hornerWgsl(): string {
  const c = ERFC_COEFFS;
  let e = f32(c[c.length - 1]);
  for (let k = c.length - 2; k >= 0; k--) e = `${f32(c[k])} + t * (${e})`;
  return e;
}

/**
 * `gelu_phi2(x)` = 1 + erf(x / sqrt 2) = 2 Phi(x). erfc is evaluated at |x| / sqrt 2 and mirrored
 * for x >= 0 (2 - erfc), so for x < 0 the result is erfc itself, accurate relative to its size.
 * In f32, z carries a relative error ~u, which exp(-z^2) turns into ~2 z^2 u relative: large
 * only where erfc is far below any absolute tolerance (z^2 = 18 at x = -6, erfc ~ 2e-9).
 */
const PHI2_WGSL = /* wgsl */ `
fn gelu_phi2(x: f32) -> f32 {
  let z = abs(x) * ${f32(Math.SQRT1_2)};
  let t = 1.0 / (1.0 + 0.5 * z);
  let e = t * exp(-z * z + ${hornerWgsl()});
  return select(e, 2.0 - e, x >= 0.0);
}
`;

function elementwise(n: number, reads: string[], body: string, prelude = ""): KernelPlan {
  const decls = reads.map((nm, i) => storageDecl(i, nm, false));
  decls.push(storageDecl(reads.length, "out", true));
  return {
    kernels: [{
      code: `${prelude}${decls.join("\n")}\n${
        entry(`  let i = gi;\n  if (i >= ${u32(n)}) { return; }\n${body}`)
      }`,
      bindings: [...reads.map((_, k) => ({ in: k })), { out: true as const }],
      workgroups: ceilDiv(Math.max(n, 1), WG),
    }],
  };
}

/** y = x/2 (1 + erf(x / sqrt 2)) over n elements. */
export function geluForward(n: number): KernelPlan {
  return elementwise(n, ["x"], `  let v = x[i];\n  out[i] = 0.5 * v * gelu_phi2(v);`, PHI2_WGSL);
}

/** dx = dy (Phi(x) + x phi(x)), with phi the standard normal density. */
export function geluBackward(n: number): KernelPlan {
  return elementwise(
    n,
    ["x", "dy"],
    `  let v = x[i];
  let d = 0.5 * gelu_phi2(v) + v * ${f32(1 / Math.sqrt(2 * Math.PI))} * exp(-0.5 * v * v);
  out[i] = dy[i] * d;`,
    PHI2_WGSL,
  );
}

/**
 * Inverted dropout. One invocation per block of four elements: element i uses word i % 4 of the
 * Philox block at counter (i / 4, 0, step, 0), key (seed, stream) — the layout of the TS
 * `fillUniform` — so one Philox evaluation serves four elements and CPU and GPU draw the same
 * mask bit for bit. `step` is read from its [1] buffer at run time (f32 holds integers exactly up
 * to 2^24; the f32 -> u32 conversion truncates and saturates, which the CPU kernel mirrors).
 * Dropped elements are x * 0 (a signed zero), kept ones x * scale: one f32 multiply either way.
 */
export function dropoutKernel(g: DropoutGeom): KernelPlan {
  const blocks = ceilDiv(g.n, 4);
  const lanes = ["x", "y", "z", "w"].map((c, k) =>
    `  if (base + ${k}u < ${u32(g.n)}) {
    out[base + ${k}u] = x[base + ${k}u] * select(0.0, ${f32(g.scale)}, (r.${c} >> 8u) >= ${
      u32(g.thr)
    });
  }`
  );
  return {
    kernels: [{
      code: `${PHILOX_WGSL}
${storageDecl(0, "x", false)}
${storageDecl(1, "stepv", false)}
${storageDecl(2, "out", true)}
${
        entry(`  if (gi >= ${u32(blocks)}) { return; }
  let r = philox4x32(vec4<u32>(gi, 0u, u32(stepv[0]), 0u), vec2<u32>(${u32(g.seed)}, ${
          u32(g.stream)
        }));
  let base = gi * 4u;
${lanes.join("\n")}`)
      }`,
      bindings: [{ in: 0 }, { in: 1 }, { out: true }],
      workgroups: ceilDiv(Math.max(blocks, 1), WG),
    }],
  };
}

/** Scan of the slice starting at `base` (stride inner) leaving its first maximum and argmax. */
function scanSlice(g: AxisGeom): string {
  return `  var m = x[base];
  var best = 0u;
  for (var a = 1u; a < ${u32(g.A)}; a++) {
    let v = x[base + a * ${u32(g.inner)}];
    if (v > m) { m = v; best = a; }
  }`;
}

/** y[o, 0, j] = max over a of x[o, a, j]. */
export function maxAxisForward(g: AxisGeom): KernelPlan {
  return elementwise(
    g.outer * g.inner,
    ["x"],
    `  let base = (i / ${u32(g.inner)}) * ${u32(g.A * g.inner)} + i % ${u32(g.inner)};
${scanSlice(g)}
  out[i] = m;`,
  );
}

/**
 * dx[o, a, j] = dy[o, 0, j] where a is the first argmax of slice (o, j), else 0. A gather: each
 * input element rescans its slice (A reads) and tests whether it is the winner, so no two
 * invocations write one value and ties go to the lowest index as in the forward.
 */
export function maxAxisBackward(g: AxisGeom): KernelPlan {
  const { A, inner } = g;
  return elementwise(
    g.outer * A * inner,
    ["x", "dy"],
    `  let o = i / ${u32(A * inner)};
  let r = i % ${u32(A * inner)};
  let j = r % ${u32(inner)};
  let base = o * ${u32(A * inner)} + j;
${scanSlice(g)}
  out[i] = select(0.0, dy[o * ${u32(inner)} + j], best == r / ${u32(inner)});`,
  );
}
