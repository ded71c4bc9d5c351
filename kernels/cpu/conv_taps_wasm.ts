/**
 * The data movement of conv.ts's batched convs (`Batched`: GT U-Net's 8,192 windows of 4x4) as
 * WebAssembly loops: im2col and col2im through a tap table, the tap products added back shifted,
 * and the moves between per-image planes and the chunk layout. As JavaScript these loops took
 * 70-80% of the window convs' time (~1-2 ns per element moved); here each call copies its source
 * into the module's memory (one memcpy), loops there, and copies the result out (one memcpy).
 *
 * Every function computes what its JavaScript original did, element for element: the copies are
 * exact, and the sums (col2im, the tap products, the bias) add the same f32 values in the same
 * order per output element, in f32 (JavaScript added in float64 and rounded each sum to f32 on
 * the store, which gives the same bits for a sum of two f32 values). Padding taps (-1 in a
 * table) send their store to a dummy slot instead of adding zero, so that signed zeros stay as
 * they were. Each thread instantiates its own module; its memory grows to the largest call.
 */
import {
  assemble,
  f32add,
  f32c,
  f32load,
  f32store,
  forRange,
  get,
  I32,
  i32c,
  i32load,
  i32store,
  iadd,
  ilt,
  imul,
  ishl,
  select,
  set,
  type WasmFunc,
} from "../../lib/wasm/assemble.ts";

type Code = number[];
/** The byte address of element `i` of the f32 or i32 array at byte address `base`. */
const at = (base: Code, i: Code): Code => iadd(base, ishl(i, i32c(2)));
/** i32 value of local n. */
const v = get;

/** A function of i32 parameters and i32 locals, named; `body` gets their indices by name. */
function func<P extends string, L extends string>(
  name: string,
  params: readonly P[],
  locals: readonly L[],
  body: (x: Record<P | L, number>) => Code,
): WasmFunc {
  const ix = Object.fromEntries([...params, ...locals].map((n, i) => [n, i])) as Record<
    P | L,
    number
  >;
  return { name, params: params.map(() => I32), locals: [[locals.length, I32]], body: body(ix) };
}

/** `dst = value` into local dst. */
const let_ = (dst: number, value: Code): Code => [...value, ...set(dst)];
/** i32 `a*b + c`. */
const mad = (a: Code, b: Code, c: Code) => iadd(imul(a, b), c);

const TAPS = ["T", "ohw", "kk", "C", "hw", "src", "dst", "N", "m", "dummy"] as const;
const TAP_LOCALS = ["c", "t", "j", "q", "row", "tb", "s", "d", "i", "a"] as const;

/**
 * im2col(T, ohw, kk, C, hw, src, dst, N, m): dst[(c*kk + t)*N + j*ohw + q] = what tap t of
 * output q reads of plane c of image j of src [m, C, hw]: src at T[t*ohw + q], 0 where that is -1.
 */
const IM2COL = func("im2col", TAPS, TAP_LOCALS, (x) =>
  forRange(x.c, i32c(0), v(x.C), [
    ...forRange(x.t, i32c(0), v(x.kk), [
      ...let_(x.row, at(v(x.dst), imul(mad(v(x.c), v(x.kk), v(x.t)), v(x.N)))),
      ...let_(x.tb, at(v(x.T), imul(v(x.t), v(x.ohw)))),
      ...forRange(x.j, i32c(0), v(x.m), [
        ...let_(x.s, at(v(x.src), imul(mad(v(x.j), v(x.C), v(x.c)), v(x.hw)))),
        ...let_(x.d, at(v(x.row), imul(v(x.j), v(x.ohw)))),
        ...forRange(x.q, i32c(0), v(x.ohw), [
          ...let_(x.i, i32load(at(v(x.tb), v(x.q)))),
          // A padding tap (i = -1) loads the word before the plane, which lies inside the
          // memory, and keeps 0 instead.
          ...f32store(
            at(v(x.d), v(x.q)),
            select(f32c(0), f32load(at(v(x.s), v(x.i))), ilt(v(x.i), i32c(0))),
          ),
        ]),
      ]),
    ]),
  ]));

/**
 * col2im(T, ohw, kk, C, hw, src, dst, N, m, dummy): the adjoint of im2col, src the panel and dst
 * the planes [m, C, hw] (zeroed by the caller): dst[j, c, T[t*ohw + q]] += src[(c*kk + t)*N +
 * j*ohw + q], per element in the order of t then q, as conv.ts's JavaScript did.
 */
const COL2IM = func("col2im", TAPS, TAP_LOCALS, (x) =>
  forRange(x.c, i32c(0), v(x.C), [
    ...forRange(x.t, i32c(0), v(x.kk), [
      ...let_(x.row, at(v(x.src), imul(mad(v(x.c), v(x.kk), v(x.t)), v(x.N)))),
      ...let_(x.tb, at(v(x.T), imul(v(x.t), v(x.ohw)))),
      ...forRange(x.j, i32c(0), v(x.m), [
        ...let_(x.s, at(v(x.row), imul(v(x.j), v(x.ohw)))),
        ...let_(x.d, at(v(x.dst), imul(mad(v(x.j), v(x.C), v(x.c)), v(x.hw)))),
        ...forRange(x.q, i32c(0), v(x.ohw), [
          ...let_(x.i, i32load(at(v(x.tb), v(x.q)))),
          ...let_(x.a, select(v(x.dummy), at(v(x.d), v(x.i)), ilt(v(x.i), i32c(0)))),
          ...f32store(v(x.a), f32add(f32load(v(x.a)), f32load(at(v(x.s), v(x.q))))),
        ]),
      ]),
    ]),
  ]));

// deno-fmt-ignore
const ADD_TAPS = ["T", "ohw", "kk", "O", "hw", "src", "dst", "N", "m", "dummy", "bias"] as const;

/**
 * addTaps(T, ohw, kk, O, hw, src, dst, N, m, dummy, bias): dst [m, O, ohw] = bias[o] + the sum
 * over taps t, in order, of src[(t*O + o)*N + j*hw + T[t*ohw + q]] (padding taps skipped): the
 * forward conv's per-tap products added, shifted.
 */
// Local c counts the output channels o here.
const ADD_TAPS_FN = func("addTaps", ADD_TAPS, TAP_LOCALS, (x) =>
  forRange(x.j, i32c(0), v(x.m), [
    ...forRange(x.c, i32c(0), v(x.O), [
      ...let_(x.d, at(v(x.dst), imul(mad(v(x.j), v(x.O), v(x.c)), v(x.ohw)))),
      ...forRange(x.q, i32c(0), v(x.ohw), [
        ...f32store(at(v(x.d), v(x.q)), f32load(at(v(x.bias), v(x.c)))),
      ]),
      ...forRange(x.t, i32c(0), v(x.kk), [
        ...let_(
          x.s,
          at(v(x.src), mad(mad(v(x.t), v(x.O), v(x.c)), v(x.N), imul(v(x.j), v(x.hw)))),
        ),
        ...let_(x.tb, at(v(x.T), imul(v(x.t), v(x.ohw)))),
        ...forRange(x.q, i32c(0), v(x.ohw), [
          ...let_(x.i, i32load(at(v(x.tb), v(x.q)))),
          ...let_(x.a, select(v(x.dummy), at(v(x.d), v(x.q)), ilt(v(x.i), i32c(0)))),
          ...f32store(v(x.a), f32add(f32load(v(x.a)), f32load(at(v(x.s), v(x.i))))),
        ]),
      ]),
    ]),
  ]));

const MOVE = ["src", "R", "plane", "m", "dst", "bias"] as const;
const MOVE_LOCALS = ["j", "r", "q", "N", "s", "d"] as const;

/**
 * toChunk(src, R, plane, m, dst): dst[r*N + j*plane + q] = src[(j*R + r)*plane + q], N = m*plane
 * (images side by side); a bit copy.
 */
const TO_CHUNK = func("toChunk", MOVE, MOVE_LOCALS, (x) => [
  ...let_(x.N, imul(v(x.m), v(x.plane))),
  ...forRange(x.j, i32c(0), v(x.m), [
    ...forRange(x.r, i32c(0), v(x.R), [
      ...let_(x.s, at(v(x.src), imul(mad(v(x.j), v(x.R), v(x.r)), v(x.plane)))),
      ...let_(x.d, at(v(x.dst), mad(v(x.r), v(x.N), imul(v(x.j), v(x.plane))))),
      // i32 loads and stores: the bits as they are.
      ...forRange(
        x.q,
        i32c(0),
        v(x.plane),
        i32store(at(v(x.d), v(x.q)), i32load(at(v(x.s), v(x.q)))),
      ),
    ]),
  ]),
]);

/** fromChunk(src, R, plane, m, dst, bias): toChunk's inverse, adding bias[r] (f32). */
const FROM_CHUNK = func("fromChunk", MOVE, MOVE_LOCALS, (x) => [
  ...let_(x.N, imul(v(x.m), v(x.plane))),
  ...forRange(x.j, i32c(0), v(x.m), [
    ...forRange(x.r, i32c(0), v(x.R), [
      ...let_(x.s, at(v(x.src), mad(v(x.r), v(x.N), imul(v(x.j), v(x.plane))))),
      ...let_(x.d, at(v(x.dst), imul(mad(v(x.j), v(x.R), v(x.r)), v(x.plane)))),
      ...forRange(x.q, i32c(0), v(x.plane), [
        ...f32store(
          at(v(x.d), v(x.q)),
          f32add(f32load(at(v(x.s), v(x.q))), f32load(at(v(x.bias), v(x.r)))),
        ),
      ]),
    ]),
  ]),
]);

type Fn = (...args: number[]) => void;
interface Module {
  im2col: Fn;
  col2im: Fn;
  addTaps: Fn;
  toChunk: Fn;
  fromChunk: Fn;
  mem: WebAssembly.Memory;
  f32: Float32Array;
  i32: Int32Array;
}
let mod: Module | null = null;

/** The module, its memory at least `bytes` long (views rebuilt after growing). */
function module(bytes: number): Module {
  if (!mod) {
    const inst = new WebAssembly.Instance(
      assemble([IM2COL, COL2IM, ADD_TAPS_FN, TO_CHUNK, FROM_CHUNK], 1),
    );
    const e = inst.exports as Record<string, unknown>;
    const mem = e.mem as WebAssembly.Memory;
    mod = {
      im2col: e.im2col as Fn,
      col2im: e.col2im as Fn,
      addTaps: e.addTaps as Fn,
      toChunk: e.toChunk as Fn,
      fromChunk: e.fromChunk as Fn,
      mem,
      f32: new Float32Array(mem.buffer),
      i32: new Int32Array(mem.buffer),
    };
  }
  const have = mod.mem.buffer.byteLength;
  if (bytes > have) {
    mod.mem.grow(Math.ceil((bytes - have) / 65536));
    mod.f32 = new Float32Array(mod.mem.buffer);
    mod.i32 = new Int32Array(mod.mem.buffer);
  }
  return mod;
}

/**
 * Regions of the module's memory for one call, in f32 elements: a 16-byte dummy slot first, then
 * each region in turn, each 16-byte aligned and preceded by a spare word (a padding tap reads the
 * word before its plane).
 */
function regions(...sizes: number[]): { offs: number[]; m: Module } {
  const offs: number[] = [];
  let at = 4;
  for (const n of sizes) {
    at += 4;
    offs.push(at);
    at += Math.ceil(n / 4) * 4;
  }
  return { offs, m: module(4 * at) };
}

const DUMMY = 0;

/**
 * im2col of m images through tap table T: x[xOff ...] holds m images [C, hw]; cols[(c*kk + t)*N +
 * j*ohw + q] (N = m*ohw) gets what tap t of output q reads of plane c of image j, 0 in the padding.
 */
export function im2colTaps(
  T: Int32Array,
  ohw: number,
  C: number,
  hw: number,
  x: Float32Array,
  xOff: number,
  m: number,
  cols: Float32Array,
): void {
  const kk = T.length / ohw, N = m * ohw, n = m * C * hw;
  const { offs: [t, s, d], m: w } = regions(T.length, n, C * kk * N);
  w.i32.set(T, t);
  w.f32.set(x.subarray(xOff, xOff + n), s);
  w.im2col(4 * t, ohw, kk, C, hw, 4 * s, 4 * d, N, m, 4 * DUMMY);
  cols.set(w.f32.subarray(d, d + C * kk * N));
}

/**
 * The adjoint of im2colTaps: dx[dxOff ...], m images [C, hw], is set to the sum of the panel
 * entries cols[(c*kk + t)*N + j*ohw + q] that read each element (N = m*ohw).
 */
export function col2imTaps(
  T: Int32Array,
  ohw: number,
  C: number,
  hw: number,
  cols: Float32Array,
  m: number,
  dx: Float32Array,
  dxOff: number,
): void {
  const kk = T.length / ohw, N = m * ohw, n = m * C * hw;
  const { offs: [t, s, d], m: w } = regions(T.length, C * kk * N, n);
  w.i32.set(T, t);
  w.f32.set(cols.subarray(0, C * kk * N), s);
  w.f32.fill(0, d, d + n);
  w.col2im(4 * t, ohw, kk, C, hw, 4 * s, 4 * d, N, m, 4 * DUMMY);
  dx.set(w.f32.subarray(d, d + n), dxOff);
}

/**
 * y[yOff ...], m images [O, ohw]: bias[o] (0 without a bias) plus the sum over taps t, in order,
 * of z[(t*O + o)*N + j*hw + T[t*ohw + q]] (N = m*hw), padding taps skipped.
 */
export function addTaps(
  T: Int32Array,
  ohw: number,
  O: number,
  hw: number,
  z: Float32Array,
  m: number,
  y: Float32Array,
  yOff: number,
  bias?: Float32Array,
): void {
  const kk = T.length / ohw, N = m * hw, n = m * O * ohw;
  const { offs: [t, b, s, d], m: w } = regions(T.length, O, kk * O * N, n);
  w.i32.set(T, t);
  if (bias) w.f32.set(bias.subarray(0, O), b);
  else w.f32.fill(0, b, b + O);
  w.f32.set(z.subarray(0, kk * O * N), s);
  w.addTaps(4 * t, ohw, kk, O, hw, 4 * s, 4 * d, N, m, 4 * DUMMY, 4 * b);
  y.set(w.f32.subarray(d, d + n), yOff);
}

/**
 * Between per-image planes (m images [R, plane] at planes[off ...]) and the chunk layout
 * chunk[r*N + j*plane + q], N = m*plane. `toChunk` true copies planes into chunk; false copies
 * back, adding bias[r] where given.
 */
export function chunkPlanes(
  planes: Float32Array,
  off: number,
  chunk: Float32Array,
  R: number,
  plane: number,
  m: number,
  toChunk: boolean,
  bias?: Float32Array,
): void {
  const n = m * R * plane;
  const { offs: [b, s, d], m: w } = regions(R, n, n);
  if (toChunk) {
    w.f32.set(planes.subarray(off, off + n), s);
    w.toChunk(4 * s, R, plane, m, 4 * d, 0);
    chunk.set(w.f32.subarray(d, d + n));
    return;
  }
  if (bias) w.f32.set(bias.subarray(0, R), b);
  else w.f32.fill(0, b, b + R);
  w.f32.set(chunk.subarray(0, n), s);
  w.fromChunk(4 * s, R, plane, m, 4 * d, 4 * b);
  planes.set(w.f32.subarray(d, d + n), off);
}
