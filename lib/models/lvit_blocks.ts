/**
 * The building blocks of LViT (lvit-reference.md 1.2): BN with the reference's state_dict
 * entries, Conv1d, the CTBN family, the ViT object (patch embedding, pre-norm blocks), Reconstruct
 * and PLAM, plus registration-only helpers for the modules the reference defines but never runs
 * (1.5), which must exist for the state_dict to match (1.9).
 */
import {
  add,
  assign,
  concat,
  conv2d,
  dropout,
  gelu,
  type Graph,
  type InitSpec,
  layerNorm,
  linear,
  matmul,
  maxAxis,
  mean,
  mul,
  permute,
  relu,
  reshape,
  slice,
  softmax,
  type Tensor,
  torchDefault,
  upsampleNearest2d,
} from "../graph/mod.ts";
import { batchNorm1d, batchNorm2d, cbr, conv1dLayer, conv2dLayer, type Ctx } from "../nn/layers.ts";

/** Layer context plus what dropout needs: its rate, the step input and the model seed. */
export interface LCtx extends Ctx {
  /** Dropout probability of the ViT branch; 0 (or evaluation mode) disables it. */
  dropout: number;
  /** Seed mixed into every dropout site's key. */
  seed: number;
  /** Register the reference's unused modules (default true; checkpoint compatibility). */
  registerUnused: boolean;
}

/** Name of the [1] input holding the training step, which keys the dropout masks. */
export const STEP_INPUT = "train.step";

const ZERO: InitSpec = { kind: "const", value: 0 };
const ONE: InitSpec = { kind: "const", value: 1 };

// ---------------------------------------------------------------------------------------------
// Normalisation with the full set of state_dict entries

/**
 * `num_batches_tracked` as a float32 [1] state (exact up to 2^24 steps): the engine has only f32
 * buffers, and the reference never reads it (momentum is fixed at 0.1); it exists so that the
 * state_dict has all 541 entries. In training it counts steps, as PyTorch does.
 */
export function trackBatches(c: Ctx, name: string): void {
  const n = c.g.state(`${name}.num_batches_tracked`, [1], ZERO);
  if (c.training) c.g.withScope(name, () => assign(n, add(n, 1)));
}

/** nn.BatchNorm2d (+ optional ReLU) with its num_batches_tracked entry. */
export function bn2d(c: Ctx, name: string, x: Tensor, withRelu: boolean): Tensor {
  const y = batchNorm2d(c, name, x, { relu: withRelu });
  trackBatches(c, name);
  return y;
}

/** The reference's ConvBatchNorm: 3x3 conv -> BN -> ReLU, state_dict complete. */
export function cbrBlock(c: Ctx, name: string, x: Tensor, cout: number): Tensor {
  const y = cbr(c, name, x, cout);
  trackBatches(c, `${name}.norm`);
  return y;
}

/** nn.BatchNorm1d on [B, C, L] (+ optional ReLU) with its num_batches_tracked entry. */
export function bn1d(c: Ctx, name: string, x: Tensor, withRelu: boolean): Tensor {
  const y = c.g.withScope(name, () => batchNorm1d(c, name, x, { relu: withRelu }));
  trackBatches(c, name);
  return y;
}

/** nn.Conv1d(cin, cout, k 3, padding 1) on [B, Cin, L], weight [Cout, Cin, 3]. */
export function conv1d(c: Ctx, name: string, x: Tensor, cout: number): Tensor {
  return conv1dLayer(c, name, x, cout, 3, 1);
}

// ---------------------------------------------------------------------------------------------
// Registration of modules that exist in the state_dict but never run (lvit-reference.md 1.5)

/** Parameters of an unused nn.Conv{1,2}d: weight [cout, cin, ...kernel] and optional bias. */
export function registerConv(
  g: Graph,
  name: string,
  cout: number,
  cin: number,
  kernel: number[],
  bias = true,
): void {
  const init = torchDefault(cin * kernel.reduce((a, b) => a * b, 1));
  g.param(`${name}.weight`, [cout, cin, ...kernel], init);
  if (bias) g.param(`${name}.bias`, [cout], init);
}

/** Parameters and states of an unused BatchNorm (weight, bias, running stats, counter). */
export function registerBN(g: Graph, name: string, C: number): void {
  g.param(`${name}.weight`, [C], ONE);
  g.param(`${name}.bias`, [C], ZERO);
  g.state(`${name}.running_mean`, [C], ZERO);
  g.state(`${name}.running_var`, [C], ONE);
  g.state(`${name}.num_batches_tracked`, [1], ZERO);
}

/** Parameters of an unused nn.Linear(cin, cout). */
export function registerLinear(g: Graph, name: string, cout: number, cin: number): void {
  const init = torchDefault(cin);
  g.param(`${name}.weight`, [cout, cin], init);
  g.param(`${name}.bias`, [cout], init);
}

/** Parameters of an unused nn.LayerNorm(C). */
export function registerLN(g: Graph, name: string, C: number): void {
  g.param(`${name}.weight`, [C], ONE);
  g.param(`${name}.bias`, [C], ZERO);
}

/** A CTBN-family module (Conv1d + BatchNorm1d) that is registered but not run. */
function registerCtbn(g: Graph, name: string, cout: number, cin: number): void {
  registerConv(g, `${name}.conv`, cout, cin, [3]);
  registerBN(g, `${name}.norm`, cout);
}

// ---------------------------------------------------------------------------------------------
// Small layers

/** nn.Linear with PyTorch's default initialisation (or `init` for weight and bias). */
export function linearLayer(
  c: Ctx,
  name: string,
  x: Tensor,
  cout: number,
  init?: { weight: InitSpec; bias: InitSpec },
): Tensor {
  const cin = x.shape[x.rank - 1];
  const w = c.g.param(`${name}.weight`, [cout, cin], init?.weight ?? torchDefault(cin));
  const b = c.g.param(`${name}.bias`, [cout], init?.bias ?? torchDefault(cin));
  return c.g.withScope(name, () => linear(x, w, b));
}

/** nn.LayerNorm(C) over the last axis, eps 1e-5. */
export function layerNormLayer(c: Ctx, name: string, x: Tensor): Tensor {
  const C = x.shape[x.rank - 1];
  const gamma = c.g.param(`${name}.weight`, [C], ONE);
  const beta = c.g.param(`${name}.bias`, [C], ZERO);
  return c.g.withScope(name, () => layerNorm(x, gamma, beta, 1e-5));
}

/** A 32-bit FNV-1a hash: a stable per-site dropout key derived from the module name. */
function siteKey(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * nn.Dropout(p) at a named site: identity in evaluation or with p = 0; in training the mask is
 * keyed by (model seed, site, step), so every site and every step draws independent masks.
 */
export function dropoutSite(c: LCtx, name: string, x: Tensor): Tensor {
  if (!c.training || c.dropout <= 0) return x;
  const step = c.g.get(STEP_INPUT) ?? c.g.input(STEP_INPUT, [1]);
  const seed = (siteKey(name) ^ c.seed) >>> 0;
  return c.g.withScope(name, () => dropout(x, step, { p: c.dropout, seed }));
}

/** [B, T, C] tokens <-> [B, C, T] channel-first, as torch's transpose(1, 2). */
export const swapTC = (x: Tensor): Tensor => permute(x, [0, 2, 1]);

// ---------------------------------------------------------------------------------------------
// ViT

/** Shape-defining settings of one ViT object. */
export interface VitOptions {
  /** Embedding width C_l. */
  dim: number;
  /** Patch size p_l (kernel = stride of the patch embedding). */
  patch: number;
  /** Number of tokens (grid^2). */
  tokens: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** Rows of the text tensor (the Conv1d input channels of CTBN3). */
  textTokens: number;
}

/** Multi-head self-attention with qkv laid out [q | k | v], each head-major. */
function attention(c: LCtx, name: string, x: Tensor, heads: number): Tensor {
  const [B, N, C] = x.shape;
  const d = C / heads;
  const qkv = linearLayer(c, `${name}.qkv`, x, 3 * C);
  const o = c.g.withScope(name, () => {
    // [B, N, C] slice of qkv -> [B*H, N, d], head-major within the slice as the reference's
    // reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4).
    const heads4 = (k: number) =>
      reshape(permute(reshape(slice(qkv, 2, k * C, C), [B, N, heads, d]), [0, 2, 1, 3]), [
        B * heads,
        N,
        d,
      ]);
    const q = heads4(0), kk = heads4(1), v = heads4(2);
    const att = softmax(mul(matmul(q, kk, { transB: true }), Math.pow(d, -0.5)));
    const ctx = reshape(matmul(att, v), [B, heads, N, d]);
    return reshape(permute(ctx, [0, 2, 1, 3]), [B, N, C]);
  });
  return linearLayer(c, `${name}.proj`, o, C);
}

/** The MLP of a block: fc1 -> GELU -> Dropout -> fc2 -> GELU -> Dropout (the doubled GELU). */
function mlp(c: LCtx, name: string, x: Tensor, hidden: number): Tensor {
  const C = x.shape[x.rank - 1];
  // Xavier-uniform weights and N(0, 1e-6) biases, as the reference's Mlp._init_weights.
  const xavier = (fi: number, fo: number): InitSpec => ({
    kind: "uniform",
    bound: Math.sqrt(6 / (fi + fo)),
  });
  const tiny: InitSpec = { kind: "normal", std: 1e-6 };
  let h = linearLayer(c, `${name}.fc1`, x, hidden, { weight: xavier(C, hidden), bias: tiny });
  h = c.g.withScope(`${name}.act`, () => gelu(h));
  h = dropoutSite(c, `${name}.drop1`, h);
  h = linearLayer(c, `${name}.fc2`, h, C, { weight: xavier(hidden, C), bias: tiny });
  h = c.g.withScope(`${name}.act2`, () => gelu(h));
  return dropoutSite(c, `${name}.drop2`, h);
}

/** Pre-norm block: x + MHSA(LN1(x)), then x + MLP(LN2(x)); DropPath is 0. */
function block(c: LCtx, name: string, x: Tensor, o: VitOptions): Tensor {
  const a = attention(c, `${name}.attn`, layerNormLayer(c, `${name}.norm1`, x), o.heads);
  const x1 = c.g.withScope(name, () => add(x, a));
  const m = mlp(c, `${name}.mlp`, layerNormLayer(c, `${name}.norm2`, x1), o.dim * o.mlpRatio);
  return c.g.withScope(name, () => add(x1, m));
}

/** The ViT's Encoder_blocks (a Sequential of `depth` blocks). */
export function vitBlocks(c: LCtx, vit: string, x: Tensor, o: VitOptions): Tensor {
  for (let i = 0; i < o.depth; i++) x = block(c, `${vit}.Encoder_blocks.${i}`, x, o);
  return x;
}

/**
 * Patch embedding: conv (kernel = stride = p), row-major flatten to [B, T, C], + position
 * embedding (zero-initialised), dropout.
 */
export function embed(c: LCtx, vit: string, x: Tensor, o: VitOptions): Tensor {
  const name = `${vit}.embeddings`;
  const pe = conv2dLayer(c, `${name}.patch_embeddings`, x, o.dim, o.patch, { stride: o.patch });
  const pos = c.g.param(`${name}.position_embeddings`, [1, o.tokens, o.dim], ZERO);
  const [B, C, H, W] = pe.shape;
  const tok = c.g.withScope(name, () => add(swapTC(reshape(pe, [B, C, H * W])), pos));
  return dropoutSite(c, `${name}.dropout`, tok);
}

/** Registers the patch embedding and position embedding of a ViT whose embedding never runs. */
export function registerEmbed(g: Graph, vit: string, o: VitOptions): void {
  registerConv(g, `${vit}.embeddings.patch_embeddings`, o.dim, o.dim, [o.patch, o.patch]);
  g.param(`${vit}.embeddings.position_embeddings`, [1, o.tokens, o.dim], ZERO);
}

/** Which of a ViT object's optional submodules a forward uses (the rest are only registered). */
export interface VitUse {
  embed: boolean;
  ctbn: boolean;
  ctbn2: boolean;
  ctbn3: boolean;
}

/**
 * Registers a ViT object's modules that this forward does not run: the final `norm`, the `head`,
 * and whichever of embeddings / CTBN / CTBN2 / CTBN3 are unused.
 */
export function registerVitRest(c: LCtx, vit: string, o: VitOptions, use: VitUse): void {
  if (!c.registerUnused) return;
  const g = c.g;
  if (!use.embed) registerEmbed(g, vit, o);
  registerLN(g, `${vit}.norm`, o.dim);
  registerLinear(g, `${vit}.head`, 1, o.dim);
  if (!use.ctbn) registerCtbn(g, `${vit}.CTBN`, o.dim / 2, o.dim);
  if (!use.ctbn2) registerCtbn(g, `${vit}.CTBN2`, o.dim, 2 * o.dim);
  if (!use.ctbn3) registerCtbn(g, `${vit}.CTBN3`, o.tokens, o.textTokens);
}

/**
 * CTBN / CTBN2 on tokens [B, T, Cin] -> [B, T, cout]: Conv1d(k 3, pad 1) along the T axis of
 * the transposed tokens, so it slides over the raster order and mixes the last token of a row
 * with the first of the next (a reference quirk, kept), then BatchNorm1d and ReLU.
 */
export function ctbnTokens(c: Ctx, name: string, x: Tensor, cout: number): Tensor {
  const y = conv1d(c, `${name}.conv`, c.g.withScope(name, () => swapTC(x)), cout);
  const z = bn1d(c, `${name}.norm`, y, true);
  return c.g.withScope(name, () => swapTC(z));
}

/**
 * CTBN3 on text [B, words, C]: the words are the Conv1d's input channels and the tokens its
 * outputs, sliding along the C-long embedding axis; BatchNorm1d(T) then normalises per token.
 */
export function ctbn3(c: Ctx, name: string, text: Tensor, tokens: number): Tensor {
  return bn1d(c, `${name}.norm`, conv1d(c, `${name}.conv`, text, tokens), true);
}

// ---------------------------------------------------------------------------------------------
// Reconstruct and PLAM

/** Tokens [B, T, C] -> [B, C, g, g] -> nearest x f -> 1x1 conv -> BN -> ReLU. */
export function reconstruct(c: Ctx, name: string, x: Tensor, f: number): Tensor {
  const [B, T, C] = x.shape;
  const side = Math.round(Math.sqrt(T));
  const up = c.g.withScope(
    name,
    () => upsampleNearest2d(reshape(swapTC(x), [B, C, side, side]), f),
  );
  return bn2d(c, `${name}.norm`, conv2dLayer(c, `${name}.conv`, up, C, 1), true);
}

/**
 * PixLevelModule without sigmoid: per-pixel mean of ReLU(conv_avg(S)) and max of
 * ReLU(conv_max(S)) over channels, stacked (a, m, a + m), a per-pixel MLP 3 -> 6 -> 1 (run as
 * 1x1 convolutions with the Linear weights), and S times that unbounded gain.
 */
export function plam(c: LCtx, name: string, s: Tensor): Tensor {
  const C = s.shape[1];
  const A = conv2dLayer(c, `${name}.conv_avg`, s, C, 1, { bias: false });
  const a = c.g.withScope(`${name}.relu_avg`, () => mean(relu(A), [1]));
  const M = conv2dLayer(c, `${name}.conv_max`, s, C, 1, { bias: false });
  const m = c.g.withScope(`${name}.relu_max`, () => maxAxis(relu(M), 1));
  const feats = c.g.withScope(name, () => concat([a, m, add(a, m)], 1));
  const pix = (lin: string, x: Tensor, cout: number, act: boolean) => {
    const cin = x.shape[1];
    const w = c.g.param(`${lin}.weight`, [cout, cin], torchDefault(cin));
    const b = c.g.param(`${lin}.bias`, [cout], torchDefault(cin));
    return c.g.withScope(lin, () => {
      const y = conv2d(x, reshape(w, [cout, cin, 1, 1]), b, { padding: 0, stride: 1, dilation: 1 });
      return act ? relu(y) : y;
    });
  };
  const gain = pix(`${name}.bottleneck.2`, pix(`${name}.bottleneck.0`, feats, 6, true), 1, false);
  if (c.registerUnused) registerConv(c.g, `${name}.conv_sig.0`, C, C, [1, 1]);
  return c.g.withScope(name, () => mul(s, gain));
}

/** Registers a whole PLAM that never runs (the top-level pix_module1..4, or plam: false). */
export function registerPlam(g: Graph, name: string, C: number): void {
  registerConv(g, `${name}.conv_avg`, C, C, [1, 1], false);
  registerConv(g, `${name}.conv_max`, C, C, [1, 1], false);
  registerLinear(g, `${name}.bottleneck.0`, 6, 3);
  registerLinear(g, `${name}.bottleneck.2`, 1, 6);
  registerConv(g, `${name}.conv_sig.0`, C, C, [1, 1]);
}

/** The image-derived text substitute: 10 contiguous chunk means of the tokens [B, T, C]. */
export function tokenChunks(x: Tensor, rows: number): Tensor {
  const T = x.shape[1];
  const parts: Tensor[] = [];
  for (let r = 0; r < rows; r++) {
    const start = Math.floor((r * T) / rows);
    const end = Math.floor(((r + 1) * T) / rows);
    parts.push(mean(slice(x, 1, start, Math.max(1, end - start)), [1]));
  }
  return concat(parts, 1);
}
