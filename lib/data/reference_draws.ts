/**
 * The augmentation draws of the reference's training loader, replayed (`data.augment_draws:
 * reference-loader`).
 *
 * The reference trains with `DataLoader(num_workers=8, shuffle=True)` and a `worker_init_fn` that
 * calls `random.seed(666 + worker_id)`; workers are forked anew every epoch. Under the versions of
 * its requirements.txt (torch 1.8.0, numpy 1.17.5) the workers do not re-seed numpy, so each
 * starts from the main process's state after `np.random.seed(666)` (torch 1.9 added per-worker
 * numpy seeds). Batch b goes to worker b mod 8, which runs its batches and their samples in order,
 * drawing per sample (`RandomGenerator`, lvit-reference.md 4.5):
 *
 * - `random.random() > 0.5`: rot90 by `np.random.randint(0, 4)`, flip along `randint(0, 2)`;
 * - else `random.random() > 0.5`: rotate by `np.random.randint(-20, 20)` degrees;
 * - else nothing.
 *
 * Every draw therefore depends only on the sample's position in the epoch (batch, slot), not on
 * the epoch or the image: each epoch applies the same list of transforms, and the shuffle only
 * decides which image gets which. For MoNuSeg (24 images, batch 2) that list holds 9 "none", 5
 * rotations and 10 rot90/flips, all flips along axis 0. bench/parity/pipeline_official.py gets
 * the same list by running the official `RandomGenerator` and `worker_init_fn` in-process with
 * the worker states described above (a simulation of torch 1.8's worker seeding, not a torch 1.8
 * DataLoader; it assumes, as train_model.py bears out, that the main process draws nothing from
 * numpy between seeding and forking). Our default (`philox`) draws every sample afresh per epoch.
 */
import type { AugmentOp } from "./augment.ts";
import { Mt19937 } from "../rng/mt19937.ts";

/** Worker processes of the reference's training DataLoader. */
export const REFERENCE_WORKERS = 8;

/**
 * The transform of each position of a reference epoch: entry `b * batch + j` is what slot j of
 * batch b gets, for `ceil(samples / batch)` batches (the last one may be partial, as the
 * reference's loader keeps it). `seed` is the reference's 666: python's `random` of worker w is
 * seeded `seed + w`, numpy's with `seed`.
 */
export function referenceLoaderOps(
  samples: number,
  batch: number,
  seed: number,
  workers = REFERENCE_WORKERS,
): AugmentOp[] {
  if (!(Number.isInteger(samples) && samples > 0 && Number.isInteger(batch) && batch > 0)) {
    throw new RangeError(`referenceLoaderOps: samples ${samples}, batch ${batch}`);
  }
  const batches = Math.ceil(samples / batch);
  const ops: AugmentOp[] = new Array(samples);
  for (let w = 0; w < Math.min(workers, batches); w++) {
    const py = Mt19937.python(seed + w);
    const np = Mt19937.fromInt(seed);
    for (let b = w; b < batches; b += workers) {
      for (let p = b * batch; p < Math.min((b + 1) * batch, samples); p++) {
        // The second python draw happens only when the first declines rot90/flip.
        const rotflip = py.random() > 0.5;
        const rotate = !rotflip && py.random() > 0.5;
        if (rotflip) {
          const k = np.randint(0, 4) as 0 | 1 | 2 | 3;
          ops[p] = { kind: "rotflip", k, axis: np.randint(0, 2) as 0 | 1 };
        } else if (rotate) {
          ops[p] = { kind: "rotate", angle: np.randint(-20, 20) };
        } else {
          ops[p] = { kind: "none" };
        }
      }
    }
  }
  return ops;
}
