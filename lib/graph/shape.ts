/** Static tensor shapes and the errors raised when an op is given inconsistent ones. */

/** A static shape, outermost axis first (NCHW for images). */
export type Shape = readonly number[];

/** Number of elements of a shape (1 for a scalar `[]`). */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Raised while a graph is being built, never while it runs: the message names the op and every
 * input shape so that a wrong model is found at its source line.
 */
export class ShapeError extends Error {
  /** Builds the message from the op name, every input shape and the reason. */
  constructor(op: string, shapes: readonly Shape[], why: string) {
    super(`${op}: ${why} (input shapes ${shapes.map(fmtShape).join(", ")})`);
    this.name = "ShapeError";
  }
}

/** Numpy-style broadcast of several shapes, or a ShapeError naming the op. */
export function broadcastShapes(op: string, shapes: readonly Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i];
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) {
        throw new ShapeError(
          op,
          shapes,
          `axis ${o} has sizes ${out[o]} and ${d}, not broadcastable`,
        );
      }
    }
  }
  return out;
}

/** Strides of `shape` read as `outShape` under broadcasting: 0 on broadcast axes. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const own = stridesOf(shape);
  const r = outShape.length - shape.length;
  return outShape.map((_, i) => (i < r || shape[i - r] === 1 ? 0 : own[i - r]));
}

export function normAxes(op: string, shape: Shape, axes: readonly number[]): number[] {
  const r = shape.length;
  const out = axes.map((a) => (a < 0 ? a + r : a));
  for (const a of out) {
    if (a < 0 || a >= r) throw new ShapeError(op, [shape], `axis ${a} out of range for rank ${r}`);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}
