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
import {
  assemble,
  BLOCK,
  BR,
  BR_IF,
  END,
  get,
  I32,
  i32c,
  LOOP,
  set,
  uleb,
  V128,
  VOID,
} from "../../lib/wasm/assemble.ts";
import { EXP_COEFFS, LN2_HI, LN2_LO, POW2, ROUND } from "./exp.ts";
import { ERFC_COEFFS } from "../webgpu/misc.ts";

/**
 * Lanes in flight: each loop iteration computes LANE_SETS independent f64x2 values, their
 * statements interleaved. Measured here (ns per element, gelu / gelu_grad): 1 set 7.4 / 11.5,
 * 2 sets 6.9 / 9.8, 4 sets 5.0 / 7.5, 8 sets 4.3 / 6.6.
 */
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

// SIMD instructions (prefix 0xfd, then the opcode as unsigned LEB128; core spec 5.4.7).
type Code = number[];
const simd = (op: number) => [0xfd, ...uleb(op)];
const memarg = (align: number, offset: number) => [align, ...uleb(offset)];
const bin = (op: number) => (a: Code, b: Code): Code => [...a, ...b, ...simd(op)];
const add = bin(240), sub = bin(241), mul = bin(242), div = bin(243);
// pmin/pmax (b < a ? b : a, a < b ? b : a) are one minpd/maxpd each, where min/max's NaN and
// signed-zero rules cost V8 ~8 instructions (the clamp with min/max took 2.3 ns per element).
// Against exp's nonzero constant bounds they give Math.min/Math.max's results, NaN included: a
// comparison with NaN is false, so NaN passes through.
const pmin = bin(246), pmax = bin(247), ge = bin(76), and = bin(78);
const abs = (a: Code): Code => [...a, ...simd(236)];
const neg = (a: Code): Code => [...a, ...simd(237)];
const I32_SHL = 0x74, I32_ADD = 0x6a, I32_GE_U = 0x4f, F64_LOAD = 0x2b;

// Locals: parameter n, the byte offset p and its end, each lane set's v128 temporaries, then
// the constants.
const N = 0, P = 1, END_P = 2;
const NAMES = [
  "x",
  "dy",
  "z",
  "t",
  "t2",
  "t4",
  "t8",
  "arg",
  "e",
  "xc",
  "k",
  "r",
  "r2",
  "r4",
  "ki",
  "tw",
  "ex",
  "phi",
  "v",
] as const;
type Lanes = Record<(typeof NAMES)[number], number>;
const lanes = (set: number): Lanes =>
  Object.fromEntries(NAMES.map((n, i) => [n, 3 + set * NAMES.length + i])) as Lanes;

/**
 * The f64x2 constant (v, v), from a local set once before the loop: a `v128.const` in the loop
 * costs V8 a few instructions at each use (hoisted: 1.2-1.9x faster).
 */
const CONST_BASE = 3 + LANE_SETS * NAMES.length;
const CONSTS: number[] = [];
function c(v: number): Code {
  let i = CONSTS.findIndex((w) => Object.is(w, v));
  if (i < 0) i = CONSTS.push(v) - 1;
  return get(CONST_BASE + i);
}
const v128Const = (v: number): Code => [
  ...simd(12),
  ...new Uint8Array(new Float64Array([v, v]).buffer),
];

/** A statement: `value`'s result into local `to`. */
const let_ = (to: number, value: Code): Code => [...value, ...set(to)];

/** exp.ts `expF64` of both lanes of local `src`, into local `dst`; statements. */
function exp(L: Lanes, src: number, dst: number): Code[] {
  const [C2, C3, C4, C5, C6, C7, C8, C9] = EXP_COEFFS;
  const r = get(L.r), r2 = get(L.r2), r4 = get(L.r4), k = get(L.k), ki = get(L.ki);
  // One lane of 2^k: POW2[(k + 1075) | 0] from the table at address 0.
  const pow2Lane = (lane: number) => [
    ...ki,
    ...simd(27),
    lane, // i32x4.extract_lane
    ...i32c(3),
    I32_SHL,
    F64_LOAD,
    ...memarg(3, 0),
  ];
  return [
    let_(L.xc, pmin(pmax(get(src), c(-745)), c(710))),
    let_(L.k, sub(add(mul(get(L.xc), c(Math.LOG2E)), c(ROUND)), c(ROUND))),
    let_(L.r, sub(sub(get(L.xc), mul(k, c(LN2_HI))), mul(k, c(LN2_LO)))),
    let_(L.r2, mul(r, r)),
    let_(L.r4, mul(r2, r2)),
    // i32x4.trunc_sat_f64x2_s_zero: NaN -> 0, as `| 0` gives for NaN; the others are integers.
    let_(L.ki, [...add(k, c(1075)), ...simd(252)]),
    let_(L.tw, [...pow2Lane(0), ...simd(20), ...pow2Lane(1), ...simd(34), 1]), // splat, replace_lane 1
    let_(
      dst,
      mul(
        add(
          add(add(c(1), r), mul(r2, add(c(C2), mul(r, c(C3))))),
          mul(
            r4,
            add(
              add(add(c(C4), mul(r, c(C5))), mul(r2, add(c(C6), mul(r, c(C7))))),
              mul(r4, add(c(C8), mul(r, c(C9)))),
            ),
          ),
        ),
        get(L.tw),
      ),
    ),
  ];
}

const [C0, C1, C2, C3, C4, C5, C6, C7, C8, C9] = ERFC_COEFFS.map(Math.fround);

/** misc.ts `geluPhi2` of both lanes of local x: 1 + erf(x / sqrt 2), into local phi. */
function phi2(L: Lanes): Code[] {
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
    ...exp(L, L.arg, L.ex),
    let_(L.e, mul(t, get(L.ex))),
    // e + s (2 - 2e), s = (x >= 0): the mask keeps 2 - 2e or makes it +0, as 0 * (2 - 2e) is.
    let_(L.phi, add(e, and(ge(get(L.x), c(0)), sub(c(2), mul(c(2), e))))),
  ];
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** y = x/2 (1 + erf(x / sqrt 2)), as misc.ts computes it: (0.5 x) phi2(x), into local v. */
const gelu = (L: Lanes): Code[] => [
  ...phi2(L),
  let_(L.v, mul(mul(c(0.5), get(L.x)), get(L.phi))),
];

/** dx = dy (phi2(x) / 2 + (x / sqrt(2 pi)) exp(-x^2 / 2)), into local v. */
const geluGrad = (L: Lanes): Code[] => [
  ...phi2(L),
  let_(L.arg, mul(mul(c(-0.5), get(L.x)), get(L.x))),
  ...exp(L, L.arg, L.ex),
  let_(
    L.v,
    mul(
      get(L.dy),
      add(mul(c(0.5), get(L.phi)), mul(mul(get(L.x), c(INV_SQRT_2PI)), get(L.ex))),
    ),
  ),
];

/**
 * A loop over the chunk's n elements, 2 * LANE_SETS per iteration (the last may read and write
 * past n, inside the chunk's buffers): the statements of `value` for each lane set, interleaved.
 */
function loop(withDy: boolean, value: (L: Lanes) => Code[]): Code {
  const sets = Array.from({ length: LANE_SETS }, (_, i) => lanes(i));
  // Two f32 at p + offset as f64x2: v128.load64_zero, f64x2.promote_low_f32x4.
  const load = (
    offset: number,
  ): Code => [...get(P), ...simd(93), ...memarg(3, offset), ...simd(95)];
  const bodies = sets.map(value);
  const interleaved = bodies[0].flatMap((_, i) => bodies.map((b) => b[i]));
  // deno-fmt-ignore
  const out = [
    ...let_(P, i32c(0)),
    ...let_(END_P, [...get(N), ...i32c(2), I32_SHL]),
    BLOCK, VOID,
    LOOP, VOID,
    ...get(P), ...get(END_P), I32_GE_U, BR_IF, 1,
    ...sets.flatMap((L, i) => [
      ...let_(L.x, load(X_OFF + 8 * i)),
      ...(withDy ? let_(L.dy, load(DY_OFF + 8 * i)) : []),
    ]),
    ...interleaved.flat(),
    ...sets.flatMap((L, i) => [
      ...get(P),
      ...get(L.v),
      ...simd(94), // f32x4.demote_f64x2_zero
      ...simd(91), ...memarg(3, OUT_OFF + 8 * i), 0, // v128.store64_lane 0
    ]),
    ...let_(P, [...get(P), ...i32c(8 * LANE_SETS), I32_ADD]),
    BR, 0,
    END,
    END,
  ];
  return [...CONSTS.flatMap((v, i) => [...v128Const(v), ...set(CONST_BASE + i)]), ...out];
}

interface Module {
  gelu: (n: number) => void;
  geluGrad: (n: number) => void;
  f32: Float32Array;
}
let mod: Module | null = null;

function instance(): Module {
  if (mod) return mod;
  // The bodies first: they register the constants that the locals' count includes.
  const bodies = [loop(false, gelu), loop(true, geluGrad)];
  const locals: [number, number][] = [[2, I32], [LANE_SETS * NAMES.length + CONSTS.length, V128]];
  const inst = new WebAssembly.Instance(
    assemble([
      { name: "gelu", params: [I32], locals, body: bodies[0] },
      { name: "geluGrad", params: [I32], locals, body: bodies[1] },
    ], PAGES),
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
