/**
 * The epoch loop of the engine milestone: seeded shuffling, one submit per step, one sync per
 * epoch (the accumulated loss), validation with the reference's metrics. The full runner with
 * run folders, checkpoints and schedules is a later milestone (issue 6).
 */
import { permutation } from "../rng/shuffle.ts";
import { meanScores, valScores } from "../eval/metrics.ts";
import type { Session } from "./session.ts";

export interface Split {
  n: number;
  /** n x C x H x W */
  images: Float32Array;
  /** n x 1 x H x W */
  masks: Float32Array;
}

export interface FitOptions {
  epochs: number;
  lr: number;
  seed: number;
  /** Called after each epoch with its figures (progress output). */
  onEpoch?: (e: EpochReport) => void;
}

export interface EpochReport {
  epoch: number;
  loss: number;
  valDice: number;
  valIou: number;
  seconds: number;
  stepsPerSecond: number;
}

function gather(src: Float32Array, per: number, idx: number[], dst: Float32Array) {
  idx.forEach((j, k) => dst.set(src.subarray(j * per, (j + 1) * per), k * per));
}

/** Validation Dice/IoU (reference validation rules) of the session's eval program on a split. */
export async function validate(s: Session, val: Split, batch: number) {
  const per = val.images.length / val.n;
  const perM = val.masks.length / val.n;
  const x = new Float32Array(batch * per);
  const scores = [];
  for (let i = 0; i < val.n; i += batch) {
    const idx = Array.from({ length: batch }, (_, k) => Math.min(i + k, val.n - 1));
    gather(val.images, per, idx, x);
    const p = await s.predict(x);
    for (let k = 0; k < batch && i + k < val.n; k++) {
      scores.push(valScores(p, val.masks.subarray(i * perM), k * perM, perM));
    }
  }
  return meanScores(scores);
}

export async function fit(s: Session, train: Split, val: Split, batch: number, o: FitOptions) {
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
