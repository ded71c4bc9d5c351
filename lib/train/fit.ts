/**
 * The epoch loop of the engine milestone: seeded shuffling, one submit per step, one sync per
 * epoch (the accumulated loss), validation with the reference's metrics. The full runner with
 * run folders, checkpoints and schedules is a later milestone (issue 6).
 */
import { permutation } from "../rng/shuffle.ts";
import { type Samples, scoreSplit } from "./trainer.ts";
import type { ImageScores } from "../eval/metrics.ts";
import type { Session } from "./session.ts";

/** An in-memory split: 3-channel square images and their masks. */
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

/** An in-memory split as the trainer's Samples (3-channel images, no text). */
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
  const size = Math.round(Math.sqrt(val.masks.length / val.n));
  // scoreSplit's batches are 3-channel square images, as the sessions' programs are compiled.
  if (size * size * val.n !== val.masks.length || 3 * val.masks.length !== val.images.length) {
    throw new RangeError(
      `validate: expects n x 3 x S x S images and n x S x S masks, got ${val.images.length} ` +
        `and ${val.masks.length} values for n = ${val.n}`,
    );
  }
  return (await scoreSplit(s, asSamples(val), batch, size, "val")).mean;
}

/**
 * Trains `s` for `o.epochs` epochs of shuffled full batches (a remainder is dropped) at a
 * constant learning rate, validating after each; returns every epoch's figures.
 */
export async function fit(
  s: Session,
  train: Split,
  val: Split,
  batch: number,
  o: FitOptions,
): Promise<EpochReport[]> {
  const per = train.images.length / train.n;
  const perM = train.masks.length / train.n;
  const x = new Float32Array(batch * per);
  const y = new Float32Array(batch * perM);
  const steps = Math.floor(train.n / batch); // drop_last: every step has the compiled batch size
  const reports: EpochReport[] = [];
  for (let e = 1; e <= o.epochs; e++) {
    const t0 = performance.now();
    const order = permutation(train.n, o.seed, e);
    for (let b = 0; b < steps; b++) {
      const idx = order.slice(b * batch, (b + 1) * batch);
      gather(train.images, per, idx, x);
      gather(train.masks, perM, idx, y);
      s.step(x, y, o.lr);
    }
    const loss = (await s.takeLossSum()) / steps;
    const v = await validate(s, val, batch);
    const seconds = (performance.now() - t0) / 1000;
    const r = {
      epoch: e,
      loss,
      valDice: v.dice,
      valIou: v.iou,
      seconds,
      stepsPerSecond: steps / seconds,
    };
    reports.push(r);
    o.onEpoch?.(r);
  }
  return reports;
}
