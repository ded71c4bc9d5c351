/**
 * `fit`: in-memory splits trained with `train` (the one training loop, lib/train/trainer.ts) at a
 * constant learning rate, without augmentation, checkpoints or early stopping; for scripts and
 * the engine's tests. The experiment runner calls `train` directly with its files as hooks.
 */
import { initialState, type Recipe, type Samples, scoreSplit, train } from "./trainer.ts";
import type { ImageScores } from "../eval/metrics.ts";
import type { Session } from "./session.ts";

/** An in-memory split: square images and their masks. */
export interface Split {
  /** Number of samples. */
  n: number;
  /** n x C x H x W */
  images: Float32Array;
  /** n x 1 x H x W */
  masks: Float32Array;
}

/** Settings of `fit`. */
export interface FitOptions {
  /** Epochs to train. */
  epochs: number;
  /** Learning rate, constant throughout. */
  lr: number;
  /** Seed of the per-epoch shuffles. */
  seed: number;
  /** Called after each epoch with its figures (progress output). */
  onEpoch?: (e: EpochReport) => void;
}

/** The figures of one epoch of `fit`. */
export interface EpochReport {
  /** The 1-based epoch. */
  epoch: number;
  /** Mean training loss over the epoch's steps. */
  loss: number;
  /** Mean validation Dice (reference validation rules). */
  valDice: number;
  /** Mean validation IoU. */
  valIou: number;
  /** Wall time of the epoch, validation included. */
  seconds: number;
  /** Training steps per second of wall time. */
  stepsPerSecond: number;
}

function gather(src: Float32Array, per: number, idx: readonly number[], dst: Float32Array) {
  idx.forEach((j, k) => dst.set(src.subarray(j * per, (j + 1) * per), k * per));
}

/** The geometry of an in-memory split's images (n x C x S x S with n x S x S masks). */
function splitGeometry(sp: Split, batch: number, what: string) {
  const size = Math.round(Math.sqrt(sp.masks.length / sp.n));
  const channels = sp.images.length / sp.masks.length;
  if (size * size * sp.n !== sp.masks.length || !Number.isInteger(channels) || channels < 1) {
    throw new RangeError(
      `${what}: expects n x C x S x S images and n x S x S masks, got ${sp.images.length} ` +
        `and ${sp.masks.length} values for n = ${sp.n}`,
    );
  }
  return { batch, channels, size };
}

/** An in-memory split as the trainer's Samples (no text). */
function asSamples(sp: Split): Samples {
  const per = sp.images.length / sp.n;
  const perM = sp.masks.length / sp.n;
  return {
    n: sp.n,
    text: null,
    read(idx, x, y) {
      gather(sp.images, per, idx, x);
      gather(sp.masks, perM, idx, y);
      return Promise.resolve();
    },
  };
}

/** Validation Dice/IoU (reference validation rules) of the session's eval program on a split. */
export async function validate(s: Session, val: Split, batch: number): Promise<ImageScores> {
  const geo = splitGeometry(val, batch, "validate");
  return (await scoreSplit(s, asSamples(val), geo, "val")).mean;
}

/**
 * Trains `s` for `o.epochs` epochs of shuffled full batches (a remainder is dropped) at a
 * constant learning rate, validating after each; returns every epoch's figures. The same loop
 * as the experiment runner's (`train`), so its shuffles and loss sums are those of a run.
 */
export async function fit(
  s: Session,
  trainSplit: Split,
  val: Split,
  batch: number,
  o: FitOptions,
): Promise<EpochReport[]> {
  const geometry = splitGeometry(trainSplit, batch, "fit");
  splitGeometry(val, batch, "fit (validation split)");
  const recipe: Recipe = {
    epochs: o.epochs,
    batch,
    lr: o.lr,
    schedule: { kind: "constant", t0: 1, t_mult: 1, eta_min: 0 },
    patience: Infinity,
    min_save_epoch: 1,
    eval_every: 1,
    checkpoint_every: 0,
    max_steps_per_epoch: null,
  };
  const reports: EpochReport[] = [];
  const none = () => Promise.resolve();
  await train(
    s,
    { train: asSamples(trainSplit), val: asSamples(val) },
    recipe,
    { seed: o.seed, geometry, augment: false },
    initialState(),
    {
      checkpoint: none,
      saveBest: none,
      interrupted: () => false,
      onEpoch: (r) => {
        const report = {
          epoch: r.epoch,
          loss: r.loss,
          valDice: r.val_dice!,
          valIou: r.val_iou!,
          seconds: r.seconds,
          stepsPerSecond: r.steps / r.seconds,
        };
        reports.push(report);
        o.onEpoch?.(report);
      },
    },
  );
  return reports;
}
