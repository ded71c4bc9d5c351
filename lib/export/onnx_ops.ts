/**
 * The op mapping table of the ONNX export: each graph op of an evaluation graph becomes standard
 * ONNX nodes (opset 17, default domain). An entry sees one graph node and says which tensors it
 * reads and which ONNX nodes compute it; a few entries read past their direct inputs:
 *
 * - `fma` of an evaluation-mode batch norm (x * scale + shift with scale and shift folded from
 *   weight, bias, running mean and variance, lib/nn/layers.ts) is one `BatchNormalization` of
 *   the four state_dict tensors; any other `fma` is `Mul` + `Add`.
 * - `ln_apply` of `ln_stats` of the same input is one `LayerNormalization` (the statistics node
 *   is then never emitted).
 *
 * Batch-dependent shapes stay symbolic: `reshape` targets use 0 (copy the input's axis) or -1
 * (infer) for the axes whose size depends on the batch, found by building the graph at two batch
 * sizes (`Emitter.twin`). Ops without an entry (training-only ops: dropout, losses, gradients,
 * optimiser updates) cannot be exported.
 */
import type { Tensor } from "../graph/mod.ts";
import { InputError } from "../config/errors.ts";
import { type AttributeMsg, AttrType } from "./onnx_proto.ts";

/** A model the export cannot write (an op without mapping, a shape that cannot stay dynamic). */
export class OnnxExportError extends InputError {
  /** `message` names the op, the node and its layer. */
  constructor(message: string) {
    super(message);
    this.name = "OnnxExportError";
  }
}

/** What a mapping writes ONNX nodes with (lib/export/onnx.ts implements it). */
export interface Emitter {
  /** The ONNX value name of a tensor the mapping declared in `reads`. */
  v(t: Tensor): string;
  /** The value name the node's result must be written to. */
  readonly out: string;
  /** Adds a node; its output is `out` when given, else a fresh name, which is returned. */
  node(op: string, inputs: string[], attrs?: AttributeMsg[], out?: string): string;
  /** An int64 constant (shapes, axes, bounds) as an initializer; returns its name. */
  int64(values: readonly number[]): string;
  /** A float32 constant of shape `dims` (default: a scalar); returns its name. */
  float32(values: readonly number[], dims?: number[]): string;
  /** The same tensor in the graph built for the second batch size. */
  twin(t: Tensor): Tensor;
}

/** How one graph node is exported: the tensors it reads and the nodes that compute it. */
export interface Lowering {
  /** Tensors whose values the ONNX nodes use (default: the node's inputs). */
  reads: readonly Tensor[];
  /** Writes the ONNX nodes; the last one must write `e.out`. */
  emit(e: Emitter): void;
}

/** One entry of the table. */
export interface OpMapping {
  /** The ONNX ops it writes (for the README table and error messages). */
  onnx: string;
  /** Its attributes may differ between batch sizes (shape targets); others must not. */
  batchAttrs?: boolean;
  /** The lowering of node t. */
  lower(t: Tensor): Lowering;
}

/** An int attribute. */
export const int = (name: string, i: number): AttributeMsg => ({ name, type: AttrType.INT, i });
/** A float attribute (stored as f32). */
export const float = (name: string, v: number): AttributeMsg => ({
  name,
  type: AttrType.FLOAT,
  f: v,
});
/** An int list attribute. */
export const ints = (name: string, v: readonly number[]): AttributeMsg => ({
  name,
  type: AttrType.INTS,
  ints: [...v],
});
/** A string attribute. */
export const str = (name: string, s: string): AttributeMsg => ({
  name,
  type: AttrType.STRING,
  s: new TextEncoder().encode(s),
});

/** A lowering that reads the node's inputs. */
const direct = (t: Tensor, emit: (e: Emitter) => void): Lowering => ({ reads: t.inputs, emit });

/** An op that is one ONNX op of the same inputs. */
const same = (onnx: string, attrs: (t: Tensor) => AttributeMsg[] = () => []): OpMapping => ({
  onnx,
  lower: (t) =>
    direct(t, (e) => {
      e.node(onnx, t.inputs.map((x) => e.v(x)), attrs(t), e.out);
    }),
});

/** An op whose ONNX form is a chain written by `f` from the input names. */
const chain = (onnx: string, f: (e: Emitter, xs: string[], t: Tensor) => void): OpMapping => ({
  onnx,
  lower: (t) => direct(t, (e) => f(e, t.inputs.map((x) => e.v(x)), t)),
});

/** The leaf under a chain of reshapes, if it is of `kind` with shape [C]. */
function leafOf(t: Tensor, kind: "param" | "state", C: number): Tensor | null {
  while (t.kind === "node" && t.op === "reshape") t = t.inputs[0];
  return t.kind === kind && t.rank === 1 && t.shape[0] === C ? t : null;
}

/** The parts of an evaluation-mode batch norm (see {@link evalBatchNorm}). */
export interface EvalBatchNorm {
  /** The normalised input [B, C, ...]. */
  x: Tensor;
  /** gamma [C] (a parameter). */
  weight: Tensor;
  /** beta [C] (a parameter). */
  bias: Tensor;
  /** The running mean [C] (a state). */
  mean: Tensor;
  /** The running variance [C] (a state). */
  variance: Tensor;
  /** Added to the variance. */
  eps: number;
}

/**
 * The evaluation-mode batch norm of lib/nn/layers.ts, if `t` is its final fma:
 * fma(x, scale, beta - mean * scale) with scale = weight * rsqrt(var + eps), each [C] leaf
 * viewed as [1, C, 1, ...]; else null.
 */
export function evalBatchNorm(t: Tensor): EvalBatchNorm | null {
  const [x, scale, shift] = t.inputs;
  if (t.op !== "fma" || x.rank < 2 || scale.op !== "mul" || shift.op !== "sub") return null;
  const C = x.shape[1];
  const [gv, r] = scale.inputs;
  const [bv, m] = shift.inputs;
  if (r.op !== "rsqrt" || m.op !== "mul" || m.inputs[1] !== scale) return null;
  const a = r.inputs[0];
  if (a.op !== "affine" || a.attrs.a !== 1 || typeof a.attrs.b !== "number") return null;
  const weight = leafOf(gv, "param", C), bias = leafOf(bv, "param", C);
  const mean = leafOf(m.inputs[0], "state", C), variance = leafOf(a.inputs[0], "state", C);
  if (!weight || !bias || !mean || !variance) return null;
  return { x, weight, bias, mean, variance, eps: a.attrs.b };
}

/** ONNX's x * a + b for the constants of an `affine` node (no node for a = 1, b = 0). */
function affine(e: Emitter, x: string, a: number, b: number): void {
  if (a === 1 && b === 0) e.node("Identity", [x], [], e.out);
  else if (b === 0) e.node("Mul", [x, e.float32([a])], [], e.out);
  else if (a === 1) e.node("Add", [x, e.float32([b])], [], e.out);
  else e.node("Add", [e.node("Mul", [x, e.float32([a])]), e.float32([b])], [], e.out);
}

/** Transposes the last two axes of a rank-2 or rank-3 value. */
const swapLast = (e: Emitter, x: string, rank: number) =>
  e.node("Transpose", [x], [ints("perm", rank === 3 ? [0, 2, 1] : [1, 0])]);

/** The error of a node the export cannot write: names the op, the node and its layer. */
export function nodeError(t: Tensor, what: string): OnnxExportError {
  return new OnnxExportError(
    `onnx export: op '${t.op}' (node ${t} in layer ${t.scope || "(top level)"}) ${what}`,
  );
}

/** The mapping table, by graph op name. */
export const ONNX_OPS: Record<string, OpMapping> = {
  conv2d: same("Conv", (t) => {
    const w = t.inputs[1].shape;
    const { stride, padding, dilation, ...rest } = t.attrs as Record<string, number>;
    if (Object.keys(rest).length) {
      throw nodeError(t, `has attributes the export does not know: ${Object.keys(rest)}`);
    }
    return [
      ints("kernel_shape", [w[2], w[3]]),
      ints("strides", [stride, stride]),
      ints("pads", [padding, padding, padding, padding]),
      ints("dilations", [dilation, dilation]),
      int("group", 1),
    ];
  }),
  // Kernel = stride = f, weight [C, O, f, f]: ONNX's layout too.
  conv_transpose: same("ConvTranspose", (t) => {
    const f = t.inputs[1].shape[2];
    return [ints("kernel_shape", [f, f]), ints("strides", [f, f])];
  }),
  maxpool2d: same("MaxPool", (t) => {
    const { k, s } = t.attrs as { k: number; s: number };
    return [ints("kernel_shape", [k, k]), ints("strides", [s, s])];
  }),
  // Integer factor f: output pixel o reads input floor(o / f), i.e. asymmetric + floor.
  upsample_nearest: chain("Resize", (e, [x], t) => {
    const f = t.attrs.f as number;
    const scales = e.float32([1, 1, f, f], [4]);
    e.node("Resize", [x, "", scales], [
      str("mode", "nearest"),
      str("coordinate_transformation_mode", "asymmetric"),
      str("nearest_mode", "floor"),
    ], e.out);
  }),
  relu: same("Relu"),
  sigmoid: same("Sigmoid"),
  add: same("Add"),
  sub: same("Sub"),
  mul: same("Mul"),
  div: same("Div"),
  neg: same("Neg"),
  exp: same("Exp"),
  log: same("Log"),
  sqrt: same("Sqrt"),
  square: chain("Mul", (e, [x]) => e.node("Mul", [x, x], [], e.out)),
  rsqrt: chain(
    "Sqrt, Reciprocal",
    (e, [x]) => e.node("Reciprocal", [e.node("Sqrt", [x])], [], e.out),
  ),
  affine: chain("Mul, Add", (e, [x], t) => affine(e, x, t.attrs.a as number, t.attrs.b as number)),
  step_gt: chain("Greater, Cast", (e, [x], t) => {
    const gt = e.node("Greater", [x, e.float32([t.attrs.t as number])]);
    e.node("Cast", [gt], [int("to", 1)], e.out);
  }),
  step_lt: chain("Less, Cast", (e, [x], t) => {
    const lt = e.node("Less", [x, e.float32([t.attrs.t as number])]);
    e.node("Cast", [lt], [int("to", 1)], e.out);
  }),
  fma: {
    onnx: "BatchNormalization or Mul, Add",
    lower: (t) => {
      const bn = evalBatchNorm(t);
      if (!bn) {
        return direct(t, (e) => {
          const [a, b, c] = t.inputs.map((x) => e.v(x));
          e.node("Add", [e.node("Mul", [a, b]), c], [], e.out);
        });
      }
      return {
        reads: [bn.x, bn.weight, bn.bias, bn.mean, bn.variance],
        emit: (e) =>
          e.node(
            "BatchNormalization",
            [bn.x, bn.weight, bn.bias, bn.mean, bn.variance].map((x) => e.v(x)),
            [float("epsilon", bn.eps)],
            e.out,
          ),
      };
    },
  },
  // nn.GELU's erf form: x * 0.5 * (1 + erf(x / sqrt 2)) (Gelu itself is opset 20).
  gelu: chain("Div, Erf, Add, Mul", (e, [x]) => {
    const erf = e.node("Erf", [e.node("Div", [x, e.float32([Math.SQRT2])])]);
    const half = e.node("Mul", [x, e.float32([0.5])]);
    e.node("Mul", [half, e.node("Add", [erf, e.float32([1])])], [], e.out);
  }),
  softmax: same("Softmax", () => [int("axis", -1)]),
  ln_apply: {
    onnx: "LayerNormalization",
    lower: (t) => {
      const [x, stats, gamma, beta] = t.inputs;
      if (stats.op !== "ln_stats" || stats.inputs[0] !== x) {
        throw nodeError(t, "normalises with statistics of another tensor (no ONNX mapping)");
      }
      return {
        reads: [x, gamma, beta],
        emit: (e) =>
          e.node(
            "LayerNormalization",
            [e.v(x), e.v(gamma), e.v(beta)],
            [int("axis", -1), float("epsilon", t.attrs.eps as number)],
            e.out,
          ),
      };
    },
  },
  // 2-D x 2-D is Gemm with its transpose flags; batched operands are MatMul (which broadcasts a
  // shared 2-D operand) after an explicit Transpose of the last two axes where flagged.
  matmul: chain("Gemm or MatMul (+ Transpose)", (e, [a, b], t) => {
    const [ta, tb] = t.inputs;
    const transA = !!t.attrs.transA, transB = !!t.attrs.transB;
    if (ta.rank === 2 && tb.rank === 2) {
      e.node("Gemm", [a, b], [int("transA", +transA), int("transB", +transB)], e.out);
      return;
    }
    const A = transA ? swapLast(e, a, ta.rank) : a;
    const B = transB ? swapLast(e, b, tb.rank) : b;
    e.node("MatMul", [A, B], [], e.out);
  }),
  permute: same("Transpose", (t) => [ints("perm", t.attrs.perm as number[])]),
  concat: same("Concat", (t) => [int("axis", t.attrs.axis as number)]),
  slice: chain("Slice", (e, [x], t) => {
    const { axis, start, size } = t.attrs as { axis: number; start: number; size: number };
    e.node("Slice", [x, e.int64([start]), e.int64([start + size]), e.int64([axis])], [], e.out);
  }),
  pad: chain("Pad", (e, [x], t) => {
    const { axis, before, after } = t.attrs as { axis: number; before: number; after: number };
    const pads = new Array<number>(2 * t.rank).fill(0);
    pads[axis] = before;
    pads[t.rank + axis] = after;
    e.node("Pad", [x, e.int64(pads)], [str("mode", "constant")], e.out);
  }),
  sum: chain("ReduceSum", (e, [x], t) => {
    e.node("ReduceSum", [x, e.int64(t.attrs.axes as number[])], [int("keepdims", 1)], e.out);
  }),
  max_axis: same("ReduceMax", (t) => [ints("axes", [t.attrs.axis as number]), int("keepdims", 1)]),
  reshape: {
    onnx: "Reshape",
    batchAttrs: true,
    lower: (t) =>
      direct(t, (e) => {
        const x = t.inputs[0], tw = e.twin(t), xw = e.twin(x);
        // Static axes as they are; a batch axis copied from the same input axis is 0, and the
        // one remaining batch axis (B * T rows...) is inferred (-1).
        const target = t.shape.map((d, i) => {
          if (d === tw.shape[i]) return d;
          return i < x.rank && x.shape[i] === d && xw.shape[i] === tw.shape[i] ? 0 : -1;
        });
        if (target.filter((d) => d === -1).length > 1) {
          throw nodeError(t, "has two batch-dependent axes that no input axis gives");
        }
        e.node("Reshape", [e.v(x), e.int64(target)], [], e.out);
      }),
  },
  expand: {
    onnx: "Expand",
    batchAttrs: true,
    lower: (t) =>
      direct(t, (e) => {
        const x = t.inputs[0], tw = e.twin(t), xw = e.twin(x);
        const off = t.rank - x.rank;
        // Expand broadcasts its input against the target: a batch axis the input already has
        // is given as 1.
        const target = t.shape.map((d, i) => {
          if (d === tw.shape[i]) return d;
          const j = i - off;
          if (j >= 0 && x.shape[j] === d && xw.shape[j] === tw.shape[i]) return 1;
          throw nodeError(t, "broadcasts to a batch-dependent size its input lacks");
        });
        e.node("Expand", [e.v(x), e.int64(target)], [], e.out);
      }),
  },
};
