/**
 * Elementwise ops. Each is one table entry built from its float64 twin and a gradient rule, with
 * numpy broadcasting; the backends lower them through their own expression tables
 * (lib/backends/webgpu/lower.ts: WGSL, lib/backends/cpu/lower.ts: JS).
 */
import { type Attrs, defineOp, type GradArgs, type OpDef, type Tensor } from "../graph.ts";
import {
  broadcastShapes,
  broadcastStrides,
  numel,
  type Shape,
  ShapeError,
  stridesOf,
} from "../shape.ts";

type Num = (...v: number[]) => number;

interface ElementwiseSpec<A extends Attrs> {
  name: string;
  arity: number;
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

function elementwise<A extends Attrs>(spec: ElementwiseSpec<A>): OpDef<A> {
  return defineOp<A>({
    name: spec.name,
    arity: spec.arity,
    shape: (ins, a) => spec.shape ? spec.shape(ins, a) : broadcastShapes(spec.name, ins),
    grad: spec.grad,
    ref: (ins, shapes, a, out) => refBroadcast(ins, shapes, out, spec.ref(a)),
  });
}

/**
 * Sums a broadcast gradient back to the shape of the operand that was broadcast. The `sum` and
 * `reshape` nodes are made by name: their family (shape_ops.ts) builds on this one (`mean`,
 * the gradient of `sum`), and a module import back would be a cycle.
 */
export function sumTo(t: Tensor, shape: Shape): Tensor {
  if (t.size === numel(shape) && t.rank === shape.length) return t;
  const r = t.rank - shape.length;
  const axes: number[] = [];
  for (let d = 0; d < t.rank; d++) if (d < r || shape[d - r] === 1) axes.push(d);
  const s = t.graph.apply("sum", [t], { axes });
  return t.graph.apply("reshape", [s], { shape: [...shape] });
}

// The table. Gradients of non-differentiable inputs (masks, thresholds) are null.
/** The `add` op. */
export const addDef: OpDef = elementwise({
  name: "add",
  arity: 2,
  ref: () => (a, b) => a + b,
  grad: ({ x, dy }) => [sumTo(dy, x[0].shape), sumTo(dy, x[1].shape)],
});
/** The `sub` op. */
export const subDef: OpDef = elementwise({
  name: "sub",
  arity: 2,
  ref: () => (a, b) => a - b,
  grad: ({ x, dy }) => [sumTo(dy, x[0].shape), sumTo(neg(dy), x[1].shape)],
});
/** The `mul` op. */
export const mulDef: OpDef = elementwise({
  name: "mul",
  arity: 2,
  ref: () => (a, b) => a * b,
  grad: ({ x, dy }) => [sumTo(mul(dy, x[1]), x[0].shape), sumTo(mul(dy, x[0]), x[1].shape)],
});
/** The `div` op. */
export const divDef: OpDef = elementwise({
  name: "div",
  arity: 2,
  ref: () => (a, b) => a / b,
  grad: ({ x, y, dy }) => [
    sumTo(div(dy, x[1]), x[0].shape),
    sumTo(neg(div(mul(dy, y), x[1])), x[1].shape),
  ],
});
/** The `fma` op. */
export const fmaDef: OpDef = elementwise({
  name: "fma",
  arity: 3,
  ref: () => (a, b, c) => a * b + c,
  grad: ({ x, dy }) => [
    sumTo(mul(dy, x[1]), x[0].shape),
    sumTo(mul(dy, x[0]), x[1].shape),
    sumTo(dy, x[2].shape),
  ],
});
/** The `affine` op. */
export const affineDef: OpDef<{ a: number; b: number }> = elementwise({
  name: "affine",
  arity: 1,
  ref: ({ a, b }) => (v) => Math.fround(a) * v + Math.fround(b),
  grad: ({ dy, attrs }) => [affine(dy, attrs.a, 0)],
});
/** The `neg` op. */
export const negDef: OpDef = elementwise({
  name: "neg",
  arity: 1,
  ref: () => (v) => -v,
  grad: ({ dy }) => [neg(dy)],
});
/** The `square` op. */
export const squareDef: OpDef = elementwise({
  name: "square",
  arity: 1,
  ref: () => (v) => v * v,
  grad: ({ x, dy }) => [mul(dy, affine(x[0], 2, 0))],
});
/** The `exp` op. */
export const expDef: OpDef = elementwise({
  name: "exp",
  arity: 1,
  ref: () => Math.exp,
  grad: ({ y, dy }) => [mul(dy, y)],
});
/** The `log` op. */
export const logDef: OpDef = elementwise({
  name: "log",
  arity: 1,
  ref: () => Math.log,
  grad: ({ x, dy }) => [div(dy, x[0])],
});
/** The `sqrt` op. */
export const sqrtDef: OpDef = elementwise({
  name: "sqrt",
  arity: 1,
  ref: () => Math.sqrt,
  grad: ({ y, dy }) => [div(affine(dy, 0.5, 0), y)],
});
/** The `rsqrt` op. */
export const rsqrtDef: OpDef = elementwise({
  name: "rsqrt",
  arity: 1,
  ref: () => (v) => 1 / Math.sqrt(v),
  grad: ({ y, dy }) => [mul(dy, affine(mul(y, square(y)), -0.5, 0))],
});
/** The `relu` op. */
export const reluDef: OpDef = elementwise({
  name: "relu",
  arity: 1,
  ref: () => (v) => Math.max(v, 0),
  grad: ({ x, dy }) => [reluGrad(x[0], dy)],
});
/** The `relu_grad` op. */
export const reluGradDef: OpDef = elementwise({
  name: "relu_grad",
  arity: 2,
  ref: () => (v, d) => (v > 0 ? d : 0),
});
/** The `sigmoid` op. */
export const sigmoidDef: OpDef = elementwise({
  name: "sigmoid",
  arity: 1,
  ref: () => (v) => 1 / (1 + Math.exp(-v)),
  grad: ({ y, dy }) => [sigmoidGrad(y, dy)],
});
/** The `sigmoid_grad` op. */
export const sigmoidGradDef: OpDef = elementwise({
  name: "sigmoid_grad",
  arity: 2,
  ref: () => (s, d) => d * s * (1 - s),
});
/** The `step_gt` op. */
export const stepGtDef: OpDef<{ t: number }> = elementwise({
  name: "step_gt",
  arity: 1,
  ref: ({ t }) => (v) => (v > Math.fround(t) ? 1 : 0),
  grad: () => [null],
});
/** The `step_lt` op. */
export const stepLtDef: OpDef<{ t: number }> = elementwise({
  name: "step_lt",
  arity: 1,
  ref: ({ t }) => (v) => (v < Math.fround(t) ? 1 : 0),
  grad: () => [null],
});
/** The `expand` op. */
export const expandDef: OpDef<{ shape: number[] }> = elementwise({
  name: "expand",
  arity: 1,
  shape: (ins, a) => {
    const b = broadcastShapes("expand", [ins[0], a.shape]);
    if (b.length !== a.shape.length || b.some((d, i) => d !== a.shape[i])) {
      throw new ShapeError("expand", ins, `cannot expand to [${a.shape.join(", ")}]`);
    }
    return b;
  },
  ref: () => (v) => v,
  grad: ({ x, dy }) => [sumTo(dy, x[0].shape)],
});

// Binary cross-entropy on probabilities, as torch.nn.BCELoss computes it: logs clamped at -100,
// and a backward that divides by max(p(1-p), 1e-12) instead of differentiating the clamp, which
// would produce 0 * inf = NaN where the sigmoid saturates in f32.
/** The `bce` op. */
export const bceDef: OpDef = elementwise({
  name: "bce",
  arity: 2,
  ref: () => (p, y) =>
    -(y * Math.max(Math.log(p), -100) + (1 - y) * Math.max(Math.log(1 - p), -100)),
  grad: ({ x, dy }) => [bceGrad(x[0], x[1], dy), null],
});
/** The `bce_grad` op. */
export const bceGradDef: OpDef = elementwise({
  name: "bce_grad",
  arity: 3,
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
