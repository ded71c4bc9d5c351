/**
 * Softmax over rows of L values as WebAssembly: the arithmetic of transformer.ts's JavaScript
 * (`softmaxRowsJs`), operation for operation and in the same order, so the outputs equal its bits
 * (tests/transformer_ops_test.ts). Per row the max and the float64 sum run in order; the exps of a
 * whole chunk of rows run as f64x2 lane pairs, eight pairs interleaved (f64x2_wasm.ts). Measured
 * on the development machine: 3.8-4.5 ns per element against 7-13 in JavaScript (rows of 16, 196
 * and 960: GT U-Net's window attention, LViT's and UCTransNet's). The gradient stays in
 * JavaScript: as scalar WebAssembly it was no faster (1.5-2 ns per element against 1.3-2).
 *
 * Rows go through the module's memory in chunks of whole rows (at most SOFTMAX_CHUNK values):
 * copied in, computed, copied out. Longer rows are left to the JavaScript kernel.
 */
import {
  assemble,
  f32load,
  f32store,
  f64load,
  f64store,
  forRange,
  get,
  I32,
  i32c,
  iadd,
  imul,
  ishl,
  simd,
  type WasmFunc,
} from "../../lib/wasm/assemble.ts";
import { POW2 } from "./exp.ts";
import {
  type Code,
  exp,
  EXP_LOCALS,
  let_,
  loadF64,
  pairLoop,
  pmax,
  storeF32,
  storeF64,
  V128Locals,
} from "./f64x2_wasm.ts";

/** Values per call; longer rows are not handled here. */
export const SOFTMAX_CHUNK = 16384;
const LANE_SETS = 8;
/** Room past a region's end for the pair loop's last iteration. */
const SLACK = 2 * LANE_SETS;

// Memory layout (bytes): exp's 2^k table, then x (f32), the exps' arguments (f64), the exps
// (f64) and the output (f32).
const TABLE_BYTES = Math.ceil(POW2.byteLength / 64) * 64;
const X_OFF = TABLE_BYTES, A_OFF = X_OFF + 4 * (SOFTMAX_CHUNK + SLACK);
const E_OFF = A_OFF + 8 * (SOFTMAX_CHUNK + SLACK), OUT_OFF = E_OFF + 8 * (SOFTMAX_CHUNK + SLACK);
const END = OUT_OFF + 4 * (SOFTMAX_CHUNK + SLACK);
const PAGES = Math.ceil(END / 65536);

const F64 = 0x7c;
const promote = (a: Code): Code => [...a, 0xbb];
const demote = (a: Code): Code => [...a, 0xb6];
const fbin = (op: number) => (a: Code, b: Code): Code => [...a, ...b, op];
const fadd = fbin(0xa0), fsub = fbin(0xa1), fmul = fbin(0xa2), fdiv = fbin(0xa3);
const f64c = (v: number): Code => [0x44, ...new Uint8Array(new Float64Array([v]).buffer)];
/** Byte address of element `i` of 4- or 8-byte values (the region's offset goes in the memarg). */
const byte4 = (i: Code) => ishl(i, i32c(2)), byte8 = (i: Code) => ishl(i, i32c(3));

// softmax(R, L): parameters R, L; i32 locals r, j, base, n, i; f64 locals
// mx, s, inv; then v128 locals.
const R = 0, LEN = 1, ROW = 2, J = 3, BASE = 4, N = 5, I = 6, MX = 7, S = 8, INV = 9;
const LOCALS: [number, number][] = [[5, I32], [3, F64]];
const v = get;

/** Over rows r of L values: `body` with local base = r*L. */
const rows = (body: Code): Code =>
  forRange(ROW, i32c(0), v(R), [...let_(BASE, imul(v(ROW), v(LEN))), ...body]);
/** Over j in [base, base + L) (local j is the element index). */
const row = (body: Code): Code => forRange(J, v(BASE), iadd(v(BASE), v(LEN)), body);

function softmax(): WasmFunc {
  const V = new V128Locals(10);
  const [MXV] = Object.values(V.lanes(["mx"] as const));
  const expLoop = pairLoop(I, N, LANE_SETS, (s) => {
    const L = V.lanes(["a", "e", ...EXP_LOCALS] as const);
    return {
      load: let_(L.a, loadF64(I, A_OFF, 2 * s)),
      stmts: exp(V, L, L.a, L.e),
      store: [...storeF64(I, E_OFF, 2 * s, L.e), ...storeF32(I, OUT_OFF, 2 * s, L.e)],
    };
  });
  const body = [
    // mx = the row's max, a = x - mx. The max runs as f64x2.pmax on splats (one maxpd; scalar
    // f64.max's NaN and signed-zero rules cost V8 ~3 ns per element here). Where those rules
    // differ, the output does not: a NaN in the row makes the sum, so every output, NaN either
    // way, and the sign of a zero max does not change x - mx's exp.
    ...rows([
      ...let_(MXV, [...promote(f32load(byte4(v(BASE)), X_OFF)), ...simd(20)]),
      ...row(
        let_(MXV, pmax(v(MXV), [...promote(f32load(byte4(v(J)), X_OFF)), ...simd(20)])),
      ),
      ...let_(MX, [...v(MXV), ...simd(33), 0]), // f64x2.extract_lane 0
      ...row(f64store(byte8(v(J)), fsub(promote(f32load(byte4(v(J)), X_OFF)), v(MX)), A_OFF)),
    ]),
    // e = exp(a) for the whole chunk, stored as f64 and as f32 (the output before scaling).
    ...let_(N, imul(v(R), v(LEN))),
    ...expLoop,
    // s = the row's sum of the f64 exps in order; out = f32(f32(e) * (1 / s)).
    ...rows([
      ...let_(S, f64c(0)),
      ...row(let_(S, fadd(v(S), f64load(byte8(v(J)), E_OFF)))),
      ...let_(INV, fdiv(f64c(1), v(S))),
      ...row(
        f32store(
          byte4(v(J)),
          demote(fmul(promote(f32load(byte4(v(J)), OUT_OFF)), v(INV))),
          OUT_OFF,
        ),
      ),
    ]),
  ];
  return {
    name: "softmax",
    params: [I32, I32],
    locals: [...LOCALS, V.declared],
    body: [...V.prologue(), ...body],
  };
}

interface Module {
  softmax: (R: number, L: number) => void;
  f32: Float32Array;
}
let mod: Module | null = null;

function instance(): Module {
  if (mod) return mod;
  const inst = new WebAssembly.Instance(assemble([softmax()], PAGES));
  const buf = (inst.exports.mem as WebAssembly.Memory).buffer;
  new Float64Array(buf, 0, POW2.length).set(POW2);
  mod = {
    softmax: inst.exports.softmax as Module["softmax"],
    f32: new Float32Array(buf),
  };
  return mod;
}

/** Softmax of rows [r0, r1) of L values from x into out. */
export type SoftmaxRows = (
  x: Float32Array,
  out: Float32Array,
  r0: number,
  r1: number,
  L: number,
) => void;

/** Softmax of rows [r0, r1) of L values (L <= SOFTMAX_CHUNK) from x into out. */
export const softmaxRowsWasm: SoftmaxRows = (x, out, r0, r1, L) => {
  const m = instance(), per = Math.floor(SOFTMAX_CHUNK / L);
  for (let r = r0; r < r1; r += per) {
    const e = Math.min(r1, r + per), n = (e - r) * L;
    m.f32.set(x.subarray(r * L, r * L + n), X_OFF / 4);
    m.softmax(e - r, L);
    out.set(m.f32.subarray(OUT_OFF / 4, OUT_OFF / 4 + n), r * L);
  }
};
