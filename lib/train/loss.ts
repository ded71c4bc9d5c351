/**
 * The reference segmentation loss (lvit-reference.md 3.1): 0.5 * squared-denominator soft Dice
 * (per image, then batch mean) + 0.5 * class-balanced BCE over the whole batch.
 */
import {
  add,
  affine,
  bce,
  div,
  mean,
  mul,
  reshape,
  square,
  stepGt,
  stepLt,
  sum,
  type Tensor,
} from "../graph/mod.ts";

/** Class-balanced BCE: mean BCE over foreground and over background pixels, averaged. */
export function balancedBce(p: Tensor, y: Tensor): Tensor {
  const all = p.shape.map((_, i) => i);
  const b = bce(p, y);
  const pos = stepGt(y, 0.5);
  const neg = stepLt(y, 0.5);
  const lp = div(sum(mul(b, pos), all), add(sum(pos, all), 1e-12));
  const ln = div(sum(mul(b, neg), all), add(sum(neg, all), 1e-12));
  return affine(add(lp, ln), 0.5, 0);
}

/** 1 - (2 sum(py) + 4e-5) / (sum(p^2) + sum(y^2) + 4e-5) per image, averaged over the batch. */
export function squaredDice(p: Tensor, y: Tensor): Tensor {
  const img = p.shape.slice(1).map((_, i) => i + 1);
  const inter = affine(sum(mul(p, y), img), 2, 4e-5);
  const den = add(add(sum(square(p), img), sum(square(y), img)), 4e-5);
  const d = affine(div(inter, den), -1, 1);
  return reshape(mean(d, [0]), [1]);
}

/** L = 0.5 * Dice + 0.5 * balanced BCE, as train_model configures WeightedDiceBCE. */
export function segLoss(p: Tensor, y: Tensor, w: { dice?: number; bce?: number } = {}): Tensor {
  const dice = reshape(squaredDice(p, y), [1]);
  const b = reshape(balancedBce(p, y), [1]);
  return add(affine(dice, w.dice ?? 0.5, 0), affine(b, w.bce ?? 0.5, 0));
}
