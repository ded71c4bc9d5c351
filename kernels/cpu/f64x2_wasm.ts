/**
 * Code generation for the CPU kernels' WebAssembly SIMD loops over float64 lane pairs
 * (gelu_wasm.ts, softmax_wasm.ts): f64x2 arithmetic, constants hoisted into locals, exp.ts's
 * `expF64` operation for operation, and a loop that interleaves several independent lane pairs.
 *
 * Why these shapes (measured on the development machine, V8 of Deno 2.9): a `v128.const` inside
 * a loop costs a few instructions at each use (hoisted into locals: 1.2-1.9x faster); f64x2.min
 * and max cost ~8 instructions each for their NaN and signed-zero rules (pmin/pmax are one); and
 * interleaving the statements of several lane pairs lets their long dependency chains overlap
 * (gelu: 1 pair 7.4 ns per element, 4 pairs 5.0, 8 pairs 4.3). No FMA is used (relaxed SIMD is
 * not), so every result is the JavaScript formula's, bit for bit.
 */
import {
  BLOCK,
  BR,
  BR_IF,
  END,
  get,
  i32c,
  LOOP,
  memarg,
  set,
  simd,
  V128,
  VOID,
} from "../../lib/wasm/assemble.ts";
import { EXP_COEFFS, LN2_HI, LN2_LO, ROUND } from "./exp.ts";

export type Code = number[];

const bin = (op: number) => (a: Code, b: Code): Code => [...a, ...b, ...simd(op)];
export const add = bin(240), sub = bin(241), mul = bin(242), div = bin(243);
/**
 * pmin(a, b) = b < a ? b : a and pmax(a, b) = a < b ? b : a: against nonzero, non-NaN bounds
 * they give Math.min/Math.max's results, NaN included (a comparison with NaN is false).
 */
export const pmin = bin(246), pmax = bin(247);
export const ge = bin(76), and = bin(78);
export const abs = (a: Code): Code => [...a, ...simd(236)];
export const neg = (a: Code): Code => [...a, ...simd(237)];
const I32_SHL = 0x74, I32_ADD = 0x6a, I32_GE_S = 0x4e, F64_LOAD = 0x2b;

/** A statement: `value`'s result into local `to`. */
export const let_ = (to: number, value: Code): Code => [...value, ...set(to)];

/**
 * The v128 locals of one function: lane temporaries and hoisted constants share one index space
 * that starts after the function's parameters and i32 locals (`first`).
 */
export class V128Locals {
  private count = 0;
  /** Constants and their locals. */
  private readonly consts: [number, number][] = [];
  constructor(private readonly first: number) {}

  /** Fresh locals, one per name. */
  lanes<K extends string>(names: readonly K[]): Record<K, number> {
    return Object.fromEntries(names.map((n) => [n, this.first + this.count++])) as Record<
      K,
      number
    >;
  }

  /** The f64x2 constant (v, v), read from a local set once by `prologue`. */
  c(v: number): Code {
    // Object.is keeps -0 and 0 apart (a Map's keys would not).
    let entry = this.consts.find(([w]) => Object.is(w, v));
    if (!entry) this.consts.push(entry = [v, this.first + this.count++]);
    return get(entry[1]);
  }

  /** Sets every constant's local; runs before the loop. */
  prologue(): Code {
    return this.consts.flatMap(([v, i]) => [
      ...simd(12),
      ...new Uint8Array(new Float64Array([v, v]).buffer),
      ...set(i),
    ]);
  }

  /** The declaration entry of all these locals. */
  get declared(): [number, number] {
    return [this.count, V128];
  }
}

/** Locals one `exp` needs. */
export const EXP_LOCALS = ["xc", "k", "r", "r2", "r4", "ki", "tw"] as const;
export type ExpLocals = Record<(typeof EXP_LOCALS)[number], number>;

/**
 * exp.ts `expF64` of both lanes of local `src`, into local `dst`, as statements; the table of
 * 2^k (exp.ts `POW2`) must sit at byte 0 of the module's memory.
 */
export function exp(V: V128Locals, L: ExpLocals, src: number, dst: number): Code[] {
  const c = (v: number) => V.c(v);
  const [C2, C3, C4, C5, C6, C7, C8, C9] = EXP_COEFFS;
  const r = get(L.r), r2 = get(L.r2), r4 = get(L.r4), k = get(L.k), ki = get(L.ki);
  // One lane of 2^k: POW2[(k + 1075) | 0] from the table at address 0.
  // deno-fmt-ignore
  const pow2Lane = (lane: number) => [
    ...ki, ...simd(27), lane, // i32x4.extract_lane
    ...i32c(3), I32_SHL,
    F64_LOAD, ...memarg(3, 0),
  ];
  return [
    let_(L.xc, pmin(pmax(get(src), c(-745)), c(710))),
    let_(L.k, sub(add(mul(get(L.xc), c(Math.LOG2E)), c(ROUND)), c(ROUND))),
    let_(L.r, sub(sub(get(L.xc), mul(k, c(LN2_HI))), mul(k, c(LN2_LO)))),
    let_(L.r2, mul(r, r)),
    let_(L.r4, mul(r2, r2)),
    // i32x4.trunc_sat_f64x2_s_zero: NaN -> 0, as `| 0` gives for NaN; the others are integers.
    let_(L.ki, [...add(k, c(1075)), ...simd(252)]),
    // f64x2.splat of lane 0's value, then f64x2.replace_lane 1
    let_(L.tw, [...pow2Lane(0), ...simd(20), ...pow2Lane(1), ...simd(34), 1]),
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

/** Two elements at element index i + `at` of the f32 array at byte `base`, as f64x2. */
export const loadF32 = (i: number, base: number, at: number): Code => [
  ...get(i),
  ...i32c(2),
  I32_SHL,
  ...simd(93),
  ...memarg(3, base + 4 * at), // v128.load64_zero
  ...simd(95), // f64x2.promote_low_f32x4
];
/** Two f64 at element index i + `at` of the f64 array at byte `base`. */
export const loadF64 = (i: number, base: number, at: number): Code => [
  ...get(i),
  ...i32c(3),
  I32_SHL,
  ...simd(0),
  ...memarg(3, base + 8 * at), // v128.load
];
/** Stores local `v` rounded to f32 at element i + `at` of the f32 array at byte `base`. */
export const storeF32 = (i: number, base: number, at: number, v: number): Code => [
  ...get(i),
  ...i32c(2),
  I32_SHL,
  ...get(v),
  ...simd(94), // f32x4.demote_f64x2_zero
  ...simd(91),
  ...memarg(3, base + 4 * at),
  0, // v128.store64_lane 0
];
/** Stores local `v` at element i + `at` of the f64 array at byte `base`. */
export const storeF64 = (i: number, base: number, at: number, v: number): Code => [
  ...get(i),
  ...i32c(3),
  I32_SHL,
  ...get(v),
  ...simd(11),
  ...memarg(3, base + 8 * at), // v128.store
];

/** One lane pair's part of a loop iteration: loads, statements, stores. */
export interface PairBody {
  load: Code;
  stmts: Code[];
  store: Code;
}

/**
 * `for (i = 0; i < n; i += 2 * sets)`, i32 locals i and n: each iteration runs `sets` lane
 * pairs (pair s on elements i + 2s, i + 2s + 1), their statements interleaved. The last
 * iteration may run past n by up to 2 * sets - 1 elements: buffers must have room.
 */
export function pairLoop(i: number, n: number, sets: number, body: (s: number) => PairBody): Code {
  const bodies = Array.from({ length: sets }, (_, s) => body(s));
  const longest = Math.max(...bodies.map((b) => b.stmts.length));
  const interleaved = Array.from(
    { length: longest },
    (_, k) => bodies.map((b) => b.stmts[k] ?? []),
  );
  // deno-fmt-ignore
  return [
    ...let_(i, i32c(0)),
    BLOCK, VOID, LOOP, VOID,
    ...get(i), ...get(n), I32_GE_S, BR_IF, 1,
    ...bodies.flatMap((b) => b.load),
    ...interleaved.flat(2),
    ...bodies.flatMap((b) => b.store),
    ...let_(i, [...get(i), ...i32c(2 * sets), I32_ADD]),
    BR, 0, END, END,
  ];
}
