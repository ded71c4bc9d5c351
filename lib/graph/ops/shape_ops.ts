/** Reshape (a view), sums over axes, and the channel-wise movement ops concat / slice / pad. */
import { defineOp, type OpDef, type Tensor } from "../graph.ts";
import { normAxes, numel, type Shape, ShapeError, stridesOf } from "../shape.ts";
import { affine, expand } from "./elementwise.ts";

/** The `reshape` op. */
export const reshapeDef: OpDef<{ shape: number[] }> = defineOp({
  name: "reshape",
  arity: 1,
  alias: true,
  shape: (ins, a) => {
    if (numel(ins[0]) !== numel(a.shape)) {
      throw new ShapeError("reshape", ins, `cannot reshape to [${a.shape.join(", ")}]`);
    }
    return a.shape;
  },
  grad: ({ x, dy }) => [reshape(dy, x[0].shape)],
  // A view, as on the devices: an output reshaped from a leaf sees that leaf's effect updates.
  ref: (ins) => ins[0],
});

/** The `sum` op. */
export const sumDef: OpDef<{ axes: number[] }> = defineOp({
  name: "sum",
  arity: 1,
  shape: (ins, a) => {
    const axes = normAxes("sum", ins[0], a.axes);
    return ins[0].map((d, i) => (axes.includes(i) ? 1 : d));
  },
  grad: ({ x, dy }) => [expand(dy, x[0].shape)],
  ref: (ins, shapes, a, out) => {
    const s = shapes[0];
    const axes = normAxes("sum", s, a.axes);
    const res = new Float64Array(numel(out));
    const os = stridesOf(out);
    const is = stridesOf(s);
    for (let i = 0; i < ins[0].length; i++) {
      let o = 0;
      for (let d = 0; d < s.length; d++) {
        if (!axes.includes(d)) o += (Math.floor(i / is[d]) % s[d]) * os[d];
      }
      res[o] += ins[0][i];
    }
    return res;
  },
});

/** Splits a shape around `axis` into (outer, axis size, inner). */
export function around(shape: Shape, axis: number) {
  return {
    outer: numel(shape.slice(0, axis)),
    len: shape[axis],
    inner: numel(shape.slice(axis + 1)),
  };
}

/** The `slice` op. */
export const sliceDef: OpDef<{ axis: number; start: number; size: number }> = defineOp({
  name: "slice",
  arity: 1,
  shape: (ins, a) => {
    const s = ins[0];
    if (a.axis < 0 || a.axis >= s.length || a.start < 0 || a.start + a.size > s[a.axis]) {
      throw new ShapeError("slice", ins, `slice ${a.start}..${a.start + a.size} of axis ${a.axis}`);
    }
    return s.map((d, i) => (i === a.axis ? a.size : d));
  },
  grad: ({ x, dy, attrs }) => [
    pad(dy, attrs.axis, attrs.start, x[0].shape[attrs.axis] - attrs.start - attrs.size),
  ],
  ref: (ins, shapes, a, out) => {
    const { inner, len } = around(shapes[0], a.axis);
    const res = new Float64Array(numel(out));
    const blk = a.size * inner;
    for (let i = 0; i < res.length; i++) {
      const o = Math.floor(i / blk);
      res[i] = ins[0][o * len * inner + a.start * inner + (i % blk)];
    }
    return res;
  },
});

/** The `pad` op. */
export const padDef: OpDef<{ axis: number; before: number; after: number }> = defineOp({
  name: "pad",
  arity: 1,
  shape: (ins, a) => {
    if (a.axis < 0 || a.axis >= ins[0].length || a.before < 0 || a.after < 0) {
      throw new ShapeError("pad", ins, `bad padding of axis ${a.axis}`);
    }
    return ins[0].map((d, i) => (i === a.axis ? d + a.before + a.after : d));
  },
  grad: ({ x, dy, attrs }) => [slice(dy, attrs.axis, attrs.before, x[0].shape[attrs.axis])],
  ref: (ins, shapes, a, out) => {
    const { inner, len } = around(shapes[0], a.axis);
    const ol = len + a.before + a.after;
    const res = new Float64Array(numel(out));
    for (let i = 0; i < res.length; i++) {
      const o = Math.floor(i / (ol * inner));
      const c = Math.floor((i % (ol * inner)) / inner) - a.before;
      if (c >= 0 && c < len) res[i] = ins[0][(o * len + c) * inner + (i % inner)];
    }
    return res;
  },
});

/** The `concat` op. */
export const concatDef: OpDef<{ axis: number }> = defineOp({
  name: "concat",
  shape: (ins, a) => {
    const r = ins[0].length;
    if (a.axis < 0 || a.axis >= r) throw new ShapeError("concat", ins, `bad axis ${a.axis}`);
    for (const s of ins) {
      if (s.length !== r || s.some((d, i) => i !== a.axis && d !== ins[0][i])) {
        throw new ShapeError("concat", ins, `sizes differ outside axis ${a.axis}`);
      }
    }
    return ins[0].map((d, i) => (i === a.axis ? ins.reduce((t, s) => t + s[a.axis], 0) : d));
  },
  grad: ({ x, dy, attrs }) => {
    let start = 0;
    return x.map((t) => {
      const g = slice(dy, attrs.axis, start, t.shape[attrs.axis]);
      start += t.shape[attrs.axis];
      return g;
    });
  },
  ref: (ins, shapes, a, out) => {
    const res = new Float64Array(numel(out));
    const ol = out[a.axis];
    let start = 0;
    shapes.forEach((s, k) => {
      const { inner, len } = around(s, a.axis);
      for (let i = 0; i < ins[k].length; i++) {
        const o = Math.floor(i / (len * inner));
        res[(o * ol + start) * inner + (i % (len * inner))] = ins[k][i];
      }
      start += len;
    });
    return res;
  },
});

/** The same values with another shape of equal size (a view: no kernel, no copy). */
export const reshape = (x: Tensor, shape: Shape): Tensor =>
  x.graph.apply("reshape", [x], { shape: [...shape] });
/** Sum over `axes`, keeping them as size-1 axes. */
export const sum = (x: Tensor, axes: number[]): Tensor => x.graph.apply("sum", [x], { axes });
/** Mean over `axes`, keeping them as size-1 axes. */
export function mean(x: Tensor, axes: number[]): Tensor {
  const ax = normAxes("mean", x.shape, axes);
  const n = ax.reduce((t, a) => t * x.shape[a], 1);
  return affine(sum(x, ax), 1 / n, 0);
}
/** `size` entries of `axis` starting at `start`, the other axes whole. */
export const slice = (x: Tensor, axis: number, start: number, size: number): Tensor =>
  x.graph.apply("slice", [x], { axis, start, size });
/** Zero-pads `axis` with `before` entries in front and `after` behind. */
export const pad = (x: Tensor, axis: number, before: number, after: number): Tensor =>
  x.graph.apply("pad", [x], { axis, before, after });
/** Joins tensors along `axis` (default 1, channels); the other axes must match. */
export const concat = (xs: Tensor[], axis: number = 1): Tensor =>
  xs[0].graph.apply("concat", xs, { axis });
