/**
 * UCTransNet (Wang et al., AAAI 2022) as the official code computes it, baselines-reference.md
 * section 1: the reference U-Net encoder (single-CBR `inc`, four Down blocks), the Channel
 * Transformer `mtc` (CCT: per-scale patch embeddings, layers of channel-wise cross attention
 * whose keys and values come from all four scales, Reconstruct + residual onto the encoder
 * features) and a decoder whose skips pass channel cross-attention (CCA) before the concat.
 * State_dict names and order are the official ones (Appendix A: 433 entries, 66,430,657
 * parameters at base width 64), so official checkpoints load by name.
 */
import {
  add,
  concat,
  gelu,
  layerNorm,
  linear,
  matmul,
  maxpool2d,
  mean,
  mul,
  permute,
  relu,
  reshape,
  rsqrt,
  sigmoid,
  softmax,
  square,
  sub,
  type Tensor,
  torchDefault,
  upsampleNearest2d,
} from "../graph/mod.ts";
import { conv2dLayer, type Ctx } from "../nn/layers.ts";
import { cbrBlock, dropoutSite, type LCtx, linearLayer, reconstruct } from "./lvit_blocks.ts";
import { z } from "../deps.ts";
import { bool, expects, int, posInt, rate } from "../config/leaf.ts";
import { checkOptions, defineOptions, type ModelOptions } from "./options.ts";

/** UCTransNet settings; the defaults are the official comparison configuration (Config.py). */
export interface UCTransNetOptions {
  /**
   * Square image side, a multiple of 16: four 2x poolings, and the patch sizes 16/8/4/2 of the
   * four scales all give a (side/16)^2 token grid. The position embeddings' shapes depend on it
   * (the official model is tied to 224).
   */
  imageSize: number;
  /** C0: scale widths C0, 2C0, 4C0, 8C0 (8C0 again at the bottleneck); KV size = 15 C0. */
  baseChannels: number;
  /** Attention heads; each is a full-width projection and their outputs are averaged. */
  heads: number;
  /** Channel-transformer layers (the official num_layers). */
  depth: number;
  /** Hidden width of the per-scale MLPs as a multiple of the scale's width (expand_ratio). */
  mlpRatio: number;
  /** Dropout of the embeddings, attention probabilities and output projections (0.1). */
  dropout: number;
  /** Apply dropout in training (default true); evaluation never drops. */
  dropoutEnabled: boolean;
  /** Seed mixed into the dropout keys. */
  seed: number;
  /** Channels of the output (1: sigmoid probabilities of one mask; more: raw logits). */
  outChannels: number;
}

/** The options as an experiment's `model` section spells them (lib/models/options.ts). */
export const UCTRANSNET_OPTIONS: ModelOptions<UCTransNetOptions> = defineOptions<
  UCTransNetOptions
>({
  imageSize: {
    key: "image_size",
    schema: expects(z.number().int().positive().multipleOf(16), "a positive multiple of 16"),
    default: 224,
    doc: "Square image side: four 2x poolings and patches 16/8/4/2 give (side/16)^2 tokens " +
      "per scale (position-embedding shapes depend on it)",
    unit: "pixels",
  },
  baseChannels: {
    key: "base_channels",
    schema: posInt(),
    default: 64,
    doc: "Width C0 of the first level; deeper levels have 2, 4, 8 and 8 times C0; the " +
      "channel transformer's KV size is 15 C0 (960)",
    unit: "channels",
  },
  heads: {
    key: "heads",
    schema: posInt(),
    default: 4,
    doc: "Channel-attention heads (full-width projections each, outputs averaged)",
  },
  depth: {
    key: "depth",
    schema: posInt(),
    default: 4,
    doc: "Layers of the channel transformer",
  },
  mlpRatio: {
    key: "mlp_ratio",
    schema: posInt(),
    default: 4,
    doc: "Hidden width of the channel transformer's MLPs as a multiple of the scale's width " +
      "(expand_ratio)",
  },
  dropout: {
    key: "dropout",
    schema: rate(),
    default: 0.1,
    doc: "Dropout rate of the channel transformer's embeddings, attention probabilities and " +
      "output projections (its MLPs have none)",
  },
  dropoutEnabled: {
    key: "dropout_enabled",
    schema: bool(),
    default: true,
    doc: "Apply dropout in training (evaluation never drops)",
  },
  seed: { key: "dropout_seed", schema: int(), default: 0, doc: "Seed mixed into the dropout keys" },
  outChannels: {
    key: "out_channels",
    schema: posInt(),
    default: 1,
    doc: "Output channels (1: one binary mask)",
    unit: "channels",
  },
});

/** The official comparison configuration (224x224, base 64, KV 960): the declared defaults. */
export const UCTRANSNET_DEFAULTS: UCTransNetOptions = UCTRANSNET_OPTIONS.defaults;

// All LayerNorms of the channel transformer use eps 1e-6 (the official nn.LayerNorm(..., 1e-6)).
const LN_EPS = 1e-6;
// InstanceNorm2d's default eps, used on the attention scores.
const IN_EPS = 1e-5;
const ZERO = { kind: "const", value: 0 } as const;
const ONE = { kind: "const", value: 1 } as const;

/** nn.LayerNorm(C, eps 1e-6) over the last axis. */
function ln(c: Ctx, name: string, x: Tensor): Tensor {
  const C = x.shape[x.rank - 1];
  const gamma = c.g.param(`${name}.weight`, [C], ONE);
  const beta = c.g.param(`${name}.bias`, [C], ZERO);
  return c.g.withScope(name, () => layerNorm(x, gamma, beta, LN_EPS));
}

/**
 * Channel_Embeddings: conv (kernel = stride = p) to a (S/16)^2 grid, row-major tokens
 * [B, T, C], + position embedding (zeros), dropout. The position embedding is registered first,
 * as the official module defines it first (state_dict order).
 */
function embedding(c: LCtx, name: string, x: Tensor, patch: number): Tensor {
  const C = x.shape[1];
  const grid = x.shape[2] / patch;
  const pos = c.g.param(`${name}.position_embeddings`, [1, grid * grid, C], ZERO);
  const pe = conv2dLayer(c, `${name}.patch_embeddings`, x, C, patch, { stride: patch });
  const [B, , H, W] = pe.shape;
  const tok = c.g.withScope(
    name,
    () => add(permute(reshape(pe, [B, C, H * W]), [0, 2, 1]), pos),
  );
  return dropoutSite(c, `${name}.dropout`, tok);
}

/**
 * InstanceNorm2d without affine or running statistics on scores [B, H, Ci, K]: every (b, h)
 * slice normalised over its Ci * K entries with the biased variance. Composed from reductions
 * and elementwise ops (no dedicated op: these slices are far wider than a layer-norm row and
 * the composition's gradient comes for free).
 */
function instanceNorm(x: Tensor): Tensor {
  const [B, H] = x.shape;
  const flat = reshape(x, [B, H, x.size / (B * H)]);
  const xc = sub(flat, mean(flat, [2]));
  const y = mul(xc, rsqrt(add(mean(square(xc), [2]), IN_EPS)));
  return reshape(y, x.shape);
}

/**
 * One bias-free Linear per head, stacked head-major [B * H, T, D]. Separate products (not one
 * GEMM over the stacked weights) keep each a Linear against a parameter, which is what the
 * thop-style count (count.ts) recognises as a Linear layer.
 */
function perHead(x: Tensor, ws: Tensor[]): Tensor {
  const [B, T] = x.shape;
  const D = ws[0].shape[0];
  const ys = ws.map((w) => reshape(linear(x, w), [B, 1, T, D]));
  return reshape(ys.length === 1 ? ys[0] : concat(ys, 1), [B * ws.length, T, D]);
}

/**
 * Attention_org (`channel_attn`): for each scale i and head h, S = (Q_i^h)^T K^h / sqrt(KV)
 * [Ci, KV] contracts over the tokens (attention between channels), InstanceNorm over each
 * head's scores, softmax over the KV key channels, dropout, ctx = P (V^h)^T; heads averaged,
 * then out_i (no bias) and dropout. Every projection is bias-free and full-width per head.
 */
function channelAttention(
  c: LCtx,
  name: string,
  queries: Tensor[],
  keyValue: Tensor,
  heads: number,
): Tensor[] {
  const g = c.g;
  const [B, T, KV] = keyValue.shape;
  const C = queries.map((q) => q.shape[2]);
  const hs = [...Array(heads).keys()];
  // Registration in the official order: query1..4 (heads 0..H-1 each), key, value, out1..4.
  const wq = C.map((ci, i) =>
    hs.map((h) => g.param(`${name}.query${i + 1}.${h}.weight`, [ci, ci], torchDefault(ci)))
  );
  const wk = hs.map((h) => g.param(`${name}.key.${h}.weight`, [KV, KV], torchDefault(KV)));
  const wv = hs.map((h) => g.param(`${name}.value.${h}.weight`, [KV, KV], torchDefault(KV)));
  const wo = C.map((ci, i) => g.param(`${name}.out${i + 1}.weight`, [ci, ci], torchDefault(ci)));
  return g.withScope(name, () => {
    const K = perHead(keyValue, wk);
    const V = perHead(keyValue, wv);
    return queries.map((q, i) => {
      const ci = C[i];
      const Q = perHead(q, wq[i]);
      const s = mul(matmul(Q, K, { transA: true }), 1 / Math.sqrt(KV));
      const n = instanceNorm(reshape(s, [B, heads, ci, KV]));
      let p = softmax(reshape(n, [B * heads, ci, KV]));
      // One dropout site per scale: the official module shares one nn.Dropout, whose draws
      // are independent per call; distinct keys give independent masks here.
      p = dropoutSite(c, `${name}.attn_dropout.${i + 1}`, p);
      const ctx = mean(reshape(matmul(p, V, { transB: true }), [B, heads, ci, T]), [1]);
      const tokens = permute(reshape(ctx, [B, ci, T]), [0, 2, 1]);
      const o = g.withScope(`${name}.out${i + 1}`, () => linear(tokens, wo[i]));
      return dropoutSite(c, `${name}.proj_dropout.${i + 1}`, o);
    });
  });
}

/** Mlp: fc1 -> GELU -> fc2 (dropout 0 on both, so none); Xavier weights, N(0, 1e-6) biases. */
function mlp(c: Ctx, name: string, x: Tensor, hidden: number): Tensor {
  const C = x.shape[x.rank - 1];
  const xavier = (fi: number, fo: number) => ({
    kind: "uniform",
    bound: Math.sqrt(6 / (fi + fo)),
  } as const);
  const tiny = { kind: "normal", std: 1e-6 } as const;
  let h = linearLayer(c, `${name}.fc1`, x, hidden, { weight: xavier(C, hidden), bias: tiny });
  h = c.g.withScope(`${name}.act_fn`, () => gelu(h));
  return linearLayer(c, `${name}.fc2`, h, C, { weight: xavier(hidden, C), bias: tiny });
}

/**
 * Block_ViT: queries from the per-scale LayerNorms, keys/values from one LayerNorm of the
 * concatenated raw tokens, residual; then per-scale pre-norm MLPs, residual.
 */
function cctLayer(c: LCtx, name: string, tokens: Tensor[], o: UCTransNetOptions): Tensor[] {
  const g = c.g;
  const q = tokens.map((t, i) => ln(c, `${name}.attn_norm${i + 1}`, t));
  const all = ln(c, `${name}.attn_norm`, g.withScope(name, () => concat(tokens, 2)));
  const att = channelAttention(c, `${name}.channel_attn`, q, all, o.heads);
  const mid = tokens.map((t, i) => g.withScope(name, () => add(t, att[i])));
  const normed = mid.map((t, i) => ln(c, `${name}.ffn_norm${i + 1}`, t));
  return mid.map((t, i) => {
    const m = mlp(c, `${name}.ffn${i + 1}`, normed[i], o.mlpRatio * t.shape[2]);
    return g.withScope(name, () => add(t, m));
  });
}

/**
 * CCA (`coatt`): skip x times sigmoid of the mean of two Linears of the globally average-pooled
 * skip (mlp_x) and decoder feature g (mlp_g), then ReLU (a no-op on UCTransNet's non-negative
 * skips, kept as the reference has it).
 */
function cca(c: Ctx, name: string, gate: Tensor, x: Tensor): Tensor {
  const [B, F] = x.shape;
  const gap = (t: Tensor) => c.g.withScope(name, () => reshape(mean(t, [2, 3]), [B, t.shape[1]]));
  const ax = linearLayer(c, `${name}.mlp_x.1`, gap(x), F);
  const ag = linearLayer(c, `${name}.mlp_g.1`, gap(gate), F);
  return c.g.withScope(name, () => {
    const s = sigmoid(mul(add(ax, ag), 0.5));
    return relu(mul(x, reshape(s, [B, F, 1, 1])));
  });
}

/** Checks the options against UCTRANSNET_OPTIONS; throws a RangeError naming the YAML keys. */
export function checkUCTransNetOptions(o: UCTransNetOptions): void {
  checkOptions("uctransnet", UCTRANSNET_OPTIONS, o);
}

/**
 * UCTransNet on images x [B, 3, S, S] (S = imageSize): probabilities [B, 1, S, S] with one
 * output channel, logits with several (the reference's last_activation).
 */
export function uctransnet(c: Ctx, x: Tensor, opts: Partial<UCTransNetOptions> = {}): Tensor {
  const o: UCTransNetOptions = { ...UCTRANSNET_DEFAULTS, ...opts };
  checkUCTransNetOptions(o);
  const [, , H, W] = x.shape;
  if (H !== o.imageSize || W !== o.imageSize) {
    throw new RangeError(
      `uctransnet: built for ${o.imageSize}x${o.imageSize}, got ${H}x${W} images`,
    );
  }
  const lc: LCtx = {
    ...c,
    dropout: o.dropoutEnabled ? o.dropout : 0,
    seed: o.seed,
    registerUnused: false,
  };
  const g = c.g;
  const C = [1, 2, 4, 8].map((m) => m * o.baseChannels);

  // Encoder: the reference U-Net's (one CBR in inc, MaxPool + 2 CBR per Down).
  const e1 = cbrBlock(c, "inc", x, C[0]);
  const down = (name: string, h: Tensor, cout: number) => {
    const p = g.withScope(`${name}.maxpool`, () => maxpool2d(h, 2));
    return cbrBlock(c, `${name}.nConvs.1`, cbrBlock(c, `${name}.nConvs.0`, p, cout), cout);
  };
  const e2 = down("down1", e1, C[1]);
  const e3 = down("down2", e2, C[2]);
  const e4 = down("down3", e3, C[3]);
  const e5 = down("down4", e4, C[3]);
  const feats = [e1, e2, e3, e4];

  // Channel transformer on E1..E4 (patch sizes 16, 8, 4, 2: one token grid for all scales).
  let tokens = feats.map((f, i) => embedding(lc, `mtc.embeddings_${i + 1}`, f, 16 >> i));
  for (let l = 0; l < o.depth; l++) tokens = cctLayer(lc, `mtc.encoder.layer.${l}`, tokens, o);
  tokens = tokens.map((t, i) => ln(c, `mtc.encoder.encoder_norm${i + 1}`, t));
  const skips = feats.map((f, i) => {
    const r = reconstruct(c, `mtc.reconstruct_${i + 1}`, tokens[i], 16 >> i);
    return g.withScope("mtc", () => add(r, f));
  });

  // Decoder: nearest x2, CCA on the skip, concat [skip', up], 2 x CBR.
  let d = e5;
  for (let l = 3; l >= 0; l--) {
    const name = `up${l + 1}`;
    const cout = l === 0 ? C[0] : C[l - 1];
    const up = g.withScope(`${name}.up`, () => upsampleNearest2d(d, 2));
    const skip = cca(c, `${name}.coatt`, up, skips[l]);
    const cat = g.withScope(name, () => concat([skip, up], 1));
    d = cbrBlock(c, `${name}.nConvs.1`, cbrBlock(c, `${name}.nConvs.0`, cat, cout), cout);
  }
  const logits = conv2dLayer(c, "outc", d, o.outChannels, 1);
  return o.outChannels === 1 ? g.withScope("last_activation", () => sigmoid(logits)) : logits;
}
