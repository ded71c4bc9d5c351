/**
 * Layers built from graph ops. A layer is a function of (context, name, input); its parameters
 * are graph leaves named as in the PyTorch state_dict (`down1.nConvs.0.conv.weight`), so a
 * training graph and an evaluation graph built from the same model share them by name.
 */
import {
  add,
  affine,
  assign,
  bnApplyOp,
  bnRunningUpdate,
  bnStatsOf,
  conv2d,
  convTranspose,
  fma,
  type Graph,
  mean,
  mul,
  relu,
  reshape,
  rsqrt,
  square,
  sub,
  type Tensor,
  torchDefault,
} from "../graph/mod.ts";

/** What a layer needs besides its input: the graph and the train/eval switch. */
export interface Ctx {
  /** The graph the layer adds its parameters and nodes to. */
  g: Graph;
  /** Training mode (batch statistics, dropout) or evaluation mode (running statistics). */
  training: boolean;
}

/** nn.Conv2d with PyTorch's default initialisation. */
export function conv2dLayer(
  c: Ctx,
  name: string,
  x: Tensor,
  cout: number,
  k: number,
  opts: { padding?: number; stride?: number; dilation?: number; bias?: boolean } = {},
): Tensor {
  const cin = x.shape[1];
  const init = torchDefault(cin * k * k);
  const w = c.g.param(`${name}.weight`, [cout, cin, k, k], init);
  const b = opts.bias === false ? undefined : c.g.param(`${name}.bias`, [cout], init);
  const attrs = {
    padding: opts.padding ?? 0,
    stride: opts.stride ?? 1,
    dilation: opts.dilation ?? 1,
  };
  return c.g.withScope(name, () => conv2d(x, w, b, attrs));
}

/** nn.ConvTranspose2d with kernel = stride = f; PyTorch computes its fan-in from weight dim 1. */
export function convTransposeLayer(
  c: Ctx,
  name: string,
  x: Tensor,
  cout: number,
  f: number,
): Tensor {
  const init = torchDefault(cout * f * f);
  const w = c.g.param(`${name}.weight`, [x.shape[1], cout, f, f], init);
  const b = c.g.param(`${name}.bias`, [cout], init);
  return c.g.withScope(name, () => convTranspose(x, w, b));
}

/** Settings of `batchNorm2d` / `batchNorm1d` beyond PyTorch's defaults. */
export interface BatchNormOpts {
  /** Added to the variance before the square root (PyTorch's default 1e-5). */
  eps?: number;
  /** Weight of the batch statistics in the running estimates (PyTorch's default 0.1). */
  momentum?: number;
  /** Fused kernels (default) or the composition of elementwise ops and sums (a fallback). */
  fused?: boolean;
  /** Apply a ReLU after the norm (fused into the batch-norm kernels in training mode). */
  relu?: boolean;
  /** Initial value of the weight (default 1; 0 makes a residual branch start as identity). */
  weightInit?: number;
}

/**
 * nn.BatchNorm2d. Training: batch statistics (biased variance to normalise, unbiased variance
 * into the running estimate, as PyTorch) and running-stat updates as effects of the step.
 * Evaluation: running statistics folded into one per-channel scale and shift.
 */
export function batchNorm2d(c: Ctx, name: string, x: Tensor, o: BatchNormOpts = {}): Tensor {
  return c.g.withScope(name, () => batchNormBody(c, name, x, o));
}

function batchNormBody(c: Ctx, name: string, x: Tensor, o: BatchNormOpts): Tensor {
  const eps = o.eps ?? 1e-5;
  const m = o.momentum ?? 0.1;
  const C = x.shape[1];
  const g = c.g;
  const w0 = o.weightInit ?? 1;
  const gamma = reshape(g.param(`${name}.weight`, [C], { kind: "const", value: w0 }), [1, C, 1, 1]);
  const beta = reshape(g.param(`${name}.bias`, [C], { kind: "const", value: 0 }), [1, C, 1, 1]);
  const rm = g.state(`${name}.running_mean`, [C], { kind: "const", value: 0 });
  const rv = g.state(`${name}.running_var`, [C], { kind: "const", value: 1 });
  const act = (t: Tensor) => (o.relu ? g.withScope(`${name}.relu`, () => relu(t)) : t);
  if (!c.training) {
    const scale = mul(gamma, rsqrt(add(reshape(rv, [1, C, 1, 1]), eps)));
    return act(fma(x, scale, sub(beta, mul(reshape(rm, [1, C, 1, 1]), scale))));
  }
  const n = x.size / C;
  const unbiased = n > 1 ? n / (n - 1) : 1;
  if (o.fused ?? true) {
    const stats = bnStatsOf(x);
    bnRunningUpdate(rm, rv, stats, m, unbiased);
    return bnApplyOp(x, stats, reshape(gamma, [C]), reshape(beta, [C]), eps, o.relu ?? false);
  }
  const m4 = mean(x, [0, 2, 3]);
  const xc = sub(x, m4);
  const v4 = mean(square(xc), [0, 2, 3]);
  const y = fma(xc, mul(gamma, rsqrt(add(v4, eps))), beta);
  assign(rm, add(affine(rm, 1 - m, 0), affine(reshape(m4, [C]), m, 0)));
  assign(rv, add(affine(rv, 1 - m, 0), affine(reshape(v4, [C]), m * unbiased, 0)));
  return act(y);
}

/** The reference's CBR block: 3x3 conv (padding 1, bias) -> BatchNorm2d -> ReLU. */
export function cbr(c: Ctx, name: string, x: Tensor, cout: number): Tensor {
  const conv = conv2dLayer(c, `${name}.conv`, x, cout, 3, { padding: 1 });
  return batchNorm2d(c, `${name}.norm`, conv, { relu: true });
}

/**
 * Functional 1-D convolution (cross-correlation, PyTorch's F.conv1d with stride 1) of
 * x [B, C, L] with w [O, C, k] and an optional bias [O]: x is viewed as [B, C, 1, L], zero-padded
 * along L only (conv2d's padding would pad the size-1 height too), convolved with the
 * [O, C, 1, k] view of w and viewed back as [B, O, L + 2 padding - k + 1]. Views are free, so
 * the cost is one pad pass plus conv2d's kernels, forward and backward.
 */
export function conv1d(x: Tensor, w: Tensor, b: Tensor | undefined, padding: number): Tensor {
  if (x.rank !== 3 || w.rank !== 3) {
    throw new Error(`conv1d: expects x [B, C, L] and w [O, C, k], got ${x} and ${w}`);
  }
  const [B, C, L] = x.shape;
  const [O, , k] = w.shape;
  let x4 = reshape(x, [B, C, 1, L]);
  // The pad op through the table: this block only appends to the file, imports stay as they are.
  if (padding > 0) x4 = x.graph.apply("pad", [x4], { axis: 3, before: padding, after: padding });
  const y = conv2d(x4, reshape(w, [O, C, 1, k]), b, { padding: 0 });
  return reshape(y, [B, O, y.shape[3]]);
}

/**
 * nn.Conv1d(C, cout, k, padding=padding) with bias, on x [B, C, L]: weight [cout, C, k] and bias
 * [cout] named `${name}.weight` / `${name}.bias` as in the PyTorch state_dict, initialised like
 * PyTorch (U(+-1/sqrt(C k)) for both).
 */
export function conv1dLayer(
  c: Ctx,
  name: string,
  x: Tensor,
  cout: number,
  k = 3,
  padding = 1,
): Tensor {
  const cin = x.shape[1];
  const init = torchDefault(cin * k);
  const w = c.g.param(`${name}.weight`, [cout, cin, k], init);
  const b = c.g.param(`${name}.bias`, [cout], init);
  return c.g.withScope(name, () => conv1d(x, w, b, padding));
}

/**
 * nn.BatchNorm1d on x [B, C, L] (or [B, C]): statistics per channel over batch and length. It is
 * batchNorm2d on the [B, C, L, 1] view, so it has the same fused kernels, eval folding, running
 * updates and parameter names (`weight`, `bias`, `running_mean`, `running_var`).
 */
export function batchNorm1d(c: Ctx, name: string, x: Tensor, o: BatchNormOpts = {}): Tensor {
  if (x.rank !== 2 && x.rank !== 3) {
    throw new Error(`batchNorm1d: expects x [B, C] or [B, C, L], got ${x}`);
  }
  const [B, C, L = 1] = x.shape;
  return reshape(batchNorm2d(c, name, reshape(x, [B, C, L, 1]), o), x.shape);
}
