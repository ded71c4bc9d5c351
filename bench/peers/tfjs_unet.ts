/**
 * Peer benchmark: one "unet-small" training step (forward, balanced BCE + dice loss, backward,
 * Adam update) written with TF.js low-level ops, timed on the webgpu or wasm backend.
 *
 * TF.js convolutions are natively NHWC, so the network runs in that layout; the architecture,
 * initialisation ranges, loss and optimiser settings match `torch_unet.py` and our own model.
 *
 * CLI: `deno run -A --unstable-webgpu bench/peers/tfjs_unet.ts --backend webgpu --size 64 --batch 2`
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

/** Options for {@link benchTfjsUnet}. */
export type TfjsUnetOptions = UnetPeerOptions;

type Tf = typeof import("npm:@tensorflow/tfjs@4");
type Tensor = import("npm:@tensorflow/tfjs@4").Tensor;
type Tensor4D = import("npm:@tensorflow/tfjs@4").Tensor4D;
type Variable = import("npm:@tensorflow/tfjs@4").Variable;
type Scalar = import("npm:@tensorflow/tfjs@4").Scalar;

const BN_EPS = 1e-5;
const BN_MOMENTUM = 0.1;

interface Cbr {
  w: Variable;
  b: Variable;
  gamma: Variable;
  beta: Variable;
  runMean: Variable;
  runVar: Variable;
}

interface UpStage {
  wt: Variable;
  bt: Variable;
  conv: [Cbr, Cbr];
}

interface Net {
  inc: [Cbr, Cbr];
  downs: [Cbr, Cbr][];
  ups: UpStage[];
  outW: Variable;
  outB: Variable;
}

/**
 * Builds the network's variables. Weights and biases are drawn from U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), the range PyTorch's default init produces, so both peers start from
 * statistically similar parameters.
 */
function buildNet(tf: Tf): { net: Net; params: number } {
  let seed = 1234;
  let params = 0;
  const uniform = (shape: number[], fanIn: number, name: string): Variable => {
    const bound = 1 / Math.sqrt(fanIn);
    const v = tf.variable(tf.randomUniform(shape, -bound, bound, "float32", seed++), true, name);
    params += v.size;
    return v;
  };
  let id = 0;
  const cbr = (cin: number, cout: number): Cbr => {
    const n = `cbr${id++}`;
    const gamma = tf.variable(tf.ones([cout]), true, `${n}.gamma`);
    const beta = tf.variable(tf.zeros([cout]), true, `${n}.beta`);
    params += 2 * cout;
    return {
      w: uniform([3, 3, cin, cout], cin * 9, `${n}.w`),
      b: uniform([cout], cin * 9, `${n}.b`),
      gamma,
      beta,
      // Running statistics are state, not parameters: not trainable and not counted.
      runMean: tf.variable(tf.zeros([cout]), false, `${n}.runMean`),
      runVar: tf.variable(tf.ones([cout]), false, `${n}.runVar`),
    };
  };
  const double = (cin: number, cout: number): [Cbr, Cbr] => [cbr(cin, cout), cbr(cout, cout)];

  const inc = double(3, 16);
  const downs = [double(16, 32), double(32, 64), double(64, 128)];
  const ups: UpStage[] = [128, 64, 32].map((cin, k) => {
    const cout = cin / 2;
    // PyTorch's ConvTranspose2d computes fan_in from weight dim 1 (out channels) * k * k.
    const fanIn = cout * 4;
    return {
      // conv2dTranspose filters are [kh, kw, outChannels, inChannels].
      wt: uniform([2, 2, cout, cin], fanIn, `up${k}.wt`),
      bt: uniform([cout], fanIn, `up${k}.bt`),
      conv: double(cin, cout),
    };
  });
  const outW = uniform([1, 1, 16, 1], 16, "outc.w");
  const outB = uniform([1], 16, "outc.b");
  return { net: { inc, downs, ups, outW, outB }, params };
}

/** Batch statistics collected during the forward pass, for the running-average update. */
type BnStats = { layer: Cbr; mean: Tensor; variance: Tensor; count: number }[];

function forward(tf: Tf, net: Net, x: Tensor4D, stats: BnStats): Tensor4D {
  const cbrF = (l: Cbr, h: Tensor4D): Tensor4D => {
    const z = tf.add(tf.conv2d(h, l.w as Tensor4D, 1, "same"), l.b) as Tensor4D;
    const { mean, variance } = tf.moments(z, [0, 1, 2]);
    // Kept beyond the tape's tidy scope so the running stats can be updated after the step.
    stats.push({
      layer: l,
      mean: tf.keep(mean),
      variance: tf.keep(variance),
      count: z.shape[0] * z.shape[1] * z.shape[2],
    });
    const normed = tf.div(tf.sub(z, mean), tf.sqrt(tf.add(variance, BN_EPS)));
    return tf.relu(tf.add(tf.mul(normed, l.gamma), l.beta)) as Tensor4D;
  };
  const doubleF = (d: [Cbr, Cbr], h: Tensor4D) => cbrF(d[1], cbrF(d[0], h));
  const pool = (h: Tensor4D) => tf.maxPool(h, 2, 2, "valid");

  const x1 = doubleF(net.inc, x);
  const x2 = doubleF(net.downs[0], pool(x1));
  const x3 = doubleF(net.downs[1], pool(x2));
  let h = doubleF(net.downs[2], pool(x3));
  const skips = [x3, x2, x1];
  net.ups.forEach((stage, k) => {
    const [b, hh, ww] = h.shape;
    const cout = (stage.wt as Tensor4D).shape[2];
    const u = tf.add(
      tf.conv2dTranspose(h, stage.wt as Tensor4D, [b, hh * 2, ww * 2, cout], 2, "valid"),
      stage.bt,
    ) as Tensor4D;
    h = doubleF(stage.conv, tf.concat([u, skips[k]], 3));
  });
  const logits = tf.add(tf.conv2d(h, net.outW as Tensor4D, 1, "valid"), net.outB) as Tensor4D;
  return tf.sigmoid(logits);
}

/** 0.5 * dice + 0.5 * class-balanced BCE, matching the project's segmentation loss. */
function lossFn(tf: Tf, p: Tensor4D, y: Tensor4D): Scalar {
  const batch = p.shape[0];
  const pf = tf.reshape(p, [-1]);
  const yf = tf.reshape(y, [-1]);
  const logP = tf.maximum(tf.log(pf), -100);
  const log1mP = tf.maximum(tf.log(tf.sub(1, pf)), -100);
  const bce = tf.neg(tf.add(tf.mul(yf, logP), tf.mul(tf.sub(1, yf), log1mP)));
  const pos = tf.cast(tf.greater(yf, 0.5), "float32");
  const neg = tf.cast(tf.less(yf, 0.5), "float32");
  const posTerm = tf.div(tf.sum(tf.mul(bce, pos)), tf.add(tf.sum(pos), 1e-12));
  const negTerm = tf.div(tf.sum(tf.mul(bce, neg)), tf.add(tf.sum(neg), 1e-12));
  const bceBal = tf.add(tf.mul(posTerm, 0.5), tf.mul(negTerm, 0.5));

  const pi = tf.reshape(p, [batch, -1]);
  const yi = tf.reshape(y, [batch, -1]);
  const inter = tf.sum(tf.mul(pi, yi), 1);
  const denom = tf.add(tf.add(tf.sum(tf.square(pi), 1), tf.sum(tf.square(yi), 1)), 4e-5);
  const dice = tf.mean(tf.sub(1, tf.div(tf.add(tf.mul(inter, 2), 4e-5), denom)));
  return tf.add(tf.mul(dice, 0.5), tf.mul(bceBal, 0.5)) as Scalar;
}

async function loadTf(backend: "webgpu" | "wasm"): Promise<Tf> {
  // TF.js-webgpu probes `window` to decide it is in a browser-like host; Deno has none.
  (globalThis as Record<string, unknown>).window ??= globalThis;
  // Peers are optional, bench-only dependencies, hence pinned inline rather than in the
  // project's import map. The umbrella package is used instead of tfjs-core alone because
  // core's CommonJS build ships without gradient registrations, and its ESM gradient modules
  // use extensionless imports that Deno cannot resolve.
  // deno-lint-ignore no-import-prefix
  const tf = await import("npm:@tensorflow/tfjs@4");
  if (backend === "webgpu") {
    const gpu = (navigator as Navigator & { gpu?: unknown }).gpu;
    if (!gpu) {
      throw new Error("navigator.gpu is unavailable (run Deno with --unstable-webgpu)");
    }
    // deno-lint-ignore no-import-prefix
    await import("npm:@tensorflow/tfjs-backend-webgpu@4");
  } else {
    // deno-lint-ignore no-import-prefix
    await import("npm:@tensorflow/tfjs-backend-wasm@4");
  }
  if (!(await tf.setBackend(backend))) {
    throw new Error(`tf.setBackend("${backend}") failed to initialise`);
  }
  await tf.ready();
  return tf;
}

/**
 * Times the unet-small training step in TF.js. Each timed step ends with a read-back of the
 * loss, so asynchronous backends are measured to completion.
 *
 * Never throws for environment problems: a missing package, absent WebGPU, or a backend that
 * cannot train this network (TF.js wasm has no Conv2DBackpropFilter kernel) yields
 * `{ ok: false, reason }`.
 */
export async function benchTfjsUnet(opts: TfjsUnetOptions): Promise<PeerResult> {
  return (await runTfjsUnet(opts)).result;
}

async function runTfjsUnet(
  opts: TfjsUnetOptions,
): Promise<{ result: PeerResult; params?: number }> {
  const { backend, size, batch, warmup, runs } = opts;
  const fail = (reason: string) => ({ result: { ok: false as const, reason } });
  if (size % 8 !== 0) return fail(`size ${size} is not divisible by 8`);
  if (runs < 1) return fail("runs must be >= 1");

  let tf: Tf;
  try {
    tf = await loadTf(backend);
  } catch (e) {
    return fail(`TF.js ${backend} unavailable: ${errorText(e)}`);
  }

  const { net, params } = buildNet(tf);
  const x = tf.randomUniform([batch, size, size, 3], 0, 1, "float32", 7) as Tensor4D;
  const y = tf.tidy(() =>
    tf.cast(
      tf.greater(tf.randomUniform([batch, size, size, 1], 0, 1, "float32", 8), 0.5),
      "float32",
    )
  ) as Tensor4D;
  const opt = tf.train.adam(1e-3, 0.9, 0.999, 1e-8);

  const step = async (): Promise<number> => {
    const stats: BnStats = [];
    const loss = opt.minimize(() => lossFn(tf, forward(tf, net, x, stats), y), true);
    // PyTorch's BatchNorm updates running stats (with unbiased variance) in train mode.
    tf.tidy(() => {
      for (const s of stats) {
        const unbiased = tf.mul(s.variance, s.count / Math.max(s.count - 1, 1));
        s.layer.runMean.assign(
          tf.add(tf.mul(s.layer.runMean, 1 - BN_MOMENTUM), tf.mul(s.mean, BN_MOMENTUM)),
        );
        s.layer.runVar.assign(
          tf.add(tf.mul(s.layer.runVar, 1 - BN_MOMENTUM), tf.mul(unbiased, BN_MOMENTUM)),
        );
      }
    });
    for (const s of stats) tf.dispose([s.mean, s.variance]);
    if (!loss) throw new Error("optimizer returned no loss");
    const value = (await loss.data())[0];
    loss.dispose();
    return value;
  };

  try {
    // A first step doubles as the capability probe: missing gradient kernels only surface
    // once backprop actually runs.
    try {
      const first = await step();
      if (!Number.isFinite(first)) throw new Error(`non-finite loss ${first}`);
    } catch (e) {
      const msg = errorText(e);
      const reason = /Conv2DBackpropFilter/.test(msg)
        ? `TF.js ${backend} cannot train conv nets (no Conv2DBackpropFilter kernel): ${msg}`
        : `TF.js ${backend} training step failed: ${msg}`;
      return fail(reason);
    }
    for (let i = 1; i < warmup; i++) await step();

    const result = await timeSteps(step, runs);
    return { result, params };
  } finally {
    opt.dispose();
    tf.disposeVariables();
    tf.dispose([x, y]);
  }
}

if (import.meta.main) {
  const opts = unetPeerArgs(Deno.args);
  const backend = opts.backend;
  const { result, params } = await runTfjsUnet(opts);
  console.log(JSON.stringify({ backend, ...result, params }));
}
