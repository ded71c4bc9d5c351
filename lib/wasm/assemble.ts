/**
 * A minimal WebAssembly module writer for the few hot loops that run faster as WebAssembly than
 * as JavaScript (lib/rng/philox_blocks.ts, kernels/cpu/*_wasm.ts, the Adam loop of
 * kernels/cpu/optim.ts). Modules are assembled from opcodes when first used, so nothing is
 * fetched or compiled at build time and no binary sits in git. Opcode numbers are those of the
 * WebAssembly core specification's binary format (2.0, with fixed-width SIMD); `wasm2wat`
 * (Debian's wabt) disassembles a module to check it by eye.
 */

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of an integer (any size; i64 constants go through BigInt). */
export function sleb(v: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

/** Value types. */
export const I32 = 0x7f, I64 = 0x7e, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;

/** One exported function: parameter types, local declarations as (count, type) pairs, body. */
export interface WasmFunc {
  name: string;
  params: number[];
  locals: [number, number][];
  body: number[];
}

// "\0asm", version 1.
const MAGIC_VERSION = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const name = (s: string) => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];

/**
 * A module with one memory of `pages` 64 KiB pages, exported as "mem", and the functions `funcs`
 * (no results), exported under their names; each function has a type of its own.
 */
export function assemble(funcs: WasmFunc[], pages: number): WebAssembly.Module {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), 0]);
  const code = funcs.map((f) => {
    const body = [...vec(f.locals.map(([n, t]) => [...uleb(n), t])), ...f.body, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const exports = [
    ...funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]),
    [...name("mem"), 0x02, 0],
  ];
  const bytes = new Uint8Array([
    ...MAGIC_VERSION,
    ...section(1, vec(types)),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...section(5, [1, 0x00, ...uleb(pages)]),
    ...section(7, vec(exports)),
    ...section(10, vec(code)),
  ]);
  return new WebAssembly.Module(bytes);
}

// Instructions shared by the modules (core spec 5.4).
export const get = (i: number) => [0x20, ...uleb(i)],
  set = (i: number) => [0x21, ...uleb(i)],
  tee = (i: number) => [0x22, ...uleb(i)];
export const i32c = (v: number) => [0x41, ...sleb(BigInt(v | 0))];
export const i64c = (v: number) => [0x42, ...sleb(BigInt(v))];
export const [BLOCK, LOOP, END, BR, BR_IF, VOID] = [0x02, 0x03, 0x0b, 0x0c, 0x0d, 0x40];
/** A SIMD instruction: prefix 0xfd, then the opcode as unsigned LEB128 (core spec 5.4.7). */
export const simd = (op: number): number[] => [0xfd, ...uleb(op)];
/** A memory immediate: alignment (log2 bytes), then the offset. */
export const memarg = (align: number, offset: number): number[] => [align, ...uleb(offset)];

/** i32 arithmetic on code that leaves i32s on the stack. */
type Code = number[];
const i32bin = (op: number) => (a: Code, b: Code): Code => [...a, ...b, op];
export const iadd = i32bin(0x6a), imul = i32bin(0x6c), ishl = i32bin(0x74);
export const ilt = i32bin(0x48), ige = i32bin(0x4e); // signed
/**
 * Loads and stores at a byte address plus a constant `offset` (the memarg's), natural alignment:
 * f32/i32 (4 bytes) and f64 (8).
 */
export const f32load = (addr: Code, offset = 0): Code => [...addr, 0x2a, 2, ...uleb(offset)];
export const i32load = (addr: Code, offset = 0): Code => [...addr, 0x28, 2, ...uleb(offset)];
export const f64load = (addr: Code, offset = 0): Code => [...addr, 0x2b, 3, ...uleb(offset)];
export const f32store = (addr: Code, v: Code, offset = 0): Code => [
  ...addr,
  ...v,
  0x38,
  2,
  ...uleb(offset),
];
export const i32store = (addr: Code, v: Code, offset = 0): Code => [
  ...addr,
  ...v,
  0x36,
  2,
  ...uleb(offset),
];
export const f64store = (addr: Code, v: Code, offset = 0): Code => [
  ...addr,
  ...v,
  0x39,
  3,
  ...uleb(offset),
];
export const f32add = (a: Code, b: Code): Code => [...a, ...b, 0x92];
/** `cond ? a : b` without a branch (both evaluated). */
export const select = (a: Code, b: Code, cond: Code): Code => [...a, ...b, ...cond, 0x1b];
export const f32c = (v: number): Code => [0x43, ...new Uint8Array(new Float32Array([v]).buffer)];

/** `for (i = from; i < to; i++) body` over i32 local i (signed comparison). */
export function forRange(i: number, from: Code, to: Code, body: Code): Code {
  // deno-fmt-ignore
  return [
    ...from, ...set(i),
    BLOCK, VOID, LOOP, VOID,
    ...get(i), ...to, 0x4e, BR_IF, 1, // i32.ge_s
    ...body,
    ...get(i), ...i32c(1), 0x6a, ...set(i),
    BR, 0, END, END,
  ];
}
