/**
 * GELU and its gradient as WebAssembly SIMD loops over float64 lane pairs: the arithmetic of
 * misc.ts `geluScalar`/`geluGradScalar` (with `geluPhi2` and exp.ts `expF64`), operation for
 * operation and in the same order, so the outputs equal theirs bit for bit
 * (tests/misc_ops_test.ts). As JavaScript the formulas took ~17-20 and ~28 ns per element on the
 * development machine (V8 keeps them scalar) and LViT-L spent 12% of its training step in them;
 * here 4.3 and 6.6 ns.
 *
 * WebAssembly cannot read the kernels' Float32Arrays, so elements go through the module's memory
 * in chunks of CHUNK: copied in, computed, copied out (under 0.4 ns per element with the loop).
 * Each thread (worker) instantiates its own module on first use. The module has no FMA (relaxed
 * SIMD is not used); its float64 add, sub, mul, div, comparisons, the f32 -> f64 promotion and
 * the rounding f64 -> f32 are IEEE 754's, as JavaScript's are.
 */
import { assemble, get, I32 } from "../../lib/wasm/assemble.ts";
import { POW2 } from "./exp.ts";
import { ERFC_COEFFS } from "../webgpu/misc.ts";
import {
  abs,
  add,
  and,
  type Code,
  div,
  exp,
  EXP_LOCALS,
  ge,
  let_,
  loadF32,
  mul,
  neg,
  pairLoop,
  storeF32,
  sub,
  V128Locals,
} from "./f64x2_wasm.ts";

/** Lane pairs in flight per loop iteration (f64x2_wasm.ts `pairLoop`). */
const LANE_SETS = 8;

/** Elements per call. */
const CHUNK = 8192;
// Memory layout (bytes): exp's 2^k table, then the chunk's x, dy and output (f32 each).
const X_OFF = 16896, DY_OFF = X_OFF + 4 * CHUNK, OUT_OFF = DY_OFF + 4 * CHUNK;
const PAGES = 2;
if (
  POW2.byteLength > X_OFF || OUT_OFF + 4 * CHUNK > PAGES * 65536 || CHUNK % (2 * LANE_SETS) !== 0
) {
  throw new Error("gelu_wasm: memory layout does not fit");
}

const [C0, C1, C2, C3, C4, C5, C6, C7, C8, C9] = ERFC_COEFFS.map(Math.fround);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const NAMES = [
  ...["x", "dy", "z", "t", "t2", "t4", "t8", "arg", "e", "ex", "phi", "v"] as const,
  ...EXP_LOCALS,
];
type Lanes = Record<(typeof NAMES)[number], number>;

/** misc.ts `geluPhi2` of both lanes of local x: 1 + erf(x / sqrt 2), into local phi. */
function phi2(V: V128Locals, L: Lanes): Code[] {
  const c = (v: number) => V.c(v);
  const t = get(L.t), t2 = get(L.t2), t4 = get(L.t4), t8 = get(L.t8), z = get(L.z);
  const e = get(L.e);
  return [
    let_(L.z, mul(abs(get(L.x)), c(Math.SQRT1_2))),
    let_(L.t, div(c(1), add(c(1), mul(c(0.5), z)))),
    let_(L.t2, mul(t, t)),
    let_(L.t4, mul(t2, t2)),
    let_(L.t8, mul(t4, t4)),
    let_(
      L.arg,
      add(
        mul(neg(z), z),
        add(
          add(
            add(add(c(C0), mul(t, c(C1))), mul(t2, add(c(C2), mul(t, c(C3))))),
            mul(t4, add(add(c(C4), mul(t, c(C5))), mul(t2, add(c(C6), mul(t, c(C7)))))),
          ),
          mul(t8, add(c(C8), mul(t, c(C9)))),
        ),
      ),
    ),
    ...exp(V, L, L.arg, L.ex),
    let_(L.e, mul(t, get(L.ex))),
    // e + s (2 - 2e), s = (x >= 0): the mask keeps 2 - 2e or makes it +0, as 0 * (2 - 2e) is.
    let_(L.phi, add(e, and(ge(get(L.x), c(0)), sub(c(2), mul(c(2), e))))),
  ];
}

/** y = x/2 (1 + erf(x / sqrt 2)), as misc.ts computes it: (0.5 x) phi2(x), into local v. */
const gelu = (V: V128Locals, L: Lanes): Code[] => [
  ...phi2(V, L),
  let_(L.v, mul(mul(V.c(0.5), get(L.x)), get(L.phi))),
];

/** dx = dy (phi2(x) / 2 + (x / sqrt(2 pi)) exp(-x^2 / 2)), into local v. */
const geluGrad = (V: V128Locals, L: Lanes): Code[] => [
  ...phi2(V, L),
  let_(L.arg, mul(mul(V.c(-0.5), get(L.x)), get(L.x))),
  ...exp(V, L, L.arg, L.ex),
  let_(
    L.v,
    mul(
      get(L.dy),
      add(mul(V.c(0.5), get(L.phi)), mul(mul(get(L.x), V.c(INV_SQRT_2PI)), get(L.ex))),
    ),
  ),
];

// Parameter n (elements), then i32 local i; the v128 locals after them.
const N = 0, I = 1;

/** gelu(n) or geluGrad(n) over the chunk's first n elements. */
function kernel(name: string, withDy: boolean, value: (V: V128Locals, L: Lanes) => Code[]) {
  const V = new V128Locals(2);
  const loop = pairLoop(I, N, LANE_SETS, (s) => {
    const L = V.lanes(NAMES);
    return {
      load: [
        ...let_(L.x, loadF32(I, X_OFF, 2 * s)),
        ...(withDy ? let_(L.dy, loadF32(I, DY_OFF, 2 * s)) : []),
      ],
      stmts: value(V, L),
      store: storeF32(I, OUT_OFF, 2 * s, L.v),
    };
  });
  return {
    name,
    params: [I32],
    locals: [[1, I32], V.declared] as [number, number][],
    body: [...V.prologue(), ...loop],
  };
}

interface Module {
  gelu: (n: number) => void;
  geluGrad: (n: number) => void;
  f32: Float32Array;
}
let mod: Module | null = null;

function instance(): Module {
  if (mod) return mod;
  const inst = new WebAssembly.Instance(
    assemble([kernel("gelu", false, gelu), kernel("geluGrad", true, geluGrad)], PAGES),
  );
  const buf = (inst.exports.mem as WebAssembly.Memory).buffer;
  new Float64Array(buf, 0, POW2.length).set(POW2);
  mod = {
    gelu: inst.exports.gelu as Module["gelu"],
    geluGrad: inst.exports.geluGrad as Module["geluGrad"],
    f32: new Float32Array(buf),
  };
  return mod;
}

/** out[lo, hi) = gelu(x[lo, hi)). */
export function geluRange(x: Float32Array, out: Float32Array, lo: number, hi: number): void {
  const m = instance();
  for (let a = lo; a < hi; a += CHUNK) {
    const b = Math.min(hi, a + CHUNK);
    m.f32.set(x.subarray(a, b), X_OFF / 4);
    m.gelu(b - a);
    out.set(m.f32.subarray(OUT_OFF / 4, OUT_OFF / 4 + b - a), a);
  }
}

/** out[lo, hi) = gelu'(x) dy over [lo, hi). */
export function geluGradRange(
  x: Float32Array,
  dy: Float32Array,
  out: Float32Array,
  lo: number,
  hi: number,
): void {
  const m = instance();
  for (let a = lo; a < hi; a += CHUNK) {
    const b = Math.min(hi, a + CHUNK);
    m.f32.set(x.subarray(a, b), X_OFF / 4);
    m.f32.set(dy.subarray(a, b), DY_OFF / 4);
    m.geluGrad(b - a);
    out.set(m.f32.subarray(OUT_OFF / 4, OUT_OFF / 4 + b - a), a);
  }
}
