/**
 * The pooled Dice and IoU (issue 14, item 5): pixel counts summed over a split with the test
 * rule's threshold, then one ratio, on hand-computed cases, against the per-image mean the
 * reference reports.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  addTestCounts,
  emptyCounts,
  meanScores,
  type PixelCounts,
  pooledScores,
  testScores,
} from "../lib/eval/metrics.ts";

/** Pooled scores of images given as [probabilities, mask] pairs of equal length. */
function pooledOf(
  images: [number[], number[]][],
): { counts: PixelCounts; dice: number; iou: number } {
  const counts = emptyCounts();
  for (const [p, y] of images) addTestCounts(counts, p, y, 0, p.length);
  return { counts, ...pooledScores(counts) };
}

const close = (a: number, b: number, what: string, tol = 1e-12) =>
  assert(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

Deno.test("pooled Dice/IoU: summed counts, threshold prob > 0.5, against the per-image mean", () => {
  const images: [number[], number[]][] = [
    // P = [1, 1, 0, 0] (0.5 is not > 0.5), Y = [1, 0, 1, 0]: |P∩Y| 1, |P| 2, |Y| 2.
    [[0.9, 0.6, 0.2, 0.5], [1, 0, 1, 0]],
    // P = [1, 0, 0, 0], Y = [1, 1, 1, 0]: |P∩Y| 1, |P| 1, |Y| 3.
    [[0.7, 0.1, 0.1, 0.1], [1, 1, 1, 0]],
    // Empty prediction and empty mask: adds nothing to the sums (per image it scores 0).
    [[0.1, 0.2, 0.3, 0.5], [0, 0, 0, 0]],
  ];
  const r = pooledOf(images);
  assertEquals(r.counts, { inter: 2, pred: 3, truth: 5 });
  // Dice 2 * 2 / (3 + 5); IoU 2 / (3 + 5 - 2).
  assertEquals([r.dice, r.iou], [0.5, 1 / 3]);
  // The per-image mean differs: 2/4, 2/4 and 0 (empty vs empty) for Dice; 1/3, 1/3, 0 for IoU.
  const mean = meanScores(images.map(([p, y]) => testScores(p, y, 0, p.length)));
  close(mean.dice, (2 / (4 + 1e-5) + 2 / (4 + 1e-5) + 0) / 3, "per-image dice");
  close(mean.iou, (1 / 3 + 1 / 3 + 0) / 3, "per-image iou");
  assert(Math.abs(mean.dice - r.dice) > 0.1, "pooled and per-image Dice should differ here");
});

Deno.test("pooled Dice/IoU: empty masks and predictions, perfect and disjoint", () => {
  // Nothing anywhere: 0/0 is scored 0, as the test rule scores an empty pair.
  assertEquals(pooledOf([[[0, 0.5], [0, 0]], [[0.2, 0.1], [0, 0]]]), {
    counts: { inter: 0, pred: 0, truth: 0 },
    dice: 0,
    iou: 0,
  });
  assertEquals(pooledScores(emptyCounts()), { dice: 0, iou: 0 });
  // Empty masks, a false positive: 0.
  const fp = pooledOf([[[0.9, 0, 0, 0], [0, 0, 0, 0]]]);
  assertEquals([fp.counts, fp.dice, fp.iou], [{ inter: 0, pred: 1, truth: 0 }, 0, 0]);
  // An empty prediction against a mask: 0.
  const fn = pooledOf([[[0, 0, 0, 0], [0, 1, 1, 0]]]);
  assertEquals([fn.counts, fn.dice, fn.iou], [{ inter: 0, pred: 0, truth: 2 }, 0, 0]);
  // Perfect predictions, with an empty image among them: exactly 1 (no smoothing).
  const ok = pooledOf([[[1, 0.51, 0], [1, 1, 0]], [[0, 0], [0, 0]], [[0.8], [1]]]);
  assertEquals([ok.counts, ok.dice, ok.iou], [{ inter: 3, pred: 3, truth: 3 }, 1, 1]);
  // Masks count above 0.5 (0/1 as decoded; 0.5 is background).
  const m = pooledOf([[[0.9, 0.9], [0.5, 0.6]]]);
  assertEquals(m.counts, { inter: 1, pred: 2, truth: 1 });
  close(m.dice, 2 / 3, "mask threshold dice");
  close(m.iou, 1 / 2, "mask threshold iou");
});

Deno.test("addTestCounts reads one image at its offset and accumulates", () => {
  // Two 3-pixel images in one buffer, as a batch holds them.
  const p = Float32Array.of(0.9, 0.9, 0.9, 0.9, 0.1, 0.9);
  const y = Float32Array.of(0, 0, 0, 1, 1, 0);
  const acc = emptyCounts();
  assert(addTestCounts(acc, p, y, 3, 3) === acc, "returns the accumulator");
  assertEquals(acc, { inter: 1, pred: 2, truth: 2 });
  addTestCounts(acc, p, y, 0, 3);
  assertEquals(acc, { inter: 1, pred: 5, truth: 2 });
  close(pooledScores(acc).dice, 2 / 7, "dice");
  close(pooledScores(acc).iou, 1 / 6, "iou");
  // One image: the test rule's Dice without its 1e-5 smoothing.
  const one = addTestCounts(emptyCounts(), p, y, 3, 3);
  close(pooledScores(one).dice, testScores(p, y, 3, 3).dice, "one image", 1e-5);
  assertEquals(pooledScores(one).iou, testScores(p, y, 3, 3).iou);
});
