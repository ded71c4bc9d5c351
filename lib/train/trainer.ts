/**
 * The reference training recipe as a resumable loop (lvit-reference.md 5): Adam with a per-epoch
 * learning-rate schedule, seeded shuffling and augmentation, validation Dice after each epoch,
 * a "best" checkpoint only from `min_save_epoch` on, early stopping after `patience` epochs
 * without a new best.
 *
 * Everything random is a pure function of (seed, epoch, index) and the Adam step count (with
 * `data.augment_draws: reference-loader`, augmentations are one of (seed, batch position)), and
 * the host keeps no other state than `TrainerState`; so a run resumed from a checkpoint of the
 * device leaves plus that state continues bitwise as if it had never stopped. Files are the
 * caller's business (hooks): this module never touches the disk.
 */
import { permutation } from "../rng/shuffle.ts";
import {
  applyAugment,
  type AugmentDraw,
  type AugmentDrawMode,
  type AugmentOp,
  drawAugment,
  transformPlanes,
} from "../data/augment.ts";
import { referenceLoaderOps } from "../data/reference_draws.ts";
import { binarizePseudo, epiUpdate } from "./epi.ts";
import {
  addTestCounts,
  emptyCounts,
  type ImageScores,
  meanScores,
  pooledScores,
  testScores,
  valScores,
} from "../eval/metrics.ts";
import type { Session } from "./session.ts";
import { lrAt, type ScheduleConfig } from "./schedule.ts";
import { TEXT_INPUT } from "../models/lvit.ts";
import { DivergedError } from "./errors.ts";

/**
 * The input geometry the programs are compiled for: `batch` images of `channels` x `size` x
 * `size` (an experiment's comes from its one assembly, lib/run/experiment.ts).
 */
export interface Geometry {
  /** Images per program run. */
  batch: number;
  /** Image channels. */
  channels: number;
  /** Image height and width in pixels. */
  size: number;
}

/** What scores a split: eval-mode probabilities of a batch (a `Session` or an `Inference`). */
export interface Predictor {
  /** Probabilities [B, 1, S, S] of a batch of images (`extra`: e.g. LViT's `text`). */
  predict(x: Float32Array, extra?: Record<string, Float32Array>): Promise<Float32Array>;
}

/** A split as the trainer sees it: streamed images and masks, plus text features. */
export interface Samples {
  /** Number of samples. */
  n: number;
  /** Fills images (k x C x S x S) and masks (k x S x S) for `indices` in order. */
  read(indices: readonly number[], images: Float32Array, masks: Float32Array): Promise<void>;
  /** Per-sample text features (tokens x dim), or null for a model without text. */
  text: Float32Array[] | null;
}

/** The recipe (the experiment file's `train` section, resolved). */
export interface Recipe {
  /** Epochs at most. */
  epochs: number;
  /** Training batch size. */
  batch: number;
  /** Initial learning rate. */
  lr: number;
  /** Learning-rate schedule, stepped once per epoch. */
  schedule: ScheduleConfig;
  /** Stop after this many epochs without a new best validation Dice. */
  patience: number;
  /** First 1-based epoch whose validation Dice may count as best. */
  min_save_epoch: number;
  /** Validate every this many epochs (and after the last). */
  eval_every: number;
  /** Periodic checkpoint every this many steps (0: at epoch ends only). */
  checkpoint_every: number;
  /** Cap on the training steps of one epoch; null: the whole train split. */
  max_steps_per_epoch: number | null;
}

/**
 * The labeled/unlabeled split of the train split and the semi-supervised schedule
 * (lvit-reference.md 3.2): epochs 1..prototype_epochs train on the labeled subset alone; from
 * then on every epoch starts by predicting the unlabeled images and updating their pseudo
 * labels (EPI: P = beta * P + (1 - beta) * prediction), then trains on labeled batches (ground
 * truth) and unlabeled batches (pseudo labels + LV loss) in a seeded order.
 */
export interface SemiPlan {
  /** Train-split indices trained with their masks (sorted). */
  labeled: number[];
  /** Train-split indices trained without masks (sorted). */
  unlabeled: number[];
  /** Epochs on the labeled subset alone before pseudo labels are made. */
  prototype_epochs: number;
  /** Smooth pseudo labels across epochs (EPI); false: the latest prediction. */
  epi: boolean;
  /** EPI's smoothing factor beta. */
  epi_beta: number;
  /** Train on pseudo labels thresholded at 0.5 instead of probabilities. */
  binarize: boolean;
  /** Per unlabeled position, the contrastive mask of its text (null: no LV loss). */
  contrastive: Float32Array[] | null;
}

/** Where the loop is; saved with every checkpoint and enough to continue exactly. */
export interface TrainerState {
  /** The epoch in progress (1-based). */
  epoch: number;
  /** Steps of that epoch already taken. */
  stepInEpoch: number;
  /** Steps taken in total (equals the Adam step count). */
  steps: number;
  /** Sum of the losses read back so far in this epoch (float64 on the host). */
  lossSum: number;
  /** Best validation Dice so far (-Infinity before any epoch counted). */
  bestDice: number;
  /** 1-based epoch of the best checkpoint; null before one was saved. */
  bestEpoch: number | null;
  /** Training is over (all epochs run, or stopped early). */
  done: boolean;
  /** Early stopping ended training. */
  stoppedEarly: boolean;
}

/** One finished epoch, as logged to metrics.jsonl. */
export interface EpochRecord {
  /** Tells epoch records apart from the other lines of metrics.jsonl. */
  kind: "epoch";
  /** The 1-based epoch. */
  epoch: number;
  /** Training steps this process took in the epoch (fewer after a resume mid-epoch). */
  steps: number;
  /** Mean training loss over the epoch's steps. */
  loss: number;
  /** The learning rate the epoch trained with. */
  lr: number;
  /** Mean validation Dice; null when the epoch did not validate (`eval_every`). */
  val_dice: number | null;
  /** Mean validation IoU; null when the epoch did not validate. */
  val_iou: number | null;
  /** Wall time of the epoch, validation included. */
  seconds: number;
  /** Wall time of the training steps alone (ends with the loss read-back, a sync). */
  train_seconds: number;
  /** Whether this epoch saved a new best checkpoint. */
  best: boolean;
}

/** What the caller does around the loop: progress, logs, checkpoints, interruption. */
export interface TrainerHooks {
  /** After every step (cheap; the GPU may still be working). */
  onStep?(p: { epoch: number; step: number; steps: number; loss: number | null }): void;
  /** After every epoch, with its record (validation and best checkpoint done). */
  onEpoch?(r: EpochRecord): Promise<void> | void;
  /** Saves the leaves and `state` as the resumable checkpoint. */
  checkpoint(state: TrainerState): Promise<void>;
  /** Saves the model as the best checkpoint (validation Dice improved). */
  saveBest(state: TrainerState): Promise<void>;
  /** True once the user asked to stop (SIGINT/SIGTERM): checkpoint and return. */
  interrupted(): boolean;
  /** Stores the pseudo labels an epoch trains with (semi-supervised runs; atomically). */
  savePseudo?(epoch: number, labels: Float32Array): Promise<void>;
  /** The pseudo labels saved for `epoch`, or null if there are none. */
  loadPseudo?(epoch: number): Promise<Float32Array | null>;
}

/** The loss is read back every this many steps: a fixed count keeps the sums reproducible. */
const LOSS_EVERY = 10;

/**
 * Stops training at a non-finite loss sum read back after steps `from`..`to` of epoch `e`
 * (1-based, of `steps`): a DivergedError, thrown before anything of that stretch is saved.
 */
function checkLoss(sum: number, e: number, from: number, to: number, steps: number): void {
  if (Number.isFinite(sum)) return;
  const where = from >= to ? `step ${to}` : `steps ${from}-${to}`;
  throw new DivergedError(
    `training diverged: the loss became ${sum} in epoch ${e}, ${where} of ${steps} (the loss ` +
      `is read back every ${LOSS_EVERY} steps and at each epoch end)`,
  );
}

/** The state of a run that has not started: epoch 1, no steps, no best epoch. */
export function initialState(): TrainerState {
  return {
    epoch: 1,
    stepInEpoch: 0,
    steps: 0,
    lossSum: 0,
    bestDice: -Infinity,
    bestEpoch: null,
    done: false,
    stoppedEarly: false,
  };
}

/** The plan of a fully supervised run: every sample labeled, no second stage. */
export function supervisedPlan(n: number): SemiPlan {
  return {
    labeled: Array.from({ length: n }, (_, i) => i),
    unlabeled: [],
    prototype_epochs: Infinity,
    epi: false,
    epi_beta: 0,
    binarize: false,
    contrastive: null,
  };
}

/** Whether epoch `e` (1-based) trains on the unlabeled images too. */
function isSemiEpoch(plan: SemiPlan, e: number): boolean {
  return plan.unlabeled.length > 0 && e > plan.prototype_epochs;
}

/** One batch of an epoch: train-split indices, and whether they are the unlabeled kind. */
interface BatchPlan {
  unlabeled: boolean;
  /** Positions in plan.labeled or plan.unlabeled. */
  pos: number[];
}

/**
 * The batches of epoch `e`: labeled positions shuffled by (seed, e); in a semi epoch also the
 * unlabeled positions, and the batch order shuffled again on a separate counter range so it
 * does not repeat the sample shuffles. A fully supervised run gets exactly the batches of the
 * plain loop (permutation(n, seed, e) in chunks).
 */
export function epochBatches(plan: SemiPlan, r: Recipe, seed: number, e: number): BatchPlan[] {
  const chunks = (n: number, unlabeled: boolean, salt: number) => {
    const order = permutation(n, seed, e + salt);
    return Array.from({ length: Math.floor(n / r.batch) }, (_, b) => ({
      unlabeled,
      pos: order.slice(b * r.batch, (b + 1) * r.batch),
    }));
  };
  let batches = chunks(plan.labeled.length, false, 0);
  if (isSemiEpoch(plan, e)) {
    const all = [...batches, ...chunks(plan.unlabeled.length, true, SALT_UNLABELED)];
    batches = permutation(all.length, seed, e + SALT_ORDER).map((i) => all[i]);
  }
  return r.max_steps_per_epoch ? batches.slice(0, r.max_steps_per_epoch) : batches;
}

/**
 * The number of steps of epoch `e`, `epochBatches(plan, r, seed, e).length` without shuffling
 * anything (checks of a saved trainer state count the steps of every epoch).
 */
export function stepsInEpoch(plan: SemiPlan, r: Recipe, e: number): number {
  let n = Math.floor(plan.labeled.length / r.batch);
  if (isSemiEpoch(plan, e)) n += Math.floor(plan.unlabeled.length / r.batch);
  return r.max_steps_per_epoch ? Math.min(n, r.max_steps_per_epoch) : n;
}

// Epoch-counter offsets that give the unlabeled shuffle and the batch order their own Philox
// blocks (epochs stay far below 2^20).
const SALT_UNLABELED = 2 ** 20;
const SALT_ORDER = 2 ** 21;

/** Batch buffers for one split and a gather of text features. */
class Batcher {
  readonly x: Float32Array;
  readonly y: Float32Array;
  private readonly rawX: Float32Array;
  private readonly rawY: Float32Array;
  readonly text: Float32Array | null;
  /** The contrastive mask of runs without the LV loss (the program does not read it). */
  private readonly noMask: Float32Array;

  readonly batch: number;
  readonly size: number;
  /** Values of one image (channels x size x size). */
  readonly image: number;

  constructor(readonly s: Samples, readonly geo: Geometry) {
    const { batch, channels, size } = geo;
    const plane = size * size;
    this.batch = batch;
    this.size = size;
    this.image = channels * plane;
    this.noMask = new Float32Array(plane);
    this.x = new Float32Array(batch * this.image);
    this.y = new Float32Array(batch * plane);
    this.rawX = new Float32Array(batch * this.image);
    this.rawY = new Float32Array(batch * plane);
    const per = s.text?.[0]?.length ?? 0;
    this.text = s.text ? new Float32Array(batch * per) : null;
  }

  /**
   * Loads `idx` (padding a short batch with its last sample); augments slot k with
   * `aug(k, index)` when `aug` is set.
   */
  async load(
    idx: readonly number[],
    aug: AugmentDraw | null,
  ): Promise<Record<string, Float32Array>> {
    const full = Array.from({ length: this.batch }, (_, k) => idx[Math.min(k, idx.length - 1)]);
    const plane = this.size * this.size, im = this.image;
    await this.s.read(full, aug ? this.rawX : this.x, aug ? this.rawY : this.y);
    if (aug) {
      for (let k = 0; k < this.batch; k++) {
        applyAugment(
          aug(k, full[k]),
          this.rawX.subarray(k * im, (k + 1) * im),
          this.rawY.subarray(k * plane, (k + 1) * plane),
          this.geo.channels,
          this.size,
          this.size,
          this.x.subarray(k * im, (k + 1) * im),
          this.y.subarray(k * plane, (k + 1) * plane),
        );
      }
    }
    return this.gatherText(full);
  }

  private gatherText(full: readonly number[]): Record<string, Float32Array> {
    if (this.text && this.s.text) {
      const per = this.s.text[0].length;
      full.forEach((j, k) => this.text!.set(this.s.text![j], k * per));
    }
    return this.text ? { [TEXT_INPUT]: this.text } : {};
  }

  /**
   * Loads unlabeled samples `idx` (train indices) with their pseudo labels (rows `pos` of
   * `pseudo`) as the masks and their contrastive masks into `c`; one augmentation draw per
   * sample moves image, pseudo label and contrastive mask alike.
   */
  async loadUnlabeled(
    idx: readonly number[],
    pos: readonly number[],
    pseudo: Float32Array,
    contrastive: Float32Array[] | null,
    c: Float32Array,
    aug: AugmentDraw | null,
  ): Promise<Record<string, Float32Array>> {
    const plane = this.size * this.size, im = this.image;
    const S = this.size;
    // The masks of unlabeled images are read (the split's reader fills both) but never used.
    await this.s.read(idx, aug ? this.rawX : this.x, this.rawY);
    for (let k = 0; k < idx.length; k++) {
      const y = pseudo.subarray(pos[k] * plane, (pos[k] + 1) * plane);
      const cm = contrastive ? contrastive[pos[k]] : this.noMask;
      const outY = this.y.subarray(k * plane, (k + 1) * plane);
      const outC = c.subarray(k * plane, (k + 1) * plane);
      if (!aug) {
        outY.set(y);
        outC.set(cm);
        continue;
      }
      const op = aug(k, idx[k]);
      const xk = this.rawX.subarray(k * im, (k + 1) * im);
      const outX = this.x.subarray(k * im, (k + 1) * im);
      applyAugment(op, xk, y, this.geo.channels, S, S, outX, outY);
      // The contrastive mask turns with the image, like the label.
      transformPlanes(op, cm, outC, 1, S, S);
    }
    return this.gatherText(idx);
  }
}

/**
 * The augmentation of batch `b` (of `batch` samples) of epoch `e`: drawn per (seed, epoch, image)
 * through Philox, or, given the reference loader's per-position `table` (reference_draws.ts),
 * the transform it gives slot k of batch b in every epoch.
 */
export function epochDraw(
  seed: number,
  e: number,
  b: number,
  batch: number,
  table: readonly AugmentOp[] | null = null,
): AugmentDraw {
  if (table === null) return (_k, index) => drawAugment(seed, e, index);
  return (k) => table[b * batch + k];
}

/** Eval-mode probabilities of the samples `indices`, in order (n x S x S). */
async function predictAll(
  s: Session,
  data: Samples,
  indices: readonly number[],
  geo: Geometry,
): Promise<Float32Array> {
  const b = new Batcher(data, geo);
  const plane = geo.size * geo.size, batch = geo.batch;
  const out = new Float32Array(indices.length * plane);
  for (let i = 0; i < indices.length; i += batch) {
    const idx = indices.slice(i, i + batch);
    const extra = await b.load(idx, null);
    const p = await s.predict(b.x, extra);
    out.set(p.subarray(0, idx.length * plane), i * plane);
  }
  return out;
}

/**
 * Per-image scores of a split in eval mode (`mean`: their plain mean, the reference's metric)
 * and `pooled`: Dice and IoU of the pixel counts summed over the split, always with the test
 * rule's threshold (prob > 0.5). `each` sees every image's probabilities.
 */
export async function scoreSplit(
  s: Predictor,
  data: Samples,
  geo: Geometry,
  rule: "val" | "test",
  each?: (
    index: number,
    prob: Float32Array,
    mask: Float32Array,
    image: Float32Array,
    score: ImageScores,
  ) => Promise<void> | void,
): Promise<{ mean: ImageScores; per: ImageScores[]; pooled: ImageScores }> {
  const b = new Batcher(data, geo);
  const plane = geo.size * geo.size, batch = geo.batch;
  const score = rule === "val" ? valScores : testScores;
  const per: ImageScores[] = [];
  const counts = emptyCounts();
  for (let i = 0; i < data.n; i += batch) {
    const idx = Array.from({ length: Math.min(batch, data.n - i) }, (_, k) => i + k);
    const extra = await b.load(idx, null);
    const p = await s.predict(b.x, extra);
    for (let k = 0; k < idx.length; k++) {
      // Prediction and masks share the batch layout: image k is at k * plane in both.
      const sc = score(p, b.y, k * plane, plane);
      per.push(sc);
      addTestCounts(counts, p, b.y, k * plane, plane);
      await each?.(
        idx[k],
        p.subarray(k * plane, (k + 1) * plane),
        b.y.subarray(k * plane, (k + 1) * plane),
        b.x.subarray(k * b.image, (k + 1) * b.image),
        sc,
      );
    }
  }
  return { mean: meanScores(per), per, pooled: pooledScores(counts) };
}

/**
 * Trains from `state` until the epochs run out, early stopping triggers or the user interrupts.
 * Returns the state (done or interrupted) after the last checkpoint was written.
 */
export async function train(
  s: Session,
  data: { train: Samples; val: Samples },
  r: Recipe,
  o: {
    seed: number;
    geometry: Geometry;
    augment: boolean;
    /** How augmentations are drawn (`data.augment_draws`); default philox. */
    augmentDraws?: AugmentDrawMode;
    plan?: SemiPlan;
  },
  state: TrainerState,
  hooks: TrainerHooks,
): Promise<TrainerState> {
  const st = { ...state };
  const plan = o.plan ?? supervisedPlan(data.train.n);
  if (Math.floor(plan.labeled.length / r.batch) < 1) {
    throw new RangeError(
      `the labeled training samples (${plan.labeled.length}) are fewer than one batch of ${r.batch}`,
    );
  }
  if (o.geometry.batch !== r.batch) {
    throw new RangeError(`the recipe's batch ${r.batch} is not the programs' ${o.geometry.batch}`);
  }
  const batcher = new Batcher(data.train, o.geometry);
  // The config allows reference-loader only in supervised runs, whose epochs all have the
  // same batches (stepsInEpoch is the same for every epoch).
  const table = o.augmentDraws === "reference-loader"
    ? referenceLoaderOps(stepsInEpoch(plan, r, 1) * r.batch, r.batch, o.seed)
    : null;
  const cBuf = new Float32Array(r.batch * o.geometry.size ** 2);
  let pseudo: Float32Array | null = null;
  let lastLoss: number | null = null;
  while (!st.done && st.epoch <= r.epochs) {
    const e = st.epoch;
    const lr = lrAt(r.schedule, r.lr, e - 1);
    const batches = epochBatches(plan, r, o.seed, e);
    const steps = batches.length;
    const t0 = performance.now();
    const startStep = st.stepInEpoch;
    if (isSemiEpoch(plan, e)) pseudo = await pseudoLabels(s, data.train, plan, o, e, st, hooks);
    for (let b = st.stepInEpoch; b < steps; b++) {
      const bp = batches[b];
      const aug = o.augment ? epochDraw(o.seed, e, b, r.batch, table) : null;
      if (bp.unlabeled) {
        const idx = bp.pos.map((p) => plan.unlabeled[p]);
        const extra = await batcher.loadUnlabeled(
          idx,
          bp.pos,
          pseudo!,
          plan.contrastive,
          cBuf,
          aug,
        );
        s.stepSemi(batcher.x, batcher.y, cBuf, lr, extra);
      } else {
        const extra = await batcher.load(bp.pos.map((p) => plan.labeled[p]), aug);
        s.step(batcher.x, batcher.y, lr, extra);
      }
      st.steps++;
      st.stepInEpoch = b + 1;
      if (st.stepInEpoch % LOSS_EVERY === 0) {
        const sum = await s.takeLossSum();
        checkLoss(sum, e, st.stepInEpoch - LOSS_EVERY + 1, st.stepInEpoch, steps);
        st.lossSum += sum;
        lastLoss = sum / LOSS_EVERY;
      }
      hooks.onStep?.({ epoch: e, step: st.stepInEpoch, steps, loss: lastLoss });
      // On an epoch's last step the epoch-end checkpoint below follows at once.
      const periodic = r.checkpoint_every > 0 && st.steps % r.checkpoint_every === 0 &&
        st.stepInEpoch < steps;
      if (hooks.interrupted() || periodic) {
        await hooks.checkpoint(st);
        if (hooks.interrupted()) return st;
      }
    }
    const rest = await s.takeLossSum();
    checkLoss(rest, e, Math.floor(steps / LOSS_EVERY) * LOSS_EVERY + 1, steps, steps);
    st.lossSum += rest;
    const trainSeconds = (performance.now() - t0) / 1000;
    const loss = st.lossSum / steps;
    let v: ImageScores | null = null;
    if (e % r.eval_every === 0 || e === r.epochs) {
      v = (await scoreSplit(s, data.val, o.geometry, "val")).mean;
    }
    // The reference saves only on a strict improvement and only after epoch min_save_epoch-1.
    const best = v !== null && e >= r.min_save_epoch && v.dice > st.bestDice;
    if (best) {
      st.bestDice = v!.dice;
      st.bestEpoch = e;
      await hooks.saveBest(st);
    }
    const seconds = (performance.now() - t0) / 1000;
    await hooks.onEpoch?.({
      kind: "epoch",
      epoch: e,
      steps: steps - startStep,
      loss,
      lr,
      val_dice: v?.dice ?? null,
      val_iou: v?.iou ?? null,
      seconds,
      train_seconds: trainSeconds,
      best,
    });
    st.epoch = e + 1;
    st.stepInEpoch = 0;
    st.lossSum = 0;
    // Early stopping as the reference: its best_epoch starts at 1 and it stops when
    // epoch_index - best_epoch + 1 > patience with a 0-based epoch_index, i.e. e - best.
    if (e - (st.bestEpoch ?? 1) > r.patience) {
      st.done = true;
      st.stoppedEarly = true;
    }
    if (st.epoch > r.epochs) st.done = true;
    await hooks.checkpoint(st);
    if (hooks.interrupted()) return st;
  }
  return st;
}

/**
 * The pseudo labels epoch `e` trains with. At the epoch's start they are made from the current
 * model (eval mode): the first semi epoch takes the prototype's predictions, later ones the EPI
 * update of the previous epoch's labels (or the plain prediction when EPI is off), and they
 * are saved before the first step. A run resumed inside the epoch reloads them instead, so it
 * trains on exactly the labels the interrupted run used.
 */
async function pseudoLabels(
  s: Session,
  train: Samples,
  plan: SemiPlan,
  o: { geometry: Geometry },
  e: number,
  st: TrainerState,
  hooks: TrainerHooks,
): Promise<Float32Array> {
  if (st.stepInEpoch > 0) {
    const saved = await hooks.loadPseudo?.(e);
    if (!saved) throw new Error(`the pseudo labels of epoch ${e} are missing; cannot resume`);
    return plan.binarize ? binarizePseudo(saved) : saved;
  }
  const labels = await predictAll(s, train, plan.unlabeled, o.geometry);
  if (plan.epi && e - 1 > plan.prototype_epochs) {
    const prev = await hooks.loadPseudo?.(e - 1);
    if (!prev) throw new Error(`the pseudo labels of epoch ${e - 1} are missing`);
    // In place over the prediction: one labels-sized array instead of three.
    epiUpdate(prev, labels, plan.epi_beta, labels);
  }
  await hooks.savePseudo?.(e, labels);
  return plan.binarize ? binarizePseudo(labels) : labels;
}
