/**
 * Ops of the LViT blocks that the U-Net engine did not need (lvit-reference.md 1.2-1.3):
 * - `gelu` / `gelu_grad`: nn.GELU's exact erf form, for the token MLPs;
 * - `dropout`: inverted dropout drawn from Philox keyed by (seed, Stream.dropout, step, index),
 *   the same mask in TS and WGSL bit for bit (design.md 4);
 * - `max_axis` / `max_axis_grad`: max over one axis with keepdim (PLAM's max over channels).
 */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { numel, type Shape, ShapeError } from "../shape.ts";
import { fillUniform, Stream } from "../../rng/philox.ts";

/** Parameters of a dropout node, all resolved on the host from its attributes (`dropoutGeom`). */
export interface DropoutGeom {
  /** Elements. */
  n: number;
  /** Keep element i iff (word >> 8) >= thr, i.e. its uniform u = (word >> 8) 2^-24 >= p. */
  thr: number;
  /** 1 / (1 - p) rounded to f32 (0 when p = 1). */
  scale: number;
  /** Seed, already reduced to a u32. */
  seed: number;
  /** Philox stream id (Stream.dropout). */
  stream: number;
}

/** x viewed as [outer, A, inner], reduced over A. */
export interface AxisGeom {
  outer: number;
  A: number;
  inner: number;
}

// ---------------------------------------------------------------------------------------------
// Float64 erf / erfc for the references (absolute error below 1e-15, tested).

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * erf(x) for |x| < 3 from the series erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (2n+1)!!.
 * All its terms are positive, so unlike the alternating Taylor series it loses nothing to
 * cancellation; the ratio of successive terms is 2x^2 / (2n+1), at most 18/(2n+1).
 */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let s = x;
  for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(s); n++) {
    term *= (2 * x2) / (2 * n + 1);
    s += term;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * s;
}

/**
 * erfc(x) for x >= 3 from the continued fraction
 * erfc(x) = e^{-x^2} / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + 2 / (x + ...))))),
 * evaluated backwards from a fixed depth; at x = 3, 40 levels already agree with 2000 to the last
 * bit, so 60 is a margin. Computing the tail directly keeps it accurate relative to its size.
 */
function erfcFraction(x: number): number {
  let f = x;
  for (let n = 60; n >= 1; n--) f = x + n / 2 / f;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Float64 erfc, accurate to ~1e-16 absolute and ~1e-11 relative (reference use). */
export function erfcRef(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfcRef(-x);
  return x < 3 ? 1 - erfSeries(x) : erfcFraction(x);
}

/** Float64 erf, accurate to ~1e-16 absolute (reference use). */
export function erfRef(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (Math.abs(x) < 3) return erfSeries(x);
  return Math.sign(x) * (1 - erfcFraction(Math.abs(x)));
}

/** Phi(x), the standard normal CDF, as 0.5 erfc(-x / sqrt 2): accurate in the lower tail. */
const normCdf = (x: number) => 0.5 * erfcRef(-x * Math.SQRT1_2);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

// ---------------------------------------------------------------------------------------------
// GELU

function sameShapes(op: string, ins: Shape[]): Shape {
  if (ins[0].length !== ins[1].length || ins[0].some((d, i) => d !== ins[1][i])) {
    throw new ShapeError(op, ins, "inputs must have the same shape");
  }
  return ins[0];
}

/** The `gelu` op. */
export const geluDef: OpDef = defineOp({
  name: "gelu",
  arity: 1,
  shape: (ins) => ins[0],
  grad: ({ x, dy }) => [geluGrad(x[0], dy)],
  ref: (ins) => ins[0].map((v) => v * normCdf(v)),
});

// No gradient rule of its own: second derivatives are not needed for training.
/** The `gelu_grad` op. */
export const geluGradDef: OpDef = defineOp({
  name: "gelu_grad",
  arity: 2,
  shape: (ins) => sameShapes("gelu_grad", ins),
  ref: ([x, dy]) =>
    x.map((v, i) => dy[i] * (normCdf(v) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v))),
});

// ---------------------------------------------------------------------------------------------
// Dropout

/** Dropout attributes: drop probability p in [0, 1] and a non-negative integer seed. */
export type DropoutAttrs = { p: number; seed: number };

/**
 * The step as the WGSL kernel converts it: f32 -> u32 truncates toward zero and saturates, so
 * a stray negative or huge value still gives the same mask on both backends.
 */
export function stepToU32(s: number): number {
  if (!(s > 0)) return 0;
  return Math.min(Math.trunc(s), 4294967295);
}

/** The mask parameters of a dropout node, or a ShapeError. */
export function dropoutGeom(ins: Shape[], a: DropoutAttrs): DropoutGeom {
  if (numel(ins[1]) !== 1) throw new ShapeError("dropout", ins, "step must be a [1] tensor");
  if (!(a.p >= 0 && a.p <= 1)) throw new ShapeError("dropout", ins, `p = ${a.p} not in [0, 1]`);
  if (!(Number.isSafeInteger(a.seed) && a.seed >= 0)) {
    throw new ShapeError("dropout", ins, `seed ${a.seed} is not a non-negative integer`);
  }
  return {
    n: numel(ins[0]),
    // u = K 2^-24 with integer K, so u >= p exactly when K >= ceil(p 2^24) (p 2^24 is exact):
    // the kernels compare integers and the float64 reference compares u with p itself.
    thr: Math.ceil(a.p * 16777216),
    // PyTorch zeroes everything at p = 1 instead of scaling by infinity.
    scale: a.p === 1 ? 0 : Math.fround(1 / (1 - a.p)),
    seed: a.seed % 4294967296,
    stream: Stream.dropout,
  };
}

/** The `dropout` op. */
export const dropoutDef: OpDef<DropoutAttrs> = defineOp({
  name: "dropout",
  arity: 2,
  shape: (ins, a) => {
    dropoutGeom(ins, a);
    return ins[0];
  },
  // The same mask applied to dy: same step input, same attributes.
  grad: ({ x, dy, attrs }) => [dy.graph.apply("dropout", [dy, x[1]], attrs), null],
  ref: ([x, stepv], shapes, a) => {
    const g = dropoutGeom(shapes, a);
    const u = new Float64Array(x.length);
    fillUniform(u, g.seed, Stream.dropout, stepToU32(stepv[0]));
    return x.map((v, i) => v * (u[i] >= a.p ? g.scale : 0));
  },
});

// ---------------------------------------------------------------------------------------------
// Max over one axis

/** Attributes of `max_axis` and `max_axis_grad`. */
export type AxisAttrs = { axis: number };

/** x as [outer, A, inner] around `a.axis`, or a ShapeError naming `op`. */
export function axisGeom(op: string, ins: Shape[], a: AxisAttrs): AxisGeom {
  const x = ins[0];
  if (!(Number.isInteger(a.axis) && a.axis >= 0 && a.axis < x.length)) {
    throw new ShapeError(op, ins, `axis ${a.axis} out of range`);
  }
  if (x[a.axis] === 0) throw new ShapeError(op, ins, "max over an empty axis");
  return { outer: numel(x.slice(0, a.axis)), A: x[a.axis], inner: numel(x.slice(a.axis + 1)) };
}

const keepdim = (x: Shape, axis: number) => x.map((d, i) => (i === axis ? 1 : d));

/** Index in x of the first maximum of slice (o, j), as torch.max(dim) picks it. */
function refArgmax(x: Float64Array, g: AxisGeom, o: number, j: number): number {
  let best = o * g.A * g.inner + j;
  for (let a = 1; a < g.A; a++) {
    const k = (o * g.A + a) * g.inner + j;
    if (x[k] > x[best]) best = k;
  }
  return best;
}

/** The `max_axis` op. */
export const maxAxisDef: OpDef<AxisAttrs> = defineOp({
  name: "max_axis",
  arity: 1,
  shape: (ins, a) => {
    axisGeom("max_axis", ins, a);
    return keepdim(ins[0], a.axis);
  },
  grad: ({ x, dy, attrs }) => [maxAxisGrad(x[0], dy, attrs.axis)],
  ref: ([x], shapes, a) => {
    const g = axisGeom("max_axis", shapes, a);
    const y = new Float64Array(g.outer * g.inner);
    for (let o = 0; o < g.outer; o++) {
      for (let j = 0; j < g.inner; j++) y[o * g.inner + j] = x[refArgmax(x, g, o, j)];
    }
    return y;
  },
});

/** The `max_axis_grad` op. */
export const maxAxisGradDef: OpDef<AxisAttrs> = defineOp({
  name: "max_axis_grad",
  arity: 2,
  shape: (ins, a) => {
    axisGeom("max_axis_grad", ins, a);
    const want = keepdim(ins[0], a.axis);
    if (ins[1].length !== want.length || ins[1].some((d, i) => d !== want[i])) {
      throw new ShapeError("max_axis_grad", ins, `dy must be [${want.join(", ")}]`);
    }
    return ins[0];
  },
  ref: ([x, dy], shapes, a) => {
    const g = axisGeom("max_axis_grad", shapes, a);
    const dx = new Float64Array(x.length);
    for (let o = 0; o < g.outer; o++) {
      for (let j = 0; j < g.inner; j++) dx[refArgmax(x, g, o, j)] = dy[o * g.inner + j];
    }
    return dx;
  },
});

// ---------------------------------------------------------------------------------------------
// Builders

/** nn.GELU() (approximate='none'): x/2 (1 + erf(x / sqrt 2)). */
export const gelu = (x: Tensor): Tensor => x.graph.apply("gelu", [x]);
/** dy * GELU'(x), the gradient of `gelu`. */
export const geluGrad = (x: Tensor, dy: Tensor): Tensor => x.graph.apply("gelu_grad", [x, dy]);

/**
 * Training-mode nn.Dropout(p): keeps element i where the Philox uniform keyed by
 * (seed, Stream.dropout, step, i) is >= p and scales kept values by 1/(1-p). `step` is a [1]
 * input the host writes each training step (a non-negative integer below 2^24, exact in f32),
 * so every step draws a fresh mask and a resumed run redraws the same ones. p = 0 returns x
 * itself (no node). Evaluation mode is the identity: build eval graphs without calling this.
 */
export function dropout(x: Tensor, step: Tensor, o: DropoutAttrs): Tensor {
  if (o.p === 0) return x;
  return x.graph.apply("dropout", [x, step], { p: o.p, seed: o.seed });
}

/** torch.max(x, axis, keepdim=True).values; the gradient goes to the first maximum. */
export function maxAxis(x: Tensor, axis: number): Tensor {
  return x.graph.apply("max_axis", [x], { axis: axis < 0 ? axis + x.rank : axis });
}
/** dx of `maxAxis`: dy at the first maximum of each slice, zero elsewhere. */
export function maxAxisGrad(x: Tensor, dy: Tensor, axis: number): Tensor {
  return x.graph.apply("max_axis_grad", [x, dy], { axis: axis < 0 ? axis + x.rank : axis });
}
