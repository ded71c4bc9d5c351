/**
 * Philox4x32-10 over runs of consecutive counters, in a small WebAssembly function: the CPU
 * dropout kernel draws one block per 4 elements, and the 32x32 -> 64-bit products that JavaScript
 * has to assemble from 16-bit halves (philox.ts `mulhi`) are SIMD multiplies here. The words are
 * those of `philoxInto` bit for bit (tests/rng_test.ts checks it); philox.ts stays the reference
 * and the source of every other draw.
 *
 * The module is assembled below from its opcodes (~8 KB with the rounds unrolled, lib/wasm/assemble.ts); each
 * thread (worker) instantiates its own on first use.
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
  memarg,
  set,
  simd,
  V128,
  VOID,
  type WasmFunc,
} from "../wasm/assemble.ts";

/** Blocks one call fills: 4 words of 4 bytes each fill the module's single 64 KiB page. */
export const PHILOX_BLOCKS_MAX = 4096;

// fill(b0, n, c1, c2, c3, k0, k1): block i < n (counter b0 + i, c1, c2, c3; key k0, k1) to
// memory bytes [16 i, 16 i + 16). Blocks run four to a vector (i32x4 lane j: block i + j), so
// that one i64x2.extmul gives two blocks' 64-bit products, and GROUPS vectors per iteration with
// their statements interleaved: one group's ten rounds are a chain of dependent instructions.
// Per block here: one group 7.5 ns, two 5.4, four 4.4, eight 4.9; the scalar i64 loop 12.8. A
// call may fill up to 4 * GROUPS - 1 blocks past n: the page has room, since PHILOX_BLOCKS_MAX is
// a multiple of 4 * GROUPS.
const GROUPS = 4;
const [B0, N, C1, C2, C3, K0, K1] = [0, 1, 2, 3, 4, 5, 6];
const I = 7; // i32: the iteration's first block
// v128 locals: the shared keys and constants, then each group's state, products and halves.
const [KEY0, KEY1, M0, M1, W0, W1, IOTA] = Array.from({ length: 7 }, (_, k) => 8 + k);
const STATE = ["x0", "x1", "x2", "x3", "pl", "ph", "h0", "l0", "h1", "l1"] as const;
type Group = Record<(typeof STATE)[number], number>;
const GROUP: Group[] = Array.from(
  { length: GROUPS },
  (_, g) => Object.fromEntries(STATE.map((n, k) => [n, 15 + g * STATE.length + k])) as Group,
);
const V128_LOCALS = 7 + GROUPS * STATE.length;

const I32X4_SPLAT = simd(17), I32X4_ADD = simd(174), XOR = simd(81);
const EXTMUL_LO_U = simd(222), EXTMUL_HI_U = simd(223); // i64x2.extmul_{low,high}_i32x4_u
const I32_ADD = 0x6a, I32_SHL = 0x74, I32_GE_U = 0x4f;
/** i8x16.shuffle of two vectors by 16 byte indices (0-15: a's bytes, 16-31: b's). */
const shuffle = (bytes: number[]) => [...simd(13), ...bytes];
/** Bytes of i32 lanes `lanes` (0-3: a's, 4-7: b's). */
const laneBytes = (...lanes: number[]) =>
  lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
const splat = (v: number) => [...i32c(v), ...I32X4_SPLAT];
const let_ = (to: number, code: number[]) => [...code, ...set(to)];
/** The high (odd) and low (even) 32-bit words of two i64x2 products: lanes in block order. */
const HI = laneBytes(1, 3, 5, 7), LO = laneBytes(0, 2, 4, 6);
/** Each statement of `stmts` for every group in turn, then the next statement. */
const interleave = (stmts: (g: Group) => number[][]) => {
  const per = GROUP.map(stmts);
  return per[0].flatMap((_, k) => per.flatMap((st) => st[k]));
};

/** One round: products of x0 and x2, the xors with the other words and the keys. */
// deno-fmt-ignore
const round = (g: Group) => [
  let_(g.pl, [...get(g.x0), ...get(M0), ...EXTMUL_LO_U]),
  let_(g.ph, [...get(g.x0), ...get(M0), ...EXTMUL_HI_U]),
  let_(g.h0, [...get(g.pl), ...get(g.ph), ...shuffle(HI)]),
  let_(g.l0, [...get(g.pl), ...get(g.ph), ...shuffle(LO)]),
  let_(g.pl, [...get(g.x2), ...get(M1), ...EXTMUL_LO_U]),
  let_(g.ph, [...get(g.x2), ...get(M1), ...EXTMUL_HI_U]),
  let_(g.h1, [...get(g.pl), ...get(g.ph), ...shuffle(HI)]),
  let_(g.l1, [...get(g.pl), ...get(g.ph), ...shuffle(LO)]),
  // x0 = hi(p1) ^ x1 ^ key0; x1 = lo(p1); x2 = hi(p0) ^ x3 ^ key1; x3 = lo(p0)
  let_(g.x0, [...get(g.h1), ...get(g.x1), ...XOR, ...get(KEY0), ...XOR]),
  let_(g.x1, get(g.l1)),
  let_(g.x2, [...get(g.h0), ...get(g.x3), ...XOR, ...get(KEY1), ...XOR]),
  let_(g.x3, get(g.l0)),
];
// The Weyl key schedule: round r runs under key + r * (0x9E3779B9, 0xBB67AE85).
const WEYL = [
  ...let_(KEY0, [...get(KEY0), ...get(W0), ...I32X4_ADD]),
  ...let_(KEY1, [...get(KEY1), ...get(W1), ...I32X4_ADD]),
];

/** Group `k`'s blocks stored block-major: the 4x4 transpose of (x0, x1, x2, x3). */
// deno-fmt-ignore
const store = (g: Group, k: number) => [
  // pl = (a0 a1 b0 b1), ph = (c0 c1 d0 d1), h0 = (a2 a3 b2 b3), l0 = (c2 c3 d2 d3)
  let_(g.pl, [...get(g.x0), ...get(g.x1), ...shuffle(laneBytes(0, 4, 1, 5))]),
  let_(g.ph, [...get(g.x0), ...get(g.x1), ...shuffle(laneBytes(2, 6, 3, 7))]),
  let_(g.h0, [...get(g.x2), ...get(g.x3), ...shuffle(laneBytes(0, 4, 1, 5))]),
  let_(g.l0, [...get(g.x2), ...get(g.x3), ...shuffle(laneBytes(2, 6, 3, 7))]),
  ...([[g.pl, g.h0, laneBytes(0, 1, 4, 5)], [g.pl, g.h0, laneBytes(2, 3, 6, 7)],
       [g.ph, g.l0, laneBytes(0, 1, 4, 5)], [g.ph, g.l0, laneBytes(2, 3, 6, 7)]] as const).map(
    ([a, b, lanes], j) => [
      ...get(I), ...i32c(4), I32_SHL,
      ...get(a), ...get(b), ...shuffle(lanes),
      ...simd(11), ...memarg(4, 64 * k + 16 * j), // v128.store
    ],
  ),
];

// deno-fmt-ignore
const BODY = [
  ...let_(M0, splat(0xd2511f53)), ...let_(M1, splat(0xcd9e8d57)),
  ...let_(W0, splat(0x9e3779b9)), ...let_(W1, splat(0xbb67ae85)),
  ...let_(IOTA, [...simd(12), ...new Uint8Array(new Int32Array([0, 1, 2, 3]).buffer)]),
  ...let_(I, i32c(0)),
  BLOCK, VOID,
  LOOP, VOID,
  ...get(I), ...get(N), I32_GE_U, BR_IF, 1,
  ...GROUP.flatMap((g, k) => [
    ...let_(g.x0, [
      ...get(B0), ...get(I), I32_ADD, ...i32c(4 * k), I32_ADD, ...I32X4_SPLAT,
      ...get(IOTA), ...I32X4_ADD,
    ]),
    ...let_(g.x1, [...get(C1), ...I32X4_SPLAT]),
    ...let_(g.x2, [...get(C2), ...I32X4_SPLAT]),
    ...let_(g.x3, [...get(C3), ...I32X4_SPLAT]),
  ]),
  ...let_(KEY0, [...get(K0), ...I32X4_SPLAT]),
  ...let_(KEY1, [...get(K1), ...I32X4_SPLAT]),
  ...Array.from({ length: 10 }, () => [...interleave(round), ...WEYL]).flat(),
  ...GROUP.flatMap((g, k) => store(g, k).flat()),
  ...let_(I, [...get(I), ...i32c(4 * GROUPS), I32_ADD]),
  BR, 0,
  END,
  END,
];
if (PHILOX_BLOCKS_MAX % (4 * GROUPS) !== 0) throw new Error("philox_blocks: group size");

// fill's 7 parameters are i32s; then the iteration's first block (i32) and the v128 locals.
const FILL: WasmFunc = {
  name: "fill",
  params: [I32, I32, I32, I32, I32, I32, I32],
  locals: [[1, I32], [V128_LOCALS, V128]],
  body: BODY,
};

/** The module's `fill`: philoxBlocks' arguments, writing the words to its memory. */
type Fill = (...args: Parameters<typeof philoxBlocks>) => void;

let fill: Fill | null = null;
let words: Uint32Array;

/**
 * The Philox4x32-10 words of `n` (at most PHILOX_BLOCKS_MAX) consecutive blocks: block i has
 * counter (b0 + i, c1, c2, c3) and key (k0, k1), all taken modulo 2^32, and its words are
 * elements [4 i, 4 i + 4) of the result. The result is a view of the module's memory, valid until
 * the next call on this thread.
 */
export function philoxBlocks(
  b0: number,
  n: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
): Uint32Array {
  if (!(n >= 0 && n <= PHILOX_BLOCKS_MAX)) {
    throw new RangeError(`philoxBlocks: n = ${n}, expected 0..${PHILOX_BLOCKS_MAX}`);
  }
  if (!fill) {
    const inst = new WebAssembly.Instance(assemble([FILL], 1));
    fill = inst.exports.fill as Fill;
    words = new Uint32Array((inst.exports.mem as WebAssembly.Memory).buffer);
  }
  fill(b0 | 0, n, c1 | 0, c2 | 0, c3 | 0, k0 | 0, k1 | 0);
  return words.subarray(0, 4 * n);
}
