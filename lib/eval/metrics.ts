/**
 * Segmentation metrics exactly as the reference computes them (lvit-reference.md 6), as
 * fractions in [0, 1]. Validation and test differ in threshold and empty-mask rules; both are
 * per-image values averaged over images.
 */

export interface ImageScores {
  dice: number;
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
export function valScores(p: ArrayLike<number>, y: ArrayLike<number>, off: number, n: number) {
  const { np, ny, inter } = counts(p, y, off, n, true);
  const union = np + ny - inter;
  return { dice: (2 * inter + 4e-5) / (np + ny + 4e-5), iou: union === 0 ? 0 : inter / union };
}

/** Test (reported numbers): P = prob > 0.5; Dice 2|P∩Y| / (|P| + |Y| + 1e-5), empty vs empty 0. */
export function testScores(p: ArrayLike<number>, y: ArrayLike<number>, off: number, n: number) {
  const { np, ny, inter } = counts(p, y, off, n, false);
  const union = np + ny - inter;
  return { dice: (2 * inter) / (np + ny + 1e-5), iou: union === 0 ? 0 : inter / union };
}

export function meanScores(s: ImageScores[]): ImageScores {
  const n = Math.max(1, s.length);
  return {
    dice: s.reduce((t, x) => t + x.dice, 0) / n,
    iou: s.reduce((t, x) => t + x.iou, 0) / n,
  };
}
