/**
 * `deno task bench [--json FILE] [--quick] [--no-peers] [--backend webgpu|cpu] [--runs N]
 * [--only SUBSTRING] [--profile] [--profile-nodes N] [--profile-skip FAMILY,...] [--rounds R]
 * [--paired N] [--model NAME,...]`: training steps
 * on our backends and, in the same run, the peers (PyTorch CPU; TF.js and jax-js, each on webgpu and wasm) on the
 * same networks, printed as one table with ratios to our fastest figure. Timings are medians of per-step wall times after warm-up; each
 * step waits for the device so peers and we are timed alike. Rows carry achieved GFLOP/s (conv
 * and matmul FLOPs counted from the compiled graph) and, on WebGPU, dispatches per step.
 *
 * Rows: `unet-small-train-step-{64x64-b2,224x224-b1}` (the engine's 0.48 M U-Net),
 * `lvit-t-train-step-224x224-b2` (the reference LViT-T, 29.9 M parameters, text 10x768; on
 * webgpu only on a hardware adapter) and `lvit-t-forward-224x224-b1` (eval mode). `--only` keeps
 * the rows whose name contains SUBSTRING (or one of a comma-separated list); `--profile` prints,
 * for each of our CPU rows, the time per op family (bench/profile.ts), and `--profile-nodes N`
 * also the N slowest nodes with their shapes (`--profile-skip conv,matmul` leaves those families
 * out of that list). `--model NAME,...` times
 * any registry models' steps instead (see there; with --only, beside the rows it keeps).
 */
import { type Backend, selectBackend } from "../lib/backends/select.ts";
import { Graph, initValues } from "../lib/graph/mod.ts";
import { compile } from "../lib/backends/compile.ts";
import { buildModel, MODEL_NAMES, type ModelName, MODELS } from "../lib/models/registry.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import type { Program, Target } from "../lib/backends/compile.ts";
import { type Model, Session } from "../lib/train/session.ts";
import { unet } from "../lib/models/unet.ts";
import { programFlops } from "../lib/models/count.ts";
import { matmul } from "../lib/graph/ops/transformer.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { benchTorchUnet } from "./peers/torch_unet.ts";
import {
  benchTorchLvit,
  startTorchLvit,
  type TorchLvitServer,
  writeTorchLvitBatch,
} from "./peers/torch_lvit.ts";
import type { PeerResult } from "./peers/types.ts";
import {
  type Profilable,
  profileFamilies,
  profileNodes,
  profileTable,
  slowestNodesTable,
} from "./profile.ts";

interface Row {
  name: string;
  backend: string;
  shape: string;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  runs: number;
  /** Achieved conv + matmul GFLOP/s at the median (ours only). */
  gflops?: number;
  /** Compute dispatches per step (ours on webgpu). */
  dispatches?: number;
  /** The device: adapter name or BLAS library. */
  adapter?: string;
  note?: string;
}

const args = Deno.args;
const flag = (n: string) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const RUNS = Number(flag("runs") ?? 7);
/**
 * `--rounds R` (LViT-T step row): R rounds of (our steps, then the PyTorch peer's steps), so that
 * both are timed under the same load when the host's speed drifts; rows pool the rounds' steps and
 * the note gives each round's ratio. Default 1: ours, then the peer, once.
 */
const ROUNDS = Math.max(1, Math.floor(Number(flag("rounds") ?? 1)) || 1);
/**
 * `--paired N` (LViT-T step row, first target): N pairs of (one step of ours, one step of the
 * PyTorch peer, kept running in its own process), so that the two steps of a pair run seconds
 * apart under the same load; the note gives the median and quartiles of the per-pair ratios.
 * Overrides --rounds for that row.
 */
const PAIRED = Math.max(0, Math.floor(Number(flag("paired") ?? 0)) || 0);
const WARMUP = 2;
const quick = args.includes("--quick");
const peers = !args.includes("--no-peers");
/** `--profile-nodes N`: with the family profile, a table of the N slowest nodes (implies --profile). */
const PROFILE_NODES = Math.max(0, Math.floor(Number(flag("profile-nodes") ?? 0)) || 0);
const profile = args.includes("--profile") || PROFILE_NODES > 0;
/** `--profile-skip FAMILY,...`: op families (bench/profile.ts) left out of the slowest-nodes list. */
const PROFILE_SKIP = flag("profile-skip")?.split(",").filter((f) => f) ?? [];
const only = flag("only")?.split(",");
const models = (flag("model") ?? "").split(",").filter((n) => n !== "");
/** Whether --only (comma-separated substrings; absent: every row) keeps a row. */
const kept = (name: string) => only === undefined || only.some((o) => name.includes(o));
/** The default rows: skipped when --model is given without --only. */
const wanted = (name: string) => (only === undefined && models.length > 0 ? false : kept(name));
const backendFlag = flag("backend");
const targets: Target[] = backendFlag === "cpu" || backendFlag === "webgpu"
  ? [backendFlag]
  : ["webgpu", "cpu"];
/** The f-quantile of `xs` by linear interpolation between order statistics. */
const quantile = (xs: number[], f: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = f * (s.length - 1);
  const lo = Math.floor(at);
  return lo + 1 < s.length ? s[lo] + (at - lo) * (s[lo + 1] - s[lo]) : s[lo];
};
const median = (xs: number[]) => quantile(xs, 0.5);
const profiles: string[] = [];

/** A side's training loss over the paired steps: first, middle and last. */
function lossTrail(who: string, losses: number[]): string {
  if (losses.length === 0) return `${who} loss -`;
  const at = [0, Math.floor((losses.length - 1) / 2), losses.length - 1];
  return `${who} loss ${at.map((i) => losses[i].toFixed(4)).join(" > ")}`;
}

interface StepBench {
  name: string;
  shape: string;
  model: Model;
  batch: number;
  size: number;
  /** The model's other inputs (LViT's text), fixed for every step. */
  extra: Record<string, Float32Array>;
  runs: number;
  /** Skip on a software adapter (minutes per step there). */
  hardwareOnly?: boolean;
}

/** The batch every timed step of `b` trains on (and the PyTorch LViT-T peer, through a file). */
const stepBatch = (b: StepBench) => blobSet(1, 0, b.batch, b.size);

/**
 * Times `b`'s training step (forward, loss, backward, Adam) on one of our backends: `b.runs`
 * steps per round, with `before(r)` awaited before round r's timed steps and `between(r)` after
 * them (another contestant's turn).
 */
async function trainStep(
  target: Target,
  b: StepBench,
  rounds = 1,
  between?: (round: number, ours: number[]) => Promise<void>,
  before?: (round: number) => Promise<void>,
  losses?: number[],
): Promise<Row | null> {
  const backend = await selectBackend(target, true);
  if (b.hardwareOnly && backend.name === "webgpu" && backend.gpu?.software) {
    console.error(`bench: ${b.name} on webgpu skipped (software adapter)`);
    return null;
  }
  const s = await Session.create(backend, b.model, {
    batch: b.batch,
    channels: 3,
    height: b.size,
    width: b.size,
    seed: 1,
  });
  const d = stepBatch(b);
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const round: number[] = [];
    for (let i = 0; i < (r === 0 ? WARMUP : 0) + b.runs; i++) {
      if (i === (r === 0 ? WARMUP : 0)) await before?.(r);
      const t0 = performance.now();
      s.step(d.images, d.masks, 1e-3, b.extra);
      await s.rt.sync();
      const ms = performance.now() - t0;
      // Read after the clock stops (a sync of its own); each read resets the sum.
      const loss = losses ? await s.takeLossSum() : NaN;
      if (r > 0 || i >= WARMUP) {
        round.push(ms);
        losses?.push(loss);
      }
    }
    times.push(...round);
    await between?.(r, round);
  }
  const program = s.train.program;
  if (profile && backend.name === "cpu") {
    const nodes = profileNodes(s.train as unknown as Profilable);
    profiles.push(profileTable(`profile ${b.name} (cpu)`, profileFamilies(nodes)));
    if (PROFILE_NODES > 0) {
      profiles.push(
        slowestNodesTable(`nodes ${b.name} (cpu)`, nodes, PROFILE_NODES, PROFILE_SKIP),
      );
    }
  }
  s.destroy();
  const med = median(times);
  return {
    name: b.name,
    backend: target,
    shape: b.shape,
    median_ms: med,
    min_ms: Math.min(...times),
    max_ms: Math.max(...times),
    runs: times.length,
    gflops: programFlops(program.order) / med / 1e6,
    ...(backend.name === "webgpu" ? { dispatches: program.steps.length } : {}),
    adapter: backend.device,
  };
}

const unetStep = (size: number, batch: number): StepBench => ({
  name: `unet-small-train-step-${size}x${size}-b${batch}`,
  shape: `${batch}x3x${size}x${size}`,
  model: (c, x) => unet(c, x, { widths: [16, 32, 64, 128] }),
  batch,
  size,
  extra: {},
  runs: RUNS,
});

/** The reference LViT-T training step: 224x224, batch 2 (MoNuSeg's recipe), text 10x768. */
const LVIT_STEP: StepBench = {
  name: "lvit-t-train-step-224x224-b2",
  shape: "2x3x224x224+2x10x768",
  model: buildModel("lvit-t"),
  batch: 2,
  size: 224,
  extra: { [TEXT_INPUT]: new Float32Array(2 * 10 * 768).map((_, i) => ((i % 13) - 6) / 10) },
  runs: Math.min(RUNS, 5),
  hardwareOnly: true,
};

/** The same step at batch 4, issue 13's GPU yardstick (no peer: the paired row is batch 2's). */
const LVIT_STEP_B4: StepBench = {
  ...LVIT_STEP,
  name: "lvit-t-train-step-224x224-b4",
  shape: "4x3x224x224+4x10x768",
  batch: 4,
  extra: { [TEXT_INPUT]: new Float32Array(4 * 10 * 768).map((_, i) => ((i % 13) - 6) / 10) },
};

/**
 * Eval-mode forward of the reference-sized LViT-T (224x224, batch 1, text 10x768): the model of
 * issue 4 on our backends. Skipped on a software adapter, where it takes ~2 minutes.
 */
async function lvitForward(target: Target): Promise<Row | null> {
  const backend = await selectBackend(target, true);
  const name = "lvit-t-forward-224x224-b1";
  if (backend.name === "webgpu" && backend.gpu?.software) {
    console.error(`bench: ${name} on webgpu skipped (software adapter)`);
    return null;
  }
  const g = new Graph();
  const x = g.input("x", [1, 3, 224, 224]);
  const p = buildModel("lvit-t")({ g, training: false }, x);
  const rt = backend.runtime();
  const program = compile({ p }, [], backend.limits, backend.name);
  const exe = await rt.load(program);
  g.leaves().forEach((t, i) => {
    if (t.init && rt.hasLeaf(t.name!)) rt.write(t.name!, initValues(t.init, t.shape, 1, i));
  });
  const inputs = {
    x: new Float32Array(3 * 224 * 224).fill(0.5),
    [TEXT_INPUT]: new Float32Array(10 * 768).fill(0.1),
  };
  const times: number[] = [];
  const runs = Math.min(RUNS, 5);
  for (let i = 0; i < WARMUP + runs; i++) {
    const t0 = performance.now();
    exe.run(inputs);
    await exe.read("p");
    if (i >= WARMUP) times.push(performance.now() - t0);
  }
  exe.destroy();
  rt.destroy();
  return timedRow(name, target, "1x3x224x224+1x10x768", times, programFlops(program.order), {
    backend,
    program,
  });
}

/** A row of ours from its step times: GFLOP/s at the median, dispatches on webgpu, adapter. */
function timedRow(
  name: string,
  target: Target,
  shape: string,
  times: number[],
  flops: number,
  on: { backend: Backend; program: Program },
): Row {
  const med = median(times);
  return {
    name,
    backend: target,
    shape,
    median_ms: med,
    min_ms: Math.min(...times),
    max_ms: Math.max(...times),
    runs: times.length,
    gflops: flops / med / 1e6,
    ...(on.backend.name === "webgpu" ? { dispatches: on.program.steps.length } : {}),
    adapter: on.backend.device,
  };
}

/** Side of the square f32 GEMM row (issue 13's yardstick of a backend's matmul throughput). */
const GEMM_N = 4096;

/**
 * `gemm-f32-4096`: C = A B with A, B [4096, 4096] held on the backend (written once, like
 * parameters), timed from submit to completion without reading C back, so that on a GPU the row
 * measures the kernel rather than 64 MB transfers. Skipped on a software adapter (seconds per run
 * there, and no GPU figure).
 */
async function gemmRow(target: Target): Promise<Row | null> {
  const backend = await selectBackend(target, true);
  const name = `gemm-f32-${GEMM_N}`;
  if (backend.name === "webgpu" && backend.gpu?.software) {
    console.error(`bench: ${name} on webgpu skipped (software adapter)`);
    return null;
  }
  const g = new Graph();
  const spec = { kind: "uniform", bound: 1 } as const;
  const c = matmul(g.param("a", [GEMM_N, GEMM_N], spec), g.param("b", [GEMM_N, GEMM_N], spec));
  const rt = backend.runtime();
  const program = compile({ c }, [], backend.limits, backend.name);
  const exe = await rt.load(program);
  g.leaves().forEach((t, i) => rt.write(t.name!, initValues(t.init!, t.shape, 1, i)));
  const times: number[] = [];
  const runs = Math.min(RUNS, 5);
  for (let i = 0; i < WARMUP + runs; i++) {
    const t0 = performance.now();
    exe.run();
    await rt.sync();
    if (i >= WARMUP) times.push(performance.now() - t0);
  }
  exe.destroy();
  rt.destroy();
  return timedRow(name, target, `${GEMM_N}x${GEMM_N}x${GEMM_N}`, times, 2 * GEMM_N ** 3, {
    backend,
    program,
  });
}

/** The in-process JavaScript peers: script, label for failures, and backends. */
const JS_PEERS = {
  tfjs: { script: "./peers/tfjs_unet.ts", label: "TF.js" },
  jaxjs: { script: "./peers/jaxjs_unet.ts", label: "jax-js" },
} as const;

/**
 * A JavaScript peer (TF.js, jax-js) runs in its own process: it installs globals, owns its own
 * WebGPU device, and jax-js's wasm device keeps worker threads alive.
 */
async function jsPeer(
  peer: keyof typeof JS_PEERS,
  backend: "webgpu" | "wasm",
  size: number,
  batch: number,
): Promise<PeerResult> {
  const { script, label } = JS_PEERS[peer];
  const path = new URL(script, import.meta.url).pathname;
  // jax-js's wasm step takes seconds; TF.js's wasm step fails at once (no backprop kernel).
  const runs = backend === "webgpu" || peer === "jaxjs" ? Math.min(RUNS, 5) : RUNS;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      // --no-lock: the peers are bench-only and stay out of the project's lock file.
      args: [
        "run",
        "-A",
        "--no-lock",
        path,
        "--backend",
        backend,
        "--size",
        `${size}`,
        "--batch",
        `${batch}`,
        "--warmup",
        `${WARMUP}`,
        "--runs",
        `${runs}`,
      ],
      stderr: "null",
    }).output();
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
    return JSON.parse(line) as PeerResult;
  } catch (e) {
    return { ok: false, reason: `${label} ${backend} did not run: ${(e as Error).message}` };
  }
}

/** The checked-out commit, so a results file names the code it measured. */
async function gitCommit(): Promise<string | null> {
  try {
    const out = await new Deno.Command("git", {
      args: ["rev-parse", "HEAD"],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

function peerRow(name: string, backend: string, shape: string, r: PeerResult): Row {
  return r.ok
    ? {
      name,
      backend,
      shape,
      median_ms: r.median_ms,
      min_ms: r.min_ms,
      max_ms: r.max_ms,
      runs: r.runs,
    }
    : { name, backend, shape, median_ms: NaN, min_ms: NaN, max_ms: NaN, runs: 0, note: r.reason };
}

const sizes: [number, number][] = quick ? [[64, 2]] : [[64, 2], [224, 1]];
const rows: Row[] = [];
for (const [size, batch] of sizes) {
  const b = unetStep(size, batch);
  if (!wanted(b.name)) continue;
  console.error(`bench: ${b.name} ...`);
  for (const t of targets) {
    const r = await trainStep(t, b);
    if (r) rows.push(r);
  }
  if (!peers) continue;
  rows.push(
    peerRow(
      b.name,
      "torch-cpu",
      b.shape,
      await benchTorchUnet({ size, batch, warmup: 3, runs: 10 }),
    ),
  );
  // The wasm peers only at 64x64: jax-js's wasm step takes seconds there, and 224x224 has 12x
  // the pixels.
  for (const peer of ["tfjs", "jaxjs"] as const) {
    rows.push(
      peerRow(b.name, `${peer}-webgpu`, b.shape, await jsPeer(peer, "webgpu", size, batch)),
    );
    if (size === 64) {
      rows.push(peerRow(b.name, `${peer}-wasm`, b.shape, await jsPeer(peer, "wasm", size, batch)));
    }
  }
}

if (!quick && wanted(LVIT_STEP.name)) {
  console.error(`bench: ${LVIT_STEP.name} ...`);
  // With --rounds, the peer runs after each round of our first target (the CPU when asked for).
  const peerTimes: number[] = [];
  const ratios: string[] = [];
  // Failed peer runs that a retry replaced, reported in the peer's row.
  const peerRetries: string[] = [];
  let peerFailed: PeerResult | null = null;
  // The peer trains on the batch our step trains on.
  const blobs = stepBatch(LVIT_STEP);
  const data = await Deno.makeTempFile({ prefix: "lvit-bench-", suffix: ".f32" });
  await writeTorchLvitBatch(data, blobs.images, LVIT_STEP.extra[TEXT_INPUT], blobs.masks);
  const peerOpts = { batch: LVIT_STEP.batch, warmup: WARMUP, data };
  const peerRound = async (round: number, ours: number[]) => {
    if (!peers || peerFailed) return;
    const r = await benchTorchLvit({ ...peerOpts, runs: LVIT_STEP.runs });
    peerRetries.push(...r.retried.map((why) => `round ${round + 1}: ${why}`));
    if (!r.ok) {
      peerFailed = r;
      return;
    }
    const theirs = r.times_ms ?? [r.median_ms];
    peerTimes.push(...theirs);
    ratios.push((median(ours) / median(theirs)).toFixed(2));
  };
  // --paired: the peer stays up and takes one step next to each of ours, after it in even
  // pairs and before it in odd ones, so that a steady drift favours neither side.
  let server: TorchLvitServer | null = null;
  const pairRatios: number[] = [];
  let theirs: number | null = null;
  const ourLosses: number[] = [];
  const peerLosses: number[] = [];
  const peerTurn = async (pair: number) => {
    theirs = null;
    if (server === null) return;
    const r = await server.step();
    if (r.ok) {
      theirs = r.ms;
      peerLosses.push(r.loss);
      return;
    }
    peerRetries.push(`pair ${pair + 1}: ${r.reason}`);
    // A process that ended answers no more; a failed step (its model rebuilt) may be retried.
    if (r.ended || peerRetries.length > 3) {
      peerFailed = { ok: false, reason: `torch_lvit.py --serve: ${peerRetries.join("; ")}` };
      await server.close();
      server = null;
    }
  };
  const pairBefore = async (pair: number) => {
    if (pair % 2 === 1) await peerTurn(pair);
  };
  const pairAfter = async (pair: number, ours: number[]) => {
    if (pair % 2 === 0) await peerTurn(pair);
    if (theirs === null) return;
    peerTimes.push(theirs);
    pairRatios.push(ours[0] / theirs);
  };
  try {
    if (PAIRED > 0 && peers) {
      const started = await startTorchLvit(peerOpts);
      if (started.ok) server = started.server;
      else peerFailed = started;
    }
    const order = [...targets].sort((a) => (a === "cpu" ? -1 : 1));
    for (const [i, t] of order.entries()) {
      const r = i > 0
        ? await trainStep(t, LVIT_STEP)
        : PAIRED > 0
        ? await trainStep(t, { ...LVIT_STEP, runs: 1 }, PAIRED, pairAfter, pairBefore, ourLosses)
        : await trainStep(t, LVIT_STEP, ROUNDS, peerRound);
      if (r) {
        if (i === 0 && PAIRED > 0 && pairRatios.length > 0) {
          const q = (f: number) => quantile(pairRatios, f).toFixed(3);
          r.note = `ours / torch-cpu over ${pairRatios.length} adjacent pairs: median ${q(0.5)} ` +
            `(quartiles ${q(0.25)}-${q(0.75)}); ${lossTrail("ours", ourLosses)}, ` +
            `${lossTrail("torch", peerLosses)}` +
            (peerFailed ? "; the peer then failed, see its row" : "");
        } else if (i === 0 && ROUNDS > 1 && ratios.length > 0) {
          r.note = `ours / torch-cpu per round: ${ratios.join(", ")}`;
        }
        rows.push(r);
      }
    }
  } finally {
    // TypeScript cannot see the closures' assignments; the cast keeps the null check honest.
    await (server as TorchLvitServer | null)?.close();
  }
  if (peers) {
    if (peerFailed !== null) {
      rows.push(peerRow(LVIT_STEP.name, "torch-cpu", LVIT_STEP.shape, peerFailed));
    } else if (peerTimes.length > 0) {
      rows.push({
        name: LVIT_STEP.name,
        backend: "torch-cpu",
        shape: LVIT_STEP.shape,
        median_ms: median(peerTimes),
        min_ms: Math.min(...peerTimes),
        max_ms: Math.max(...peerTimes),
        runs: peerTimes.length,
        ...(peerRetries.length ? { note: `failed runs retried (${peerRetries.join("; ")})` } : {}),
      });
    } else {
      // No target timed a round (e.g. webgpu skipped on a software adapter): the peer alone.
      const r = await benchTorchLvit({ ...peerOpts, runs: LVIT_STEP.runs });
      const row = peerRow(LVIT_STEP.name, "torch-cpu", LVIT_STEP.shape, r);
      if (r.ok && r.retried.length) row.note = `failed runs retried (${r.retried.join("; ")})`;
      rows.push(row);
    }
  }
  await Deno.remove(data);
}

if (!quick && wanted(LVIT_STEP_B4.name)) {
  console.error(`bench: ${LVIT_STEP_B4.name} ...`);
  for (const t of targets) {
    const r = await trainStep(t, LVIT_STEP_B4);
    if (r) rows.push(r);
  }
}

/**
 * `--model NAME[,NAME...]`: a training-step row `<name>-train-step-<S>x<S>-b2` of any registry
 * model at its default image size S (batch 2, the MoNuSeg recipe's), on each target, without a
 * peer; with --profile, its per-family profile. Alone it replaces the default rows; with --only,
 * only the named models whose row --only keeps run, beside the default rows it keeps. This times
 * the models of the paper's MoNuSeg table (issue 19) before a run is planned. Skipped on a
 * software adapter, like the LViT-T row.
 */
for (const name of models) {
  const entry = MODELS[name as ModelName];
  if (!entry) {
    console.error(`bench: --model: unknown model '${name}'; known: ${MODEL_NAMES.join(", ")}`);
    Deno.exit(2);
  }
  const size = (entry.defaults as { imageSize?: number }).imageSize ?? 224;
  const b: StepBench = {
    name: `${name}-train-step-${size}x${size}-b2`,
    shape: `2x3x${size}x${size}${entry.usesText ? "+2x10x768" : ""}`,
    model: buildModel(name as ModelName),
    batch: 2,
    size,
    extra: entry.usesText ? { [TEXT_INPUT]: LVIT_STEP.extra[TEXT_INPUT] } : {},
    runs: Math.min(RUNS, 5),
    hardwareOnly: true,
  };
  if (!kept(b.name)) continue;
  console.error(`bench: ${b.name} ...`);
  for (const t of targets) {
    const r = await trainStep(t, b);
    if (r) rows.push(r);
  }
}

if (!quick && wanted(`gemm-f32-${GEMM_N}`)) {
  for (const t of targets) {
    const r = await gemmRow(t);
    if (r) rows.push(r);
  }
}

if (!quick && wanted("lvit-t-forward-224x224-b1")) {
  for (const t of targets) {
    const r = await lvitForward(t);
    if (r) rows.push(r);
  }
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : "-");
console.log(
  "| name | backend | shape | median ms | min ms | max ms | runs | GFLOP/s | dispatches | time / our fastest | note |",
);
console.log("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
for (const r of rows) {
  // Ratios are relative to our fastest backend on that benchmark.
  const base = rows
    .filter((o) => o.name === r.name && (o.backend === "webgpu" || o.backend === "cpu"))
    .reduce((a: Row | null, b) => (a === null || b.median_ms < a.median_ms ? b : a), null);
  const ratio = base === null
    ? "-"
    : r === base
    ? "1.00"
    : Number.isFinite(r.median_ms)
    ? (r.median_ms / base.median_ms).toFixed(2)
    : "-";
  console.log(
    `| ${r.name} | ${r.backend} | ${r.shape} | ${fmt(r.median_ms)} | ${fmt(r.min_ms)} | ${
      fmt(r.max_ms)
    } | ${r.runs} | ${r.gflops === undefined ? "" : r.gflops.toFixed(1)} | ${
      r.dispatches ?? ""
    } | ${ratio} | ${r.note ?? r.adapter ?? ""} |`,
  );
}
for (const p of profiles) console.log(`\n${p}`);
const jsonFile = flag("json");
if (jsonFile) {
  const commit = await gitCommit();
  const clean = rows.filter((r) => Number.isFinite(r.median_ms)).map(({ note: _n, ...r }) => ({
    ...r,
    commit,
  }));
  await Deno.writeTextFile(jsonFile, JSON.stringify(clean, null, 2) + "\n");
  console.error(`bench: wrote ${jsonFile}`);
}
