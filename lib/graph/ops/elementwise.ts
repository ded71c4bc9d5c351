/**
 * Elementwise ops. Each is one table entry built from a WGSL expression, its float64 twin and a
 * gradient rule; broadcasting, kernels and references come from the shared generator.
 */
import type { Attrs, Tensor } from "../graph.ts";
import { defineOp, type GradArgs } from "../op.ts";
import {
  broadcastShapes,
  broadcastStrides,
  numel,
  type Shape,
  ShapeError,
  stridesOf,
} from "../shape.ts";
import { elementwiseKernel } from "../../../kernels/webgpu/elementwise.ts";
import { f32 } from "../../../kernels/webgpu/common.ts";
import { elementwiseCpu, jsNum } from "../../../kernels/cpu/elementwise.ts";
// A cycle by design: reduction gradients use elementwise ops and broadcast gradients use sums;
// both are only called while building graphs, long after module evaluation.
import { reshape, sum } from "./shape_ops.ts";

type Num = (...v: number[]) => number;

interface ElementwiseSpec<A extends Attrs> {
  name: string;
  arity: number;
  wgsl(v: string[], a: A): string;
  /**
   * The same operation as a JS expression of the operand variables, evaluated in float64 and
   * rounded to f32 on the store (lib/backends/cpu/kernels/elementwise.ts generates the loops).
   * Prefer branchless forms: a data-dependent branch costs ~4x on random signs.
   */
  js(v: string[], a: A): string;
  ref(a: A): Num;
  grad?(g: GradArgs<A>): (Tensor | null)[];
  /** Output shape when it is not the broadcast of the inputs (expand). */
  shape?(ins: Shape[], a: A): Shape;
}

/** Applies `f` elementwise in float64 with numpy broadcasting. */
export function refBroadcast(
  ins: Float64Array[],
  inShapes: Shape[],
  out: Shape,
  f: (...v: number[]) => number,
): Float64Array {
  const n = numel(out);
  const res = new Float64Array(n);
  const os = stridesOf(out);
  const st = inShapes.map((s) => broadcastStrides(s, out));
  const args = new Array<number>(ins.length);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < ins.length; k++) {
      let off = 0;
      let r = i;
      for (let d = 0; d < out.length; d++) {
        const c = Math.floor(r / os[d]);
        r -= c * os[d];
        off += c * st[k][d];
      }
      args[k] = ins[k][off];
    }
    res[i] = f(...args);
  }
  return res;
}

function elementwise<A extends Attrs>(spec: ElementwiseSpec<A>) {
  defineOp<A>({
    name: spec.name,
    arity: spec.arity,
    shape: (ins, a) => spec.shape ? spec.shape(ins, a) : broadcastShapes(spec.name, ins),
    grad: spec.grad,
    ref: (ins, shapes, a, out) => refBroadcast(ins, shapes, out, spec.ref(a)),
    wgsl: (ins, a, out) => elementwiseKernel(ins, out, (v) => spec.wgsl(v, a)),
    cpu: (ins, a, out) => elementwiseCpu(ins, out, (v) => spec.js(v, a)),
  });
}

/** Sums a broadcast gradient back to the shape of the operand that was broadcast. */
export function sumTo(t: Tensor, shape: Shape): Tensor {
  if (t.size === numel(shape) && t.rank === shape.length) return t;
  const r = t.rank - shape.length;
  const axes: number[] = [];
  for (let d = 0; d < t.rank; d++) if (d < r || shape[d - r] === 1) axes.push(d);
  const s = sum(t, axes);
  return reshape(s, shape);
}

// The table. Gradients of non-differentiable inputs (masks, thresholds) are null.
elementwise({
  name: "add",
  arity: 2,
  wgsl: ([a, b]) => `${a} + ${b}`,
  js: ([a, b]) => `${a} + ${b}`,
  ref: () => (a, b) => a + b,
  grad: ({ x, dy }) => [sumTo(dy, x[0].shape), sumTo(dy, x[1].shape)],
});
elementwise({
  name: "sub",
  arity: 2,
  wgsl: ([a, b]) => `${a} - ${b}`,
  js: ([a, b]) => `${a} - ${b}`,
  ref: () => (a, b) => a - b,
  grad: ({ x, dy }) => [sumTo(dy, x[0].shape), sumTo(neg(dy), x[1].shape)],
});
elementwise({
  name: "mul",
  arity: 2,
  wgsl: ([a, b]) => `${a} * ${b}`,
  js: ([a, b]) => `${a} * ${b}`,
  ref: () => (a, b) => a * b,
  grad: ({ x, dy }) => [sumTo(mul(dy, x[1]), x[0].shape), sumTo(mul(dy, x[0]), x[1].shape)],
});
elementwise({
  name: "div",
  arity: 2,
  wgsl: ([a, b]) => `${a} / ${b}`,
  js: ([a, b]) => `${a} / ${b}`,
  ref: () => (a, b) => a / b,
  grad: ({ x, y, dy }) => [
    sumTo(div(dy, x[1]), x[0].shape),
    sumTo(neg(div(mul(dy, y), x[1])), x[1].shape),
  ],
});
elementwise({
  name: "fma",
  arity: 3,
  wgsl: ([a, b, c]) => `fma(${a}, ${b}, ${c})`,
  js: ([a, b, c]) => `${a} * ${b} + ${c}`,
  ref: () => (a, b, c) => a * b + c,
  grad: ({ x, dy }) => [
    sumTo(mul(dy, x[1]), x[0].shape),
    sumTo(mul(dy, x[0]), x[1].shape),
    sumTo(dy, x[2].shape),
  ],
});
elementwise<{ a: number; b: number }>({
  name: "affine",
  arity: 1,
  wgsl: ([v], { a, b }) => `${f32(a)} * ${v} + ${f32(b)}`,
  js: ([v], { a, b }) => `${jsNum(Math.fround(a))} * ${v} + ${jsNum(Math.fround(b))}`,
  ref: ({ a, b }) => (v) => Math.fround(a) * v + Math.fround(b),
  grad: ({ dy, attrs }) => [affine(dy, attrs.a, 0)],
});
elementwise({
  name: "neg",
  arity: 1,
  wgsl: ([v]) => `-${v}`,
  js: ([v]) => `-${v}`,
  ref: () => (v) => -v,
  grad: ({ dy }) => [neg(dy)],
});
elementwise({
  name: "square",
  arity: 1,
  wgsl: ([v]) => `${v} * ${v}`,
  js: ([v]) => `${v} * ${v}`,
  ref: () => (v) => v * v,
  grad: ({ x, dy }) => [mul(dy, affine(x[0], 2, 0))],
});
elementwise({
  name: "exp",
  arity: 1,
  wgsl: ([v]) => `exp(${v})`,
  js: ([v]) => `Math.exp(${v})`,
  ref: () => Math.exp,
  grad: ({ y, dy }) => [mul(dy, y)],
});
elementwise({
  name: "log",
  arity: 1,
  wgsl: ([v]) => `log(${v})`,
  js: ([v]) => `Math.log(${v})`,
  ref: () => Math.log,
  grad: ({ x, dy }) => [div(dy, x[0])],
});
elementwise({
  name: "sqrt",
  arity: 1,
  wgsl: ([v]) => `sqrt(${v})`,
  js: ([v]) => `Math.sqrt(${v})`,
  ref: () => Math.sqrt,
  grad: ({ y, dy }) => [div(affine(dy, 0.5, 0), y)],
});
elementwise({
  name: "rsqrt",
  arity: 1,
  wgsl: ([v]) => `1.0 / sqrt(${v})`,
  js: ([v]) => `1 / Math.sqrt(${v})`,
  ref: () => (v) => 1 / Math.sqrt(v),
  grad: ({ y, dy }) => [mul(dy, affine(mul(y, square(y)), -0.5, 0))],
});
elementwise({
  name: "relu",
  arity: 1,
  wgsl: ([v]) => `max(${v}, 0.0)`,
  // Branchless: V8 compiles Math.max and ternaries to branches, 4x slower on random signs.
  // (v + |v|) / 2 is exact for finite v (0 for v <= 0, -0 included); -Infinity gives NaN.
  js: ([v]) => `(${v} + Math.abs(${v})) * 0.5`,
  ref: () => (v) => Math.max(v, 0),
  grad: ({ x, dy }) => [reluGrad(x[0], dy)],
});
elementwise({
  name: "relu_grad",
  arity: 2,
  wgsl: ([v, d]) => `select(0.0, ${d}, ${v} > 0.0)`,
  // Branchless, as relu (a boolean times a number compiles to a select). Differs from the
  // reference only where d is infinite or NaN at an inactive unit (NaN, not 0).
  js: ([v, d]) => `${d} * (${v} > 0)`,
  ref: () => (v, d) => (v > 0 ? d : 0),
});
elementwise({
  name: "sigmoid",
  arity: 1,
  wgsl: ([v]) => `1.0 / (1.0 + exp(-${v}))`,
  js: ([v]) => `1 / (1 + Math.exp(-${v}))`,
  ref: () => (v) => 1 / (1 + Math.exp(-v)),
  grad: ({ y, dy }) => [sigmoidGrad(y, dy)],
});
elementwise({
  name: "sigmoid_grad",
  arity: 2,
  wgsl: ([s, d]) => `${d} * ${s} * (1.0 - ${s})`,
  js: ([s, d]) => `${d} * ${s} * (1 - ${s})`,
  ref: () => (s, d) => d * s * (1 - s),
});
elementwise<{ t: number }>({
  name: "step_gt",
  arity: 1,
  wgsl: ([v], { t }) => `select(0.0, 1.0, ${v} > ${f32(t)})`,
  js: ([v], { t }) => `+(${v} > ${jsNum(Math.fround(t))})`,
  ref: ({ t }) => (v) => (v > Math.fround(t) ? 1 : 0),
  grad: () => [null],
});
elementwise<{ t: number }>({
  name: "step_lt",
  arity: 1,
  wgsl: ([v], { t }) => `select(0.0, 1.0, ${v} < ${f32(t)})`,
  js: ([v], { t }) => `+(${v} < ${jsNum(Math.fround(t))})`,
  ref: ({ t }) => (v) => (v < Math.fround(t) ? 1 : 0),
  grad: () => [null],
});
elementwise<{ shape: number[] }>({
  name: "expand",
  arity: 1,
  shape: (ins, a) => {
    const b = broadcastShapes("expand", [ins[0], a.shape]);
    if (b.length !== a.shape.length || b.some((d, i) => d !== a.shape[i])) {
      throw new ShapeError("expand", ins, `cannot expand to [${a.shape.join(", ")}]`);
    }
    return b;
  },
  wgsl: ([v]) => v,
  js: ([v]) => v,
  ref: () => (v) => v,
  grad: ({ x, dy }) => [sumTo(dy, x[0].shape)],
});

// Binary cross-entropy on probabilities, as torch.nn.BCELoss computes it: logs clamped at -100,
// and a backward that divides by max(p(1-p), 1e-12) instead of differentiating the clamp, which
// would produce 0 * inf = NaN where the sigmoid saturates in f32.
elementwise({
  name: "bce",
  arity: 2,
  wgsl: ([p, y]) =>
    `-(${y} * max(select(-100.0, log(${p}), ${p} > 0.0), -100.0) + (1.0 - ${y}) * max(select(-100.0, log(1.0 - ${p}), ${p} < 1.0), -100.0))`,
  js: ([p, y]) =>
    `-(${y} * Math.max(Math.log(${p}), -100) + (1 - ${y}) * Math.max(Math.log(1 - ${p}), -100))`,
  ref: () => (p, y) =>
    -(y * Math.max(Math.log(p), -100) + (1 - y) * Math.max(Math.log(1 - p), -100)),
  grad: ({ x, dy }) => [bceGrad(x[0], x[1], dy), null],
});
elementwise({
  name: "bce_grad",
  arity: 3,
  wgsl: ([p, y, d]) => `${d} * (${p} - ${y}) / max(${p} * (1.0 - ${p}), 1e-12f)`,
  js: ([p, y, d]) => `${d} * (${p} - ${y}) / Math.max(${p} * (1 - ${p}), 1e-12)`,
  ref: () => (p, y, d) => (d * (p - y)) / Math.max(p * (1 - p), 1e-12),
});

const ew = (op: string, ...xs: Tensor[]) => xs[0].graph.apply(op, xs);

/** a + b with broadcasting; a number operand is folded into an `affine` op. */
export function add(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? affine(a, 1, b) : ew("add", a, b);
}
/** a - b with broadcasting; a number operand is folded into an `affine` op. */
export function sub(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? affine(a, 1, -b) : ew("sub", a, b);
}
/** a * b elementwise with broadcasting; a number operand is folded into an `affine` op. */
export function mul(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? affine(a, b, 0) : ew("mul", a, b);
}
/** a / b with broadcasting; dividing by a number becomes an `affine` op (times 1/b). */
export function div(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === "number" ? affine(a, 1 / b, 0) : ew("div", a, b);
}
/** x * s + t in one pass (per-channel affine maps such as batch norm). */
export const fma = (x: Tensor, s: Tensor, t: Tensor): Tensor => ew("fma", x, s, t);
/** a * x + b with constants. */
export const affine = (x: Tensor, a: number, b: number): Tensor =>
  x.graph.apply("affine", [x], { a, b });
/** -x. */
export const neg = (x: Tensor): Tensor => ew("neg", x);
/** x * x, elementwise. */
export const square = (x: Tensor): Tensor => ew("square", x);
/** e^x, elementwise. */
export const exp = (x: Tensor): Tensor => ew("exp", x);
/** Natural logarithm, elementwise. */
export const log = (x: Tensor): Tensor => ew("log", x);
/** Square root, elementwise. */
export const sqrt = (x: Tensor): Tensor => ew("sqrt", x);
/** 1 / sqrt(x), elementwise (normalisation layers). */
export const rsqrt = (x: Tensor): Tensor => ew("rsqrt", x);
/** max(x, 0), elementwise. */
export const relu = (x: Tensor): Tensor => ew("relu", x);
/** The gradient of `relu`: dy where x > 0, else 0. */
export const reluGrad = (x: Tensor, dy: Tensor): Tensor => ew("relu_grad", x, dy);
/** The logistic function 1 / (1 + e^-x), elementwise. */
export const sigmoid = (x: Tensor): Tensor => ew("sigmoid", x);
/** The gradient of `sigmoid` from its output y: dy * y * (1 - y). */
export const sigmoidGrad = (y: Tensor, dy: Tensor): Tensor => ew("sigmoid_grad", y, dy);
/** 1 where x > t, else 0 (no gradient). */
export const stepGt = (x: Tensor, t: number): Tensor => x.graph.apply("step_gt", [x], { t });
/** 1 where x < t, else 0 (no gradient). */
export const stepLt = (x: Tensor, t: number): Tensor => x.graph.apply("step_lt", [x], { t });
/** Broadcasts x to `shape` (numpy rules; the result must have exactly that shape). */
export const expand = (x: Tensor, shape: Shape): Tensor =>
  x.graph.apply("expand", [x], { shape: [...shape] });
/** Elementwise binary cross-entropy of probabilities p against targets y (torch BCELoss). */
export const bce = (p: Tensor, y: Tensor): Tensor => ew("bce", p, y);
/** The gradient of `bce` with respect to p: dy * (p - y) / (p * (1 - p)), denominator clamped. */
export const bceGrad = (p: Tensor, y: Tensor, dy: Tensor): Tensor => ew("bce_grad", p, y, dy);
