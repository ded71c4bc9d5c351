/**
 * Philox4x32-10 over runs of consecutive counters, in a small WebAssembly function: the CPU
 * dropout kernel draws one block per 4 elements, and the 32x32 -> 64-bit products that JavaScript
 * has to assemble from 16-bit halves (philox.ts `mulhi`) are one `i64.mul` here. The words are
 * those of `philoxInto` bit for bit (tests/rng_test.ts checks it); philox.ts stays the reference
 * and the source of every other draw.
 *
 * The module is assembled below from its opcodes (about 200 bytes, lib/wasm/assemble.ts); each
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
  I64,
  i64c,
  LOOP,
  set,
  tee,
  VOID,
  type WasmFunc,
} from "../wasm/assemble.ts";

/** Blocks one call fills: 4 words of 4 bytes each fill the module's single 64 KiB page. */
export const PHILOX_BLOCKS_MAX = 4096;

// The opcodes used besides assemble.ts's (WebAssembly core spec, binary format).
const [ADD, XOR, SHL, GE_U, LT_U] = [0x6a, 0x73, 0x74, 0x4f, 0x49];
const [MUL64, SHR_U64, WRAP, EXTEND_U] = [0x7e, 0x88, 0xa7, 0xad];
const store = (offset: number) => [0x36, 2, offset];

// fill(b0, n, c1, c2, c3, k0, k1): block i < n (counter b0 + i, c1, c2, c3; key k0, k1) to
// memory bytes [16 i, 16 i + 16). Locals after the 7 parameters:
const [B0, N, C1, C2, C3, K0, K1] = [0, 1, 2, 3, 4, 5, 6];
const [I, X0, X1, X2, X3, KEY0, KEY1, R, P0, P1] = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/** (p >> 32) as i32, p the i64 in local `p`. */
const hi = (p: number) => [...get(p), ...i64c(32), SHR_U64, WRAP];
/** The low word of local `p`. */
const lo = (p: number) => [...get(p), WRAP];

// deno-fmt-ignore
const BODY = [
  ...i32c(0), ...set(I),
  BLOCK, VOID,
  LOOP, VOID,
  ...get(I), ...get(N), GE_U, BR_IF, 1,
  ...get(B0), ...get(I), ADD, ...set(X0),
  ...get(C1), ...set(X1), ...get(C2), ...set(X2), ...get(C3), ...set(X3),
  ...get(K0), ...set(KEY0), ...get(K1), ...set(KEY1),
  ...i32c(0), ...set(R),
  LOOP, VOID,
  // p0 = x0 * 0xD2511F53, p1 = x2 * 0xCD9E8D57 (64-bit products of unsigned words)
  ...get(X0), EXTEND_U, ...i64c(0xd2511f53), MUL64, ...set(P0),
  ...get(X2), EXTEND_U, ...i64c(0xcd9e8d57), MUL64, ...set(P1),
  // x0 = hi(p1) ^ x1 ^ key0; x1 = lo(p1); x2 = hi(p0) ^ x3 ^ key1; x3 = lo(p0)
  ...hi(P1), ...get(X1), XOR, ...get(KEY0), XOR, ...set(X0),
  ...lo(P1), ...set(X1),
  ...hi(P0), ...get(X3), XOR, ...get(KEY1), XOR, ...set(X2),
  ...lo(P0), ...set(X3),
  // the Weyl key schedule: round r runs under key + r * (0x9E3779B9, 0xBB67AE85)
  ...get(KEY0), ...i32c(0x9e3779b9), ADD, ...set(KEY0),
  ...get(KEY1), ...i32c(0xbb67ae85), ADD, ...set(KEY1),
  ...get(R), ...i32c(1), ADD, ...tee(R), ...i32c(10), LT_U, BR_IF, 0,
  END,
  ...get(I), ...i32c(4), SHL, ...get(X0), ...store(0),
  ...get(I), ...i32c(4), SHL, ...get(X1), ...store(4),
  ...get(I), ...i32c(4), SHL, ...get(X2), ...store(8),
  ...get(I), ...i32c(4), SHL, ...get(X3), ...store(12),
  ...get(I), ...i32c(1), ADD, ...set(I),
  BR, 0,
  END,
  END,
];

// fill's 7 parameters are i32s; then 8 i32 and 2 i64 locals.
const FILL: WasmFunc = {
  name: "fill",
  params: [I32, I32, I32, I32, I32, I32, I32],
  locals: [[8, I32], [2, I64]],
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
