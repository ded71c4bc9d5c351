/**
 * Segmentation metrics exactly as the reference computes them (lvit-reference.md 6), as
 * fractions in [0, 1]. Validation and test differ in threshold and empty-mask rules; both are
 * per-image values averaged over images. Besides them, the pooled Dice and IoU that LViT's
 * successors report (torchmetrics in GuideDecoder and its forks; design.md 8): pixel counts
 * summed over the whole split, then one ratio.
 */

/** Dice and IoU, as fractions in [0, 1] (of one image, a mean over images, or pooled). */
export interface ImageScores {
  /** Dice coefficient (F1 of the foreground pixels). */
  dice: number;
  /** Intersection over union (Jaccard index). */
  iou: number;
}

function counts(p: ArrayLike<number>, y: ArrayLike<number>, off: number, n: number, ge: boolean) {
  let np = 0;
  let ny = 0;
  let inter = 0;
  for (let i = off; i < off + n; i++) {
    const a = ge ? (p[i] >= 0.5 ? 1 : 0) : (p[i] > 0.5 ? 1 : 0);
    const b = y[i] > 0.5 ? 1 : 0;
    np += a;
    ny += b;
    inter += a & b;
  }
  return { np, ny, inter };
}

/**
 * Validation (model selection): P = prob >= 0.5; Dice via the Dice loss's smoothing,
 * (2|P∩Y| + 4e-5) / (|P| + |Y| + 4e-5), so empty vs empty is 1; IoU as sklearn's
 * jaccard_score, empty vs empty 0.
 */
export function valScores(
  p: ArrayLike<number>,
  y: ArrayLike<number>,
  off: number,
  n: number,
): ImageScores {
  const { np, ny, inter } = counts(p, y, off, n, true);
  const union = np + ny - inter;
  return { dice: (2 * inter + 4e-5) / (np + ny + 4e-5), iou: union === 0 ? 0 : inter / union };
}

/** Test (reported numbers): P = prob > 0.5; Dice 2|P∩Y| / (|P| + |Y| + 1e-5), empty vs empty 0. */
export function testScores(
  p: ArrayLike<number>,
  y: ArrayLike<number>,
  off: number,
  n: number,
): ImageScores {
  const { np, ny, inter } = counts(p, y, off, n, false);
  const union = np + ny - inter;
  return { dice: (2 * inter) / (np + ny + 1e-5), iou: union === 0 ? 0 : inter / union };
}

/** The per-image scores averaged over images (zeros for an empty list). */
export function meanScores(s: ImageScores[]): ImageScores {
  const n = Math.max(1, s.length);
  return {
    dice: s.reduce((t, x) => t + x.dice, 0) / n,
    iou: s.reduce((t, x) => t + x.iou, 0) / n,
  };
}

/** Foreground pixel counts summed over images: |P∩Y|, |P| and |Y|. */
export interface PixelCounts {
  /** Pixels predicted and true foreground, |P∩Y|. */
  inter: number;
  /** Pixels predicted foreground, |P|. */
  pred: number;
  /** Pixels of true foreground, |Y|. */
  truth: number;
}

/** Counts to accumulate into with `addTestCounts`. */
export function emptyCounts(): PixelCounts {
  return { inter: 0, pred: 0, truth: 0 };
}

/**
 * Adds one image's counts (`n` values from `off`) to `acc` with the test rule's threshold,
 * P = prob > 0.5 (Y = mask > 0.5); returns `acc`.
 */
export function addTestCounts(
  acc: PixelCounts,
  p: ArrayLike<number>,
  y: ArrayLike<number>,
  off: number,
  n: number,
): PixelCounts {
  const { np, ny, inter } = counts(p, y, off, n, false);
  acc.inter += inter;
  acc.pred += np;
  acc.truth += ny;
  return acc;
}

/**
 * Pooled scores of summed counts: Dice = 2 sum|P∩Y| / (sum|P| + sum|Y|), IoU = sum|P∩Y| /
 * sum|P∪Y|, no smoothing. With no foreground pixel in any prediction or mask both are 0, as the
 * test rule scores an empty pair (and torchmetrics' default zero_division).
 */
export function pooledScores(c: PixelCounts): ImageScores {
  const sum = c.pred + c.truth;
  const union = sum - c.inter;
  return { dice: sum === 0 ? 0 : (2 * c.inter) / sum, iou: union === 0 ? 0 : c.inter / union };
}
