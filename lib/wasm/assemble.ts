/**
 * A minimal WebAssembly module writer for the few hot loops that run faster as WebAssembly than as
 * JavaScript (lib/rng/philox_blocks.ts, kernels/cpu/gelu_wasm.ts). Modules are assembled from
 * opcodes when first used, so nothing is fetched or compiled at build time and no binary sits in
 * git. Opcode numbers are those of the WebAssembly core specification's binary format (2.0, with
 * fixed-width SIMD); `wasm2wat` (Debian's wabt) disassembles a module to check it by eye.
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
export const I32 = 0x7f, I64 = 0x7e, F64 = 0x7c, V128 = 0x7b;

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
