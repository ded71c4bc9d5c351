/**
 * GT U-Net (`GT_U_Net(img_ch=3, output_ch=1)` of Kent0n-Li/GT-U-Net models/GT_UNet.py,
 * baselines-reference.md 2): a U-Net with widths 64-128-256-512-1024 whose nine conv stages are
 * BoT-style "group transformer" blocks, 26,216,289 parameters, 309 state_dict entries named as
 * the official ones (official checkpoints load by name), 55.745 GMACs per 256x256 image.
 *
 * A block (cin -> cout, bottleneck b = cout/4, 4 heads of d = b/4) runs a 3x3 conv + BN + ReLU
 * shortcut, and on the input's raw NCHW buffer re-read as [N*(H/4)*(W/4), cin, 4, 4] "windows"
 * (a memory reinterpretation, not a spatial tiling: reproduced exactly because it is what the
 * published model computes): conv1 (3x3, BN, ReLU), 4-head self-attention over the 16 positions
 * of each window with 2-D relative position logits, BN + ReLU, conv3 (3x3, BN with weight
 * initialised to 0, no activation); the result is re-read as [N, cout, H, W], added to the
 * shortcut and passed through a ReLU.
 *
 * Deviations, both documented choices:
 * - Head: the official model returns logits; the registry's models return probabilities (the
 *   training loss expects them), so a parameter-free sigmoid follows `Conv_1x1` when there is
 *   one output channel. The state_dict is unchanged by it.
 * - Size: every level's side must be a multiple of 4 for the window reshape, i.e. the image side
 *   a multiple of 64; the official code fails at the reference's 224 (bottleneck 14x14). We run
 *   it at 256 by resizing (`model.image_size: 256`, experiments/gtunet-monuseg.yaml), not by
 *   padding 224 to 256: resizing keeps every image pixel inside the windows the model was built
 *   for, while padding would feed it 23% border of constant value that the memory-order
 *   windows mix with real pixels. The metrics are then computed on 256x256 masks (the data
 *   reader resizes images and masks to `model.image_size`, as for every model), so Dice/IoU are
 *   at a slightly finer resolution than the 224-pixel models'; for MoNuSeg's 1000x1000 images
 *   both are downsamplings of the same masks, the comparison stays per image, but it is not
 *   pixel-identical to a 224 evaluation.
 */
import {
  add,
  affine,
  concat,
  matmul,
  maxpool2d,
  permute,
  relu,
  reshape,
  sigmoid,
  slice,
  softmax,
  type Tensor,
  upsampleNearest2d,
} from "../graph/mod.ts";
import { batchNorm2d, conv2dLayer, type Ctx } from "../nn/layers.ts";
import { bn2d, trackBatches } from "./lvit_blocks.ts";
import { z } from "../deps.ts";
import { expects, posInt } from "../config/leaf.ts";
import { defineOptions, type ModelOptions } from "./options.ts";

/** Settings of GT U-Net (`gtunet` in the registry). */
export interface GTUNetOptions {
  /**
   * Square image side, a multiple of 64 (4x4 windows at the 1/16 bottleneck). The graph takes
   * its size from its input; this one is declared so that experiments are checked.
   */
  imageSize: number;
  /** Width of `Conv1` (64 in the official model); deeper levels have 2, 4, 8 and 16 times it. */
  baseChannels: number;
  /** Channels of `Conv_1x1` (1: one binary mask, followed by the sigmoid head). */
  outChannels: number;
}

/** Side of the square attention windows (the official Q_h = Q_w = 4). */
const WIN = 4;
/** Attention heads of every block (hard-coded in the official MHSA). */
const HEADS = 4;
/** Image sides must be divisible by this: four 2x poolings, then 4x4 windows. */
const SIDE_MULTIPLE = 16 * WIN;

/** The options as an experiment's `model` section spells them (lib/models/options.ts). */
export const GTUNET_OPTIONS: ModelOptions<GTUNetOptions> = defineOptions<GTUNetOptions>({
  imageSize: {
    key: "image_size",
    schema: posInt(),
    default: 256,
    doc: "Square image side, a multiple of 64 (4x4 windows at the 1/16 bottleneck); the " +
      "official model fails at 224, so MoNuSeg is resized to 256",
    unit: "pixels",
  },
  baseChannels: {
    key: "base_channels",
    // b = C/4 per block split over 4 heads: the first block's head width C/16 must be whole.
    schema: expects(z.number().int().positive().multipleOf(16), "a positive multiple of 16"),
    default: 64,
    doc: "Width C0 of the first level; deeper levels have 2, 4, 8 and 16 times C0",
    unit: "channels",
  },
  outChannels: {
    key: "out_channels",
    schema: posInt(),
    default: 1,
    doc: "Output channels (1: one binary mask)",
    unit: "channels",
  },
}, [{
  keys: ["imageSize"],
  test: (o) =>
    o.imageSize % SIDE_MULTIPLE === 0 ? undefined : `image_size must be a multiple of 64 for ` +
      `gtunet (got ${o.imageSize}): its blocks cut every level into 4x4 windows, so the ` +
      `1/16 bottleneck side must be divisible by 4 (the official code fails at 224); use 256`,
}]);

/** The official configuration: the declared defaults. */
export const GTUNET_DEFAULTS: GTUNetOptions = GTUNET_OPTIONS.defaults;

/**
 * Probabilities [B, 1, H, W] (logits [B, out, H, W] when out_channels > 1) for images
 * [B, Cin, H, W], H and W multiples of 64.
 */
export function gtunet(c: Ctx, x: Tensor, opts: Partial<GTUNetOptions> = {}): Tensor {
  const o = { ...GTUNET_DEFAULTS, ...opts };
  const [, , H, W] = x.shape;
  if (x.rank !== 4 || H % SIDE_MULTIPLE !== 0 || W % SIDE_MULTIPLE !== 0) {
    throw new RangeError(
      `gtunet: image sides must be multiples of 64 (4x4 windows at the 1/16 bottleneck), got ${x}`,
    );
  }
  const C = [1, 2, 4, 8, 16].map((m) => m * o.baseChannels);
  const pool = (t: Tensor) => c.g.withScope("Maxpool", () => maxpool2d(t, 2));
  const x1 = botBlock(c, "Conv1.0", x, C[0]);
  const x2 = botBlock(c, "Conv2.0", pool(x1), C[1]);
  const x3 = botBlock(c, "Conv3.0", pool(x2), C[2]);
  const x4 = botBlock(c, "Conv4.0", pool(x3), C[3]);
  let d = botBlock(c, "Conv5.0", pool(x4), C[4]);
  const skips = [x1, x2, x3, x4];
  for (let l = 5; l >= 2; l--) {
    const up = upConv(c, `Up${l}.up`, d, C[l - 2]);
    // The skip comes first in the official torch.cat((x4, d5), dim=1).
    const cat = c.g.withScope(`Up_conv${l}`, () => concat([skips[l - 2], up], 1));
    d = botBlock(c, `Up_conv${l}.0`, cat, C[l - 2]);
  }
  const logits = conv2dLayer(c, "Conv_1x1", d, o.outChannels, 1);
  // The parameter-free head that turns the official logits into the registry's probabilities.
  return o.outChannels === 1 ? c.g.withScope("sigmoid", () => sigmoid(logits)) : logits;
}

/** The official up_conv: nearest 2x upsample, 3x3 conv (bias), BatchNorm2d, ReLU. */
function upConv(c: Ctx, name: string, x: Tensor, cout: number): Tensor {
  const u = c.g.withScope(`${name}.0`, () => upsampleNearest2d(x, 2));
  return bn2d(c, `${name}.2`, conv2dLayer(c, `${name}.1`, u, cout, 3, { padding: 1 }), true);
}

/** Conv2d 3x3 (padding 1, bias) then the official BNReLU (`.0` conv, `.1.norm` BN). */
function convBn(c: Ctx, name: string, x: Tensor, cout: number, act: boolean, zero = false) {
  const y = conv2dLayer(c, `${name}.0`, x, cout, 3, { padding: 1 });
  return zero ? bnZeroInit(c, `${name}.1.norm`, y) : bn2d(c, `${name}.1.norm`, y, act);
}

/** One BoT block (the official `_make_bot_layer`, a one-element Sequential: names end in `.0`). */
function botBlock(c: Ctx, P: string, x: Tensor, cout: number): Tensor {
  const [N, cin, H, W] = x.shape;
  const b = cout / 4;
  // cin != cout in all nine blocks, so the official shortcut is always the conv + BNReLU branch.
  const shortcut = convBn(c, `${P}.shortcut`, x, cout, true);
  const M = (N * H * W) / (WIN * WIN);
  const win = c.g.withScope(P, () => reshape(x, [M, cin, WIN, WIN]));
  const h1 = convBn(c, `${P}.conv1`, win, b, true);
  const att = mhsa(c, `${P}.mhsa`, h1);
  const h2 = bn2d(c, `${P}.conv2.0.norm`, att, true);
  const h3 = convBn(c, `${P}.conv3`, h2, cout, false, true);
  return c.g.withScope(`${P}.last_act`, () => relu(add(reshape(h3, [N, cout, H, W]), shortcut)));
}

/**
 * The official MHSA on windows [M, b, 4, 4]: bias-free per-head q/k/v projections (weights
 * [b, heads, d], Normal(0, 0.01)), q scaled by d^-1/2, logits q.k + q.(R_h[y'-y+3] +
 * R_w[x'-x+3]) with the relative tables [7, d] (Normal(0, d^-1/2)) applied to the scaled q,
 * softmax over the 16 keys, heads folded head-major into channel n*d + j.
 */
function mhsa(c: Ctx, P: string, x: Tensor): Tensor {
  const [M, b] = x.shape;
  const T = WIN * WIN, d = b / HEADS, R = 2 * WIN - 1;
  const g = c.g;
  const proj = (n: string) => g.param(`${P}.${n}.w`, [b, HEADS, d], { kind: "normal", std: 0.01 });
  const wq = proj("q_proj"), wk = proj("k_proj"), wv = proj("v_proj");
  const relStd = { kind: "normal" as const, std: d ** -0.5 };
  // Registration order is the state_dict's: rel_emb_w before rel_emb_h.
  const relW = g.param(`${P}.self_attention.rel_emb_w`, [R, d], relStd);
  const relH = g.param(`${P}.self_attention.rel_emb_h`, [R, d], relStd);
  return g.withScope(P, () => {
    // Tokens (window position t = 4y + x) as rows, channels as columns.
    const rows = reshape(permute(x, [0, 2, 3, 1]), [M * T, b]);
    // [M*T, heads*d] -> [M*heads, T, d]: one attention problem per (window, head).
    const heads = (w: Tensor) =>
      reshape(
        permute(reshape(matmul(rows, reshape(w, [b, b])), [M, T, HEADS, d]), [0, 2, 1, 3]),
        [M * HEADS, T, d],
      );
    const q = affine(heads(wq), d ** -0.5, 0);
    const k = heads(wk), v = heads(wv);
    const logits = reshape(matmul(q, k, { transB: true }), [M * HEADS, WIN, WIN, WIN, WIN]);
    const rel = add(relativeLogits(q, relH, 1), relativeLogits(q, relW, 2));
    const weights = softmax(reshape(add(logits, rel), [M * HEADS, T, T]));
    const out = reshape(matmul(weights, v), [M, HEADS, T, d]);
    // [M, heads, T, d] -> [M, heads, d, T] = [M, b, 4, 4] with channel n*d + j.
    return reshape(permute(out, [0, 1, 3, 2]), [M, b, WIN, WIN]);
  });
}

/**
 * The relative-position logits of one axis for scaled queries q [MH, 16, d] and a table
 * rel [7, d]: q . rel[p' - p + 3], where p is the query's row (axis 1) or column (axis 2) and p'
 * the key's. Computed as the official code does, q against all 7 offsets (the same MACs as its
 * einsum) and then, per query position p, the 4 offsets p' - p + 3 for p' = 0..3 (its
 * rel_to_abs), as slices. Returns [MH, 4, 4, 4, 1] (row axis) or [MH, 4, 4, 1, 4] (column
 * axis), indexed [y, x, y', x'] for broadcasting over the other key coordinate.
 */
function relativeLogits(q: Tensor, rel: Tensor, axis: 1 | 2): Tensor {
  const [MH, T, d] = q.shape;
  const R = rel.shape[0];
  const all = reshape(matmul(reshape(q, [MH * T, d]), rel, { transB: true }), [MH, WIN, WIN, R]);
  const parts: Tensor[] = [];
  for (let p = 0; p < WIN; p++) {
    parts.push(slice(slice(all, axis, p, 1), 3, WIN - 1 - p, WIN));
  }
  const abs = concat(parts, axis);
  return reshape(abs, axis === 1 ? [MH, WIN, WIN, WIN, 1] : [MH, WIN, WIN, 1, WIN]);
}

/**
 * The official BNReLU(init_zero=True, nonlinearity=False) that ends each block's conv3:
 * BatchNorm2d (momentum 0.1, eps 1e-5) whose weight starts at 0, so a fresh block outputs its
 * shortcut alone.
 */
function bnZeroInit(c: Ctx, name: string, x: Tensor): Tensor {
  const y = batchNorm2d(c, name, x, { weightInit: 0 });
  trackBatches(c, name);
  return y;
}
