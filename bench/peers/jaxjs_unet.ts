/**
 * Peer benchmark: one "unet-small" training step (forward, balanced BCE + dice loss, backward,
 * Adam update, BatchNorm running statistics) written with jax-js, timed on its webgpu or wasm
 * device.
 *
 * The network, initialisation ranges, loss and optimiser settings are those of `tfjs_unet.ts` and
 * `torch_unet.py`. jax-js follows JAX's `lax.conv_general_dilated`, whose layout is NCHW with
 * OIHW kernels, so the network runs in PyTorch's layout. The whole step, Adam and the running
 * statistics included, is one `jit`-compiled function of (params, optimiser state, BN state, x, y)
 * that returns the new state and the loss: `jit` fuses elementwise ops into kernels and records
 * the step's dispatches once, which jax-js's README recommends for long op sequences on a GPU.
 *
 * What jax-js provides, and what is written out here:
 * - conv: `lax.conv` ("SAME" 3x3, 1x1), split into bands of rows on maps over 32,768 pixels
 *   ({@link convSame}), because jax-js's conv weight gradient is wrong on maps over ~46,341 pixels.
 * - conv transpose (2x2, stride 2): written as a matmul and a pixel shuffle ({@link upsample2x2}),
 *   because `lax.convTranspose` computes wrong values on jax-js's WebGPU device.
 * - max pool: no dedicated op; `lax.reduceWindow(x, np.max, [2, 2], [2, 2])`, the pooling jax-js's
 *   own MNIST demo uses. Its gradient splits evenly between tied maxima (as JAX's does) where
 *   PyTorch and TF.js pick one; ties are windows of ReLU zeros, whose gradient ReLU drops anyway.
 * - BatchNorm: no layer library; batch moments by `mean` over (N, H, W), biased variance for
 *   normalising and unbiased for the running average, as PyTorch's training mode does. The batch
 *   moments leave the differentiated function as `valueAndGrad`'s aux output.
 * - Adam: written out (PyTorch's and TF.js's form, bias-corrected moments, eps outside the square
 *   root) inside the jitted step, so model and optimiser compile into one program and no second
 *   package (`@jax-js/optax`) is needed.
 *
 * jax-js arrays are reference-counted and every op consumes its arguments: an array used twice is
 * passed as `a.ref` first (see the package README), which is why `.ref` appears below.
 *
 * CLI: `deno run -A --no-lock bench/peers/jaxjs_unet.ts --backend webgpu --size 64 --batch 2`
 * prints one JSON line; every step's loss and the first step's time (tracing and kernel
 * compilation) go to stderr.
 *
 * @module
 */

import {
  errorText,
  type PeerResult,
  timeSteps,
  unetPeerArgs,
  type UnetPeerOptions,
} from "./types.ts";

export type { PeerResult };

/** Options for {@link benchJaxjsUnet}. */
export type JaxjsUnetOptions = UnetPeerOptions;

// Pinned to the release measured: jax-js is pre-1.0, and the WebGPU workaround in upsample2x2 is
// specific to it.
type Jax = typeof import("npm:@jax-js/jax@0.1.25");
type Arr = import("npm:@jax-js/jax@0.1.25").Array;

const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;
const LR = 1e-3;
const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;

// JsTree shapes: `type` aliases, not interfaces, so jax-js's tree types map over them.
type Cbr = { w: Arr; b: Arr; gamma: Arr; beta: Arr };
type UpStage = { wt: Arr; bt: Arr; conv: Cbr[] };
type Params = { inc: Cbr[]; downs: Cbr[][]; ups: UpStage[]; outW: Arr; outB: Arr };
/** Running statistics of each BatchNorm, in the order the forward pass visits them. */
type BnState = { mean: Arr; variance: Arr }[];
type AdamState = { m: Params; v: Params; t: Arr };
type State = { params: Params; adam: AdamState; bn: BnState };
type StepOut = State & { loss: Arr };

/**
 * Builds the parameters. Weights and biases are drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * PyTorch's default range, as the other peers do; kernels are in PyTorch's layouts (conv
 * [C_out, C_in, kh, kw], conv transpose [C_in, C_out, kh, kw]).
 */
function buildNet(jax: Jax): { params: Params; bn: BnState; count: number } {
  const np = jax.numpy;
  let seed = 1234;
  let count = 0;
  const uniform = (shape: number[], fanIn: number): Arr => {
    const bound = 1 / Math.sqrt(fanIn);
    const v = jax.random.uniform(jax.random.key(seed++), shape, { minval: -bound, maxval: bound });
    count += v.size;
    return v;
  };
  const bn: BnState = [];
  const cbr = (cin: number, cout: number): Cbr => {
    // Running statistics are state, not parameters: not trained and not counted.
    bn.push({ mean: np.zeros([cout]), variance: np.ones([cout]) });
    count += 2 * cout;
    return {
      w: uniform([cout, cin, 3, 3], cin * 9),
      b: uniform([cout], cin * 9),
      gamma: np.ones([cout]),
      beta: np.zeros([cout]),
    };
  };
  const double = (cin: number, cout: number): Cbr[] => [cbr(cin, cout), cbr(cout, cout)];

  const inc = double(3, 16);
  const downs = [double(16, 32), double(32, 64), double(64, 128)];
  const ups: UpStage[] = [128, 64, 32].map((cin) => {
    const cout = cin / 2;
    // PyTorch's ConvTranspose2d computes fan_in from weight dim 1 (out channels) * k * k.
    const fanIn = cout * 4;
    return {
      wt: uniform([cin, cout, 2, 2], fanIn),
      bt: uniform([cout], fanIn),
      conv: double(cin, cout),
    };
  });
  const outW = uniform([1, 16, 1, 1], 16);
  const outB = uniform([1], 16);
  return { params: { inc, downs, ups, outW, outB }, bn, count };
}

/** A [C] vector as [1, C, 1, 1], to broadcast over NCHW. */
const chan = (v: Arr): Arr => v.reshape([1, v.shape[0], 1, 1]);

/** Batch moments of one BatchNorm for its running averages: mean and unbiased variance, [C]. */
type Moments = { mean: Arr; variance: Arr };

/**
 * PyTorch's ConvTranspose2d(kernel 2, stride 2) on NCHW `x` with a [C_in, C_out, 2, 2] kernel.
 * With kernel = stride the output pixels do not overlap: out[n, o, 2i+p, 2j+q] =
 * sum_c x[n, c, i, j] * w[c, o, p, q], one [N*H*W, C_in] x [C_in, C_out*4] matmul and a
 * pixel shuffle. `lax.convTranspose(x, w, [2, 2], "VALID", { transposeKernel: true })` means the
 * same, but jax-js 0.1.25's WebGPU code generator emits a wrong shader for that lhs-dilated
 * convolution at this network's 32- and 16-channel stages (about half the outputs wrong; the
 * wasm device is right), so the step is written with the matmul on every device.
 */
function upsample2x2(jax: Jax, x: Arr, w: Arr): Arr {
  const np = jax.numpy;
  const [n, cin, h, wd] = x.shape;
  const cout = w.shape[1];
  const rows = x.transpose([0, 2, 3, 1]).reshape([n * h * wd, cin]);
  const y = np.matmul(rows, w.reshape([cin, cout * 4])); // [N*H*W, C_out*2*2]
  return y.reshape([n, h, wd, cout, 2, 2]).transpose([0, 3, 1, 4, 2, 5])
    .reshape([n, cout, 2 * h, 2 * wd]);
}

/**
 * Largest feature map (H * W pixels) that jax-js 0.1.25 convolves with a correct weight gradient.
 * Above sqrt(2^31) ~ 46,341 pixels the weight gradient of `lax.conv` is wrong on the wasm and
 * WebGPU devices alike (208x208 right, 216x216 wrong; PyTorch as the reference), which looks
 * like int32 overflow in the generated index arithmetic. 32,768 leaves a margin.
 */
const MAX_CONV_PIXELS = 32768;

/**
 * A stride-1 "SAME" convolution with an odd k x k kernel (`lax.conv(x, w, [1, 1], "SAME")`).
 * Maps larger than {@link MAX_CONV_PIXELS} (the 224x224 level of the 224x224 row) are padded once
 * and convolved in bands of rows, each with its (k - 1)-row halo, then concatenated: the same
 * values, and each band's weight gradient stays below the size where jax-js gets it wrong.
 */
function convSame(jax: Jax, x: Arr, w: Arr): Arr {
  const { numpy: np, lax } = jax;
  const [, , h, wd] = x.shape;
  if (h * wd <= MAX_CONV_PIXELS) return lax.conv(x, w, [1, 1], "SAME");
  const k = w.shape[2];
  const half = (k - 1) / 2;
  const bands = Math.ceil((h * wd) / MAX_CONV_PIXELS);
  const rows = Math.ceil(h / bands);
  const xp = np.pad(x, [[0, 0], [0, 0], [half, half], [half, half]]);
  const outs: Arr[] = [];
  for (let r0 = 0; r0 < h; r0 += rows) {
    const band = xp.ref.slice([], [], [r0, Math.min(h, r0 + rows) + 2 * half], []);
    outs.push(lax.conv(band, w.ref, [1, 1], "VALID"));
  }
  xp.dispose();
  w.dispose();
  return np.concatenate(outs, 2);
}

function forward(jax: Jax, p: Params, x: Arr, stats: Moments[]): Arr {
  const { numpy: np, lax, nn } = jax;
  const cbrF = (l: Cbr, h: Arr): Arr => {
    const z = convSame(jax, h, l.w).add(chan(l.b));
    const [n, c, hh, ww] = z.shape;
    const count = n * hh * ww;
    const mean = z.ref.mean([0, 2, 3], { keepdims: true });
    const centred = z.sub(mean.ref);
    // Biased variance normalises; the running average takes the unbiased one, as in PyTorch.
    const variance = np.square(centred.ref).mean([0, 2, 3], { keepdims: true });
    stats.push({
      mean: mean.reshape([c]),
      variance: variance.ref.reshape([c]).mul(count / Math.max(count - 1, 1)),
    });
    const normed = centred.div(np.sqrt(variance.add(BN_EPS)));
    return nn.relu(normed.mul(chan(l.gamma)).add(chan(l.beta)));
  };
  const doubleF = (d: Cbr[], h: Arr) => cbrF(d[1], cbrF(d[0], h));
  const pool = (h: Arr) => lax.reduceWindow(h, np.max, [2, 2], [2, 2]);

  const x1 = doubleF(p.inc, x);
  const x2 = doubleF(p.downs[0], pool(x1.ref));
  const x3 = doubleF(p.downs[1], pool(x2.ref));
  let h = doubleF(p.downs[2], pool(x3.ref));
  const skips = [x3, x2, x1];
  p.ups.forEach((stage, k) => {
    const u = upsample2x2(jax, h, stage.wt).add(chan(stage.bt));
    h = doubleF(stage.conv, np.concatenate([u, skips[k]], 1));
  });
  const logits = convSame(jax, h, p.outW).add(chan(p.outB));
  return nn.sigmoid(logits);
}

/** 0.5 * dice + 0.5 * class-balanced BCE, matching the project's segmentation loss. */
function lossFn(jax: Jax, p: Arr, y: Arr): Arr {
  const np = jax.numpy;
  const batch = p.shape[0];
  const pf = p.ref.reshape([-1]);
  const yf = y.ref.reshape([-1]);
  const logP = np.maximum(np.log(pf.ref), -100);
  const log1mP = np.maximum(np.log(np.subtract(1, pf)), -100);
  const bce = np.negative(
    yf.ref.mul(logP).add(np.subtract(1, yf.ref).mul(log1mP)),
  );
  const pos = np.greater(yf.ref, 0.5).astype(np.float32);
  const neg = np.less(yf, 0.5).astype(np.float32);
  const posTerm = bce.ref.mul(pos.ref).sum().div(pos.sum().add(1e-12));
  const negTerm = bce.mul(neg.ref).sum().div(neg.sum().add(1e-12));
  const bceBal = posTerm.mul(0.5).add(negTerm.mul(0.5));

  const pi = p.reshape([batch, -1]);
  const yi = y.reshape([batch, -1]);
  const inter = pi.ref.mul(yi.ref).sum(1);
  const denom = np.square(pi).sum(1).add(np.square(yi).sum(1)).add(4e-5);
  const dice = np.subtract(1, inter.mul(2).add(4e-5).div(denom)).mean();
  return dice.mul(0.5).add(bceBal.mul(0.5));
}

/**
 * The training step as one function of the state, for `jit`: loss and gradients, Adam (PyTorch's
 * update: m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)), and the BatchNorm running averages with
 * unbiased variance. Consumes every argument once.
 */
function makeStep(jax: Jax) {
  const { numpy: np, tree } = jax;
  const objective = (params: Params, x: Arr, y: Arr): [Arr, Moments[]] => {
    const stats: Moments[] = [];
    const loss = lossFn(jax, forward(jax, params, x, stats), y);
    return [loss, stats];
  };
  return (s: State, x: Arr, y: Arr): StepOut => {
    const [[loss, stats], grads] = jax.valueAndGrad(objective, { hasAux: true })(
      tree.ref(s.params),
      x,
      y,
    );
    const [ps, def] = tree.flatten(s.params);
    const [gs] = tree.flatten(grads);
    const [ms] = tree.flatten(s.adam.m);
    const [vs] = tree.flatten(s.adam.v);
    const t = s.adam.t.add(1);
    // 1 - beta^t as exp(t ln beta), so the step count stays on the device.
    const bc1 = np.subtract(1, np.exp(t.ref.mul(Math.log(BETA1))));
    const bc2 = np.subtract(1, np.exp(t.ref.mul(Math.log(BETA2))));
    const newP: Arr[] = [];
    const newM: Arr[] = [];
    const newV: Arr[] = [];
    ps.forEach((p, i) => {
      const g = gs[i];
      const m = ms[i].mul(BETA1).add(g.ref.mul(1 - BETA1));
      const v = vs[i].mul(BETA2).add(np.square(g).mul(1 - BETA2));
      const denom = np.sqrt(v.ref.div(bc2.ref)).add(ADAM_EPS);
      newP.push(p.sub(m.ref.div(bc1.ref).div(denom).mul(LR)));
      newM.push(m);
      newV.push(v);
    });
    bc1.dispose();
    bc2.dispose();

    const bn: BnState = s.bn.map((r, i) => ({
      mean: r.mean.mul(1 - BN_MOMENTUM).add(stats[i].mean.mul(BN_MOMENTUM)),
      variance: r.variance.mul(1 - BN_MOMENTUM).add(stats[i].variance.mul(BN_MOMENTUM)),
    }));
    const unflat = (xs: Arr[]) => tree.unflatten(def, xs) as Params;
    return {
      params: unflat(newP),
      adam: { m: unflat(newM), v: unflat(newV), t },
      bn,
      loss,
    };
  };
}

async function loadJax(backend: "webgpu" | "wasm"): Promise<Jax> {
  // Peers are optional, bench-only dependencies, hence pinned inline rather than in the
  // project's import map.
  // deno-lint-ignore no-import-prefix
  const jax = await import("npm:@jax-js/jax@0.1.25");
  if (backend === "webgpu" && !(navigator as Navigator & { gpu?: unknown }).gpu) {
    throw new Error("navigator.gpu is unavailable (run Deno with --unstable-webgpu)");
  }
  // Only the device asked for: a bare `init()` also probes webgl, which never settles in Deno.
  const got = await jax.init(backend);
  if (!got.includes(backend)) {
    throw new Error(`init("${backend}") started only [${got.join(", ")}]`);
  }
  jax.defaultDevice(backend);
  return jax;
}

/**
 * Times the unet-small training step in jax-js. Each timed step ends with a read-back of the
 * loss; every output of a jitted call shares the call's pending kernels, so the read submits the
 * whole step and waits for it on the device's in-order queue.
 *
 * Never throws for environment problems: a missing package, absent WebGPU, or a step that jax-js
 * cannot trace, compile or run yields `{ ok: false, reason }`.
 */
export async function benchJaxjsUnet(opts: JaxjsUnetOptions): Promise<PeerResult> {
  return (await runJaxjsUnet(opts)).result;
}

async function runJaxjsUnet(
  opts: JaxjsUnetOptions,
): Promise<{ result: PeerResult; params?: number; losses?: number[]; firstMs?: number }> {
  const { backend, size, batch, warmup, runs } = opts;
  const fail = (reason: string) => ({ result: { ok: false as const, reason } });
  if (size % 8 !== 0) return fail(`size ${size} is not divisible by 8`);
  if (runs < 1) return fail("runs must be >= 1");

  let jax: Jax;
  try {
    jax = await loadJax(backend);
  } catch (e) {
    return fail(`jax-js ${backend} unavailable: ${errorText(e)}`);
  }
  const { numpy: np, random, tree } = jax;

  let state: State;
  let count: number;
  let x: Arr;
  let y: Arr;
  try {
    const net = buildNet(jax);
    count = net.count;
    const zeros = () => tree.map((p: Arr) => np.zerosLike(p.ref), net.params) as Params;
    state = { params: net.params, adam: { m: zeros(), v: zeros(), t: np.array(0) }, bn: net.bn };
    x = random.uniform(random.key(7), [batch, 3, size, size]);
    y = np.greater(random.uniform(random.key(8), [batch, 1, size, size]), 0.5).astype(np.float32);
  } catch (e) {
    return fail(`jax-js ${backend} could not build the network: ${errorText(e)}`);
  }
  const trainStep = jax.jit(makeStep(jax));
  const losses: number[] = [];

  const step = async (): Promise<number> => {
    const out = trainStep(state, x.ref, y.ref);
    const { loss, ...next } = out;
    state = next;
    const value = (await loss.data())[0];
    losses.push(value);
    return value;
  };

  try {
    // A first step doubles as the capability probe: tracing, differentiation and kernel
    // compilation all happen in it.
    let firstMs: number;
    try {
      const t0 = performance.now();
      const first = await step();
      firstMs = performance.now() - t0;
      if (!Number.isFinite(first)) throw new Error(`non-finite loss ${first}`);
    } catch (e) {
      return fail(`jax-js ${backend} training step failed: ${errorText(e)}`);
    }
    for (let i = 1; i < warmup; i++) await step();

    const result = await timeSteps(step, runs);
    return { result, params: count, losses, firstMs };
  } finally {
    try {
      tree.dispose(state);
      x.dispose();
      y.dispose();
      trainStep.dispose();
    } catch {
      // A failed step may have consumed the state already; nothing is left to free then.
    }
  }
}

if (import.meta.main) {
  const opts = unetPeerArgs(Deno.args);
  const backend = opts.backend;
  const { result, params, losses, firstMs } = await runJaxjsUnet(opts);
  if (losses) {
    console.error(`jaxjs_unet: losses ${losses.map((l) => l.toFixed(4)).join(" ")}`);
    console.error(`jaxjs_unet: first step (trace + compile) ${firstMs?.toFixed(0)} ms`);
  }
  console.log(JSON.stringify({ backend, ...result, params }));
  // jax-js's wasm device keeps a pool of worker threads alive: leave explicitly.
  Deno.exit(0);
}
