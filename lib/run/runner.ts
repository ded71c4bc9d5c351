/**
 * Runs an experiment end to end into its run folder (design.md 5): data and text features,
 * model and backend, the reference training recipe with checkpoints, test metrics with the best
 * checkpoint, prediction PNGs, summary.json and report.md. Resumable: `resume` continues from
 * checkpoints/last.safetensors bitwise as if the run had never stopped.
 */
import { basename, join } from "node:path";
import type { LoadedExperiment } from "../config/load.ts";
import type { ExperimentConfig } from "../config/schema.ts";
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import type { Session } from "../train/session.ts";
import {
  epochBatches,
  type EpochRecord,
  initialState,
  type Samples,
  scoreSplit,
  type SemiPlan,
  supervisedPlan,
  train,
  type TrainerState,
} from "../train/trainer.ts";
import { firstNonFinite, loadCheckpoint, saveCheckpoint } from "../io/checkpoint.ts";
import type { OutTensor } from "../io/safetensors.ts";
import { DivergedError } from "../train/errors.ts";
import type { OpenedDataset } from "../data/dataset.ts";
import { countModel } from "../models/count.ts";
import { overlayRgb } from "../report/images.ts";
import { writeReport } from "../report/report.ts";
import {
  createSession,
  dataIdentity,
  experimentModel,
  geometryOf,
  lazyTextEncoder,
  prepareData,
  samples,
  textFeaturesFor,
} from "./experiment.ts";
import {
  appendMetric,
  fileExists,
  gitCommit,
  readMetrics,
  type RunPaths,
  runPaths,
  savePrediction,
  writeAtomic,
  writeMetrics,
} from "./folder.ts";
import { Progress } from "./progress.ts";
import { initSession, readInitSource } from "./init_from.ts";
import { pseudoFiles, semiPlan } from "./semi.ts";
import { LOCK_FILE, RunStateWriter } from "./state.ts";
import {
  backendChange,
  bestMeta,
  checkDataIdentity,
  type CheckpointIdentity,
  lastMeta,
  parseTrainerState,
} from "./checkpoint_meta.ts";
import { formatDuration, parseDuration } from "../config/duration.ts";

/** How to run (the experiment file says what). */
export interface RunOptions {
  /** Runs root (default `runs`). */
  out?: string;
  /** Continue an interrupted run from checkpoints/last.safetensors. */
  resume?: boolean;
  /** Start over even if the run folder holds a run. */
  force?: boolean;
  /** Overrides the experiment's backend. */
  backend?: BackendRequest;
  /** Line output (default console.log). */
  log?: (line: string) => void;
  /** Live progress on stderr (default true). */
  progress?: boolean;
  /** Checkpoint and stop on SIGINT/SIGTERM (default true; off for library use in tests). */
  signals?: boolean;
  /**
   * Behave as if interrupted once this many steps have been taken in total (checkpoint and
   * return): reproducible interruptions for tests and time-boxed jobs.
   */
  stopAfterSteps?: number;
  /**
   * Stop at the first epoch end this many seconds after the process started (checkpoint and
   * return with `timeLimited`); overrides the experiment's `train.time_limit`; null: no limit.
   */
  timeLimit?: number | null;
}

/** design.md 5's summary.json. */
export interface Summary {
  /** The experiment's `name`. */
  experiment: string;
  /** The experiment's `variant`. */
  variant: string;
  /** The experiment's `seed`. */
  seed: number;
  /** The backend that ran (`webgpu` or `cpu`). */
  backend: string;
  /** The adapter (webgpu) or BLAS library (cpu) it ran on. */
  adapter: string;
  /** Trainable parameters of the model. */
  params: number;
  /**
   * Multiply-accumulates of one image's evaluation forward at the run's size (convs, linears and
   * matmuls, attention included: `deno task inspect`'s exact count, lib/models/count.ts).
   */
  macs: number;
  /** Epochs trained. */
  epochs: number;
  /** Training steps taken in all. */
  steps: number;
  /** The 1-based epoch of the best validation Dice; null when no epoch qualified. */
  best_epoch: number | null;
  /** Validation Dice and IoU of the best epoch (null without one). */
  val: { dice: number | null; iou: number | null };
  /**
   * Per-image means (the reference's metric, the headline; f1 = dice) and `pooled`: Dice and IoU
   * of the pixel counts summed over the whole split (what GuideDecoder and its forks report).
   */
  test: { dice: number; iou: number; f1: number; pooled: { dice: number; iou: number } };
  /** Seconds spent in the epochs, validation included. */
  train_seconds: number;
  /** Median over epochs of the mean training step time, ms; null when no step ran. */
  step_ms_median: number | null;
  /** The full config hash (the run folder's name is its first 8 digits). */
  config_hash: string;
  /** Hex SHA-256 of the data and preprocessing. */
  dataset_fingerprint: string;
  /** The data set's identity (lib/data/identity.ts): a rerun on another data set is refused. */
  dataset_identity: string;
  /** Whether early stopping (patience) ended training. */
  stopped_early: boolean;
  /** The split the final evaluation scored. */
  eval_split: "test" | "val";
  /** Which checkpoint was scored: the best epoch's, or the last weights when none was best. */
  eval_checkpoint: "best" | "last";
}

/** What `runExperiment` returns. */
export interface RunResult {
  /** The run folder. */
  dir: string;
  /** Null when the run was interrupted before finishing. */
  summary: Summary | null;
  /** Whether the run stopped before finishing (a signal, a step cap or the time limit). */
  interrupted: boolean;
  /** Interrupted by the time limit (at an epoch end; the CLI exits 75). */
  timeLimited?: boolean;
}

/**
 * The signal that asks a run to stop at its next epoch end (Slurm's warning, `--signal=B:USR2@N`
 * in the sweep's job script).
 */
export const WARNING_SIGNAL: Deno.Signal = "SIGUSR2";

/**
 * Saves a checkpoint unless a tensor is not finite: training that produced NaN or infinite
 * weights is a DivergedError (exit 1), and the file on disk keeps its last finite version.
 */
async function saveFinite(
  path: string,
  tensors: Map<string, OutTensor>,
  meta: Record<string, string>,
  where: string,
): Promise<void> {
  const bad = firstNonFinite(tensors);
  if (bad) {
    throw new DivergedError(
      `training diverged: tensor ${bad.name} holds ${bad.value} (element ${bad.index}) at ` +
        `${where}, not saved to ${basename(path)}`,
    );
  }
  await saveCheckpoint(path, tensors, meta);
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Where a trainer state stands, in words: "the end of epoch 2", "epoch 3, step 5". */
function where(epoch: number, step: number): string {
  if (step > 0) return `epoch ${epoch}, step ${step}`;
  return epoch > 1 ? `the end of epoch ${epoch - 1}` : "before the first step";
}

/**
 * Why an existing run folder blocks a fresh start (called with the folder's lock held).
 * `force` empties the folder, all but run.lock (the lock stays on the same file).
 */
async function checkFolder(p: RunPaths, o: RunOptions): Promise<"fresh" | "resume" | "done"> {
  if (o.force) {
    for await (const e of Deno.readDir(p.dir)) {
      if (e.name !== LOCK_FILE) await Deno.remove(join(p.dir, e.name), { recursive: true });
    }
    return "fresh";
  }
  const hasLast = await fileExists(p.last);
  const hasSummary = await fileExists(p.summary);
  if (hasSummary && !o.resume) return "done";
  if (o.resume) return hasLast ? "resume" : "fresh";
  if (hasLast) {
    throw new InputError(
      `${p.dir}: holds an unfinished run of this config; pass --resume to continue it or ` +
        `--force to start over`,
    );
  }
  return "fresh";
}

/**
 * Runs (or resumes) an experiment into its run folder. While it works there it holds the
 * folder's run.lock; state.json records that, then whether the run finished, paused
 * (interrupted or stopped by the time limit) or failed (lib/run/state.ts).
 */
export async function runExperiment(
  exp: LoadedExperiment,
  o: RunOptions = {},
): Promise<RunResult> {
  const lock = new RunStateWriter();
  let r: RunResult;
  try {
    r = await runClaimed(exp, o, lock);
  } catch (e) {
    await lock.fail(e);
    throw e;
  }
  if (!r.interrupted) await lock.end("finished");
  else await lock.end("paused", r.timeLimited ? "time_limit" : "interrupted");
  return r;
}

/**
 * runExperiment inside the run folder: `lock.take` takes the folder (run.lock) or refuses it
 * (another live process works there: exit 2 naming it) before anything in it is looked at or
 * changed (`--force` included); `lock.begin` records `running` once the run starts.
 */
async function runClaimed(
  exp: LoadedExperiment,
  o: RunOptions,
  lock: RunStateWriter,
): Promise<RunResult> {
  const cfg = exp.config;
  const geo = geometryOf(cfg);
  const log = o.log ?? ((s: string) => console.log(s));
  const paths = runPaths(o.out ?? "runs", cfg.name, cfg.variant, exp.hash);
  // A fresh run starts from model.init_from when set (a resumed one from its own checkpoint);
  // for a new run folder it is read before the folder is made, so a wrong path fails first.
  const isNew = !(await Deno.stat(paths.dir).then(() => true, () => false));
  let init = isNew && exp.initFrom ? await readInitSource(exp.initFrom) : null;
  await Deno.mkdir(join(paths.dir, "checkpoints"), { recursive: true });
  await lock.take(paths.dir, log);
  const mode = await checkFolder(paths, o);
  if (mode === "done") {
    const summary = JSON.parse(await Deno.readTextFile(paths.summary));
    // The same config on another data set (data.root null, another LVIT_DATA) is not this run.
    if (summary.dataset_identity !== undefined) {
      const now = await dataIdentity(cfg, log);
      checkDataIdentity(paths.summary, summary.dataset_identity, now.identity, now.root);
    }
    lock.release();
    log(`${paths.summary} exists: this run is finished (use --force to run it again)`);
    return { dir: paths.dir, summary, interrupted: false };
  }
  if (mode === "fresh" && exp.initFrom && !init) init = await readInitSource(exp.initFrom);
  await Deno.mkdir(join(paths.dir, "checkpoints"), { recursive: true });
  await lock.begin();
  await writeAtomic(paths.config, exp.yaml);

  const t0 = performance.now();
  const ds = await prepareData(cfg, log);
  const created = await createSession(cfg, o.backend ?? cfg.backend).catch((e) => {
    ds.close();
    throw e;
  });
  const { backend, session: s, model } = created;
  // Whatever ends the run (an error in a resumed state, a diverged loss, the time limit), the
  // session's helper threads stop and the data cache closes: a process that runs experiments one
  // after another (the fuzz driver, a script importing the runner) would otherwise keep every
  // failed run's threads and buffers.
  try {
    log(
      `model: ${model.name}, ${
        s.paramCount.toLocaleString("en-US")
      } trained parameters, image ${geo.size}x${geo.size}, batch ${geo.batch}`,
    );
    if (init) {
      await initSession(s, init, paths.dir, log, cfg.model.init_prefix ?? null);
    }
    const encoder = lazyTextEncoder(cfg, model.options, log);
    let text: Awaited<ReturnType<typeof textFeaturesFor>>;
    let plan: SemiPlan | undefined;
    try {
      text = await textFeaturesFor(cfg, s, encoder.open, ds, log);
      plan = cfg.train.labeled_fraction < 1
        ? await semiPlan(cfg, ds, paths.dir, { train: text.train, encoder: encoder.open }, log)
        : undefined;
    } finally {
      await encoder.close();
    }
    const data = {
      train: samples(ds.splits.train, text.train),
      val: samples(ds.splits.val, text.val),
      test: samples(ds.splits.test, text.test),
    };
    log(
      `data: ${ds.kind} at ${ds.root}: ${data.train.n}/${data.val.n}/${data.test.n} ` +
        `train/val/test (fingerprint ${ds.fingerprint.slice(0, 12)}); setup ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
    );
    const recipe = cfg.train;
    const dataId = ds.identity;
    const id: CheckpointIdentity = {
      hash: exp.hash,
      data: dataId,
      backend: backend.name,
      adapter: backend.device,
    };
    // A resumed run's checkpoint is checked (trainer state, data set, finite tensors) before
    // anything in the folder is rewritten.
    let state = initialState();
    let resumed: Awaited<ReturnType<typeof loadCheckpoint>> | null = null;
    if (mode === "resume") {
      resumed = await loadCheckpoint(paths.last, s.leafShapes(false));
      state = parseTrainerState(
        resumed.metadata,
        paths.last,
        exp.hash,
        recipe,
        plan ?? supervisedPlan(data.train.n),
      );
      checkDataIdentity(paths.last, resumed.metadata.get("data_identity"), dataId, ds.root);
      const moved = backendChange(resumed.metadata, backend.name, backend.device);
      if (moved) log(moved);
    }
    await writeAtomic(
      paths.env,
      JSON.stringify(
        {
          deno: Deno.version,
          os: Deno.build.os,
          arch: Deno.build.arch,
          backend: backend.name,
          backend_why: backend.why,
          adapter: backend.device,
          git_commit: await gitCommit(),
          config_hash: exp.fullHash,
          dataset: { kind: ds.kind, root: ds.root, fingerprint: ds.fingerprint, identity: dataId },
          ...(resumed
            ? {
              resumed_from: {
                backend: resumed.metadata.get("backend") ?? null,
                adapter: resumed.metadata.get("adapter") ?? null,
                step: state.steps,
              },
            }
            : {}),
          started: new Date().toISOString(),
        },
        null,
        2,
      ) + "\n",
    );

    let records: EpochRecord[] = [];
    if (resumed) {
      s.loadState(resumed.values, state.steps);
      // The log keeps what the checkpoint covers: epochs before the one in progress.
      records = (await readMetrics(paths.metrics)).filter((m) =>
        m.kind === "epoch" && (m.epoch as number) < state.epoch
      ) as unknown as EpochRecord[];
      log(`resume: epoch ${state.epoch}, step ${state.stepInEpoch} (${state.steps} steps done)`);
    }
    await writeMetrics(paths.metrics, records);

    let stop = false;
    // The time limit counts from the process start (performance.now()'s origin) and is checked
    // at epoch ends only, so every stop leaves a whole epoch behind.
    const limit = o.timeLimit !== undefined ? o.timeLimit : parseDuration(cfg.train.time_limit);
    let timeUp = false;
    const onSignal = () => {
      if (stop) Deno.exit(130);
      stop = true;
      log("\nstopping: writing a checkpoint after this step (again to quit at once)");
    };
    const signals: Deno.Signal[] = o.signals === false ? [] : ["SIGINT", "SIGTERM"];
    for (const sig of signals) Deno.addSignalListener(sig, onSignal);
    // SIGUSR2 is Slurm's warning before a job's time limit (sbatch --signal, passed on by the
    // sweep's job script, lib/sweep/slurm_script.ts): stop as the time limit does, at the next
    // epoch end (exit 75), so the requeued job continues from a whole epoch. Not SIGUSR1: since
    // Deno 2.9.2 that signal also opens the V8 inspector on 127.0.0.1:9229, with no
    // authentication, to anyone on the node (measured: "Debugger listening on ws://...").
    let warned = false;
    const onWarning = () => {
      warned = true;
      log(`\n${WARNING_SIGNAL}: stopping at the end of this epoch (checkpoint, exit 75)`);
    };
    const usr2 = o.signals !== false && Deno.build.os !== "windows";
    if (usr2) Deno.addSignalListener(WARNING_SIGNAL, onWarning);

    const pseudo = pseudoFiles(paths.dir, (plan?.unlabeled.length ?? 0) * geo.size ** 2);
    const steps = epochBatches(plan ?? supervisedPlan(data.train.n), recipe, cfg.seed, 1).length;
    const progress = new Progress(undefined, o.progress === false ? false : undefined);
    progress.start(state.steps);
    // The last finite checkpoint, for the message of a run that diverges after it.
    let saved = resumed ? { epoch: state.epoch, step: state.stepInEpoch } : null;
    const at = (st: TrainerState) => where(st.epoch, st.stepInEpoch);
    const saveLast = async (st: TrainerState) => {
      await saveFinite(paths.last, await s.state(false, true), lastMeta(st, id), at(st));
      saved = { epoch: st.epoch, step: st.stepInEpoch };
    };
    try {
      state = await train(
        s,
        data,
        recipe,
        {
          seed: cfg.seed,
          geometry: geo,
          augment: cfg.data.augment,
          augmentDraws: cfg.data.augment_draws,
          plan,
        },
        state,
        {
          onStep: (p) => {
            if (o.progress === false) return;
            progress.update({
              ...p,
              epochs: recipe.epochs,
              done: (p.epoch - 1) * steps + p.step,
              total: recipe.epochs * steps,
            });
          },
          onEpoch: async (r: EpochRecord) => {
            if (warned || (limit !== null && performance.now() / 1000 >= limit)) timeUp = true;
            records.push(r);
            await appendMetric(paths.metrics, r);
            const v = r.val_dice === null
              ? ""
              : `  val dice ${r.val_dice.toFixed(4)} iou ${r.val_iou!.toFixed(4)}${
                r.best ? " (best)" : ""
              }`;
            progress.line(
              `epoch ${r.epoch}/${recipe.epochs}  loss ${r.loss.toFixed(4)}  lr ${
                r.lr.toExponential(2)
              }${v}  ${(r.steps / r.seconds).toFixed(2)} it/s  ${r.seconds.toFixed(1)} s`,
            );
          },
          checkpoint: saveLast,
          saveBest: async (st) =>
            await saveFinite(paths.best, await s.state(true, true), bestMeta(st, id), at(st)),
          ...pseudo,
          interrupted: () =>
            stop || timeUp || (o.stopAfterSteps !== undefined && s.t >= o.stopAfterSteps),
        },
      );
    } catch (e) {
      if (!(e instanceof DivergedError)) throw e;
      const kept = saved
        ? `${paths.last} keeps the last finite state (${where(saved.epoch, saved.step)})`
        : `nothing was saved (no checkpoint before it)`;
      throw new DivergedError(`${e.message}; ${kept}; try a lower train.lr (now ${recipe.lr})`);
    } finally {
      for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
      if (usr2) Deno.removeSignalListener(WARNING_SIGNAL, onWarning);
    }
    const timeLimited = timeUp && !stop;
    if (!state.done) {
      log(
        timeLimited
          ? `${
            warned
              ? `${WARNING_SIGNAL} (time limit warning)`
              : `time limit ${formatDuration(limit!)}`
          } reached after epoch ${state.epoch - 1} of ` +
            `${recipe.epochs} (${(performance.now() / 1000).toFixed(1)} s since the process ` +
            `started): checkpoint written, resume with --resume`
          : `interrupted at epoch ${state.epoch}, step ${state.stepInEpoch}: resume with --resume`,
      );
      return { dir: paths.dir, summary: null, interrupted: true, timeLimited };
    }
    if (state.stoppedEarly) log(`early stop: ${recipe.patience} epochs without a better val Dice`);

    const summary = await evaluateRun(cfg, exp.hash, paths, s, data, ds, records, state, dataId, {
      backend: backend.name,
      adapter: backend.device,
      log,
    });
    return { dir: paths.dir, summary, interrupted: false };
  } finally {
    s.destroy();
    ds.close();
  }
}

/** Test metrics with the best checkpoint, predictions, summary.json and report.md. */
async function evaluateRun(
  cfg: ExperimentConfig,
  hash: string,
  paths: RunPaths,
  s: Session,
  data: Record<"train" | "val" | "test", Samples>,
  ds: OpenedDataset,
  records: EpochRecord[],
  state: TrainerState,
  dataId: string,
  o: { backend: string; adapter: string; log: (s: string) => void },
): Promise<Summary> {
  const which = state.bestEpoch !== null ? "best" : "last";
  if (which === "best") {
    const r = await loadCheckpoint(paths.best, s.leafShapes(true));
    s.loadState(r.values);
  } else {
    o.log(
      `no best checkpoint (no epoch >= ${cfg.train.min_save_epoch} improved val Dice): ` +
        `testing the last weights`,
    );
  }
  const split = cfg.eval.split;
  const geo = geometryOf(cfg), size = geo.size;
  const keys = ds.splits[split].keys;
  const overlays: { key: string; rgb: Uint8Array; dice: number }[] = [];
  const each = async (i: number, p: Float32Array, y: Float32Array, x: Float32Array, sc: {
    dice: number;
  }) => {
    if (cfg.eval.save_predictions) await savePrediction(paths.predictions, keys[i], p, size);
    if (overlays.length < cfg.eval.overlays) {
      overlays.push({ key: keys[i], rgb: overlayRgb(x, y, p, size), dice: sc.dice });
    }
  };
  const res = await scoreSplit(s, data[split], geo, "test", each);
  const test = {
    dice: res.mean.dice,
    iou: res.mean.iou,
    f1: res.mean.dice,
    pooled: { dice: res.pooled.dice, iou: res.pooled.iou },
  };
  await appendMetric(paths.metrics, { kind: "test", split, checkpoint: which, ...test });
  o.log(
    `${split}: dice ${test.dice.toFixed(4)}  iou ${test.iou.toFixed(4)} (per-image mean) | ` +
      `pooled dice ${test.pooled.dice.toFixed(4)}  iou ${test.pooled.iou.toFixed(4)} ` +
      `(${data[split].n} images, ${which} checkpoint${
        which === "best" ? ` from epoch ${state.bestEpoch}` : ""
      })`,
  );
  const epochs = records;
  const bestRec = epochs.find((r) => r.epoch === state.bestEpoch);
  const summary: Summary = {
    experiment: cfg.name,
    variant: cfg.variant,
    seed: cfg.seed,
    backend: o.backend,
    adapter: o.adapter,
    params: s.paramCount,
    macs: countModel(experimentModel(cfg).fn, 1, geo.size, geo.channels).macs,
    epochs: epochs.length,
    steps: state.steps,
    best_epoch: state.bestEpoch,
    val: { dice: bestRec?.val_dice ?? null, iou: bestRec?.val_iou ?? null },
    test,
    train_seconds: epochs.reduce((t, r) => t + r.seconds, 0),
    step_ms_median: median(
      epochs.filter((r) => r.steps > 0).map((r) => 1000 * r.train_seconds / r.steps),
    ),
    config_hash: hash,
    dataset_fingerprint: ds.fingerprint,
    dataset_identity: dataId,
    stopped_early: state.stoppedEarly,
    eval_split: split,
    eval_checkpoint: which,
  };
  await writeAtomic(paths.summary, JSON.stringify(summary, null, 2) + "\n");
  await writeReport(paths.dir, {
    summary: summary as unknown as Record<string, unknown>,
    epochs,
    configYaml: await Deno.readTextFile(paths.config),
    overlays,
    tileSize: size,
  });
  o.log(`run folder: ${paths.dir}`);
  return summary;
}
