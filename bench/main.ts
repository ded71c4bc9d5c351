/**
 * `deno task bench [--json FILE] [--quick] [--no-peers] [--backend webgpu|cpu] [--runs N]`: the U-Net train step on our WebGPU
 * backend and, in the same run, the peers (PyTorch CPU, TF.js webgpu and wasm) on the same
 * network, printed as one table with ratios to our figure. Timings are medians of per-step
 * wall times after warm-up; each step waits for the device so peers and we are timed alike.
 */
import { selectBackend } from "../lib/backends/select.ts";
import { compile, Graph, initValues } from "../lib/graph/mod.ts";
import { buildModel } from "../lib/models/registry.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import type { Target } from "../lib/graph/compile.ts";
import { Session } from "../lib/train/session.ts";
import { unet } from "../lib/models/unet.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { benchTorchUnet } from "./peers/torch_unet.ts";
import type { PeerResult } from "./peers/types.ts";

interface Row {
  name: string;
  backend: string;
  shape: string;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  runs: number;
  note?: string;
}

const args = Deno.args;
const flag = (n: string) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const RUNS = Number(flag("runs") ?? 7);
const WARMUP = 2;
const quick = args.includes("--quick");
const peers = !args.includes("--no-peers");
const only = flag("backend");
const targets: Target[] = only === "cpu" || only === "webgpu" ? [only] : ["webgpu", "cpu"];
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function ours(target: Target, size: number, batch: number): Promise<Row> {
  const backend = await selectBackend(target);
  const s = await Session.create(backend, (c, x) => unet(c, x, { widths: [16, 32, 64, 128] }), {
    batch,
    channels: 3,
    height: size,
    width: size,
    seed: 1,
  });
  const d = blobSet(1, 0, batch, size);
  const times: number[] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const t0 = performance.now();
    s.step(d.images, d.masks, 1e-3);
    await s.rt.sync();
    if (i >= WARMUP) times.push(performance.now() - t0);
  }
  s.destroy();
  return {
    name: `unet-small-train-step-${size}x${size}-b${batch}`,
    backend: target,
    shape: `${batch}x3x${size}x${size}`,
    median_ms: median(times),
    min_ms: Math.min(...times),
    max_ms: Math.max(...times),
    runs: RUNS,
    note: backend.device,
  };
}

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
  const exe = await rt.load(compile({ p }, [], backend.limits, backend.name));
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
  return {
    name,
    backend: target,
    shape: "1x3x224x224+1x10x768",
    median_ms: median(times),
    min_ms: Math.min(...times),
    max_ms: Math.max(...times),
    runs,
    note: backend.device,
  };
}

/** TF.js runs in its own process: it installs globals and owns its own WebGPU device. */
async function tfjs(backend: "webgpu" | "wasm", size: number, batch: number): Promise<PeerResult> {
  const script = new URL("./peers/tfjs_unet.ts", import.meta.url).pathname;
  const runs = backend === "webgpu" ? Math.min(RUNS, 5) : RUNS;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      // --no-lock: TF.js is a bench-only peer and stays out of the project's lock file.
      args: [
        "run",
        "-A",
        "--no-lock",
        script,
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
    return { ok: false, reason: `TF.js ${backend} did not run: ${(e as Error).message}` };
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
  const name = `unet-small-train-step-${size}x${size}-b${batch}`;
  const shape = `${batch}x3x${size}x${size}`;
  console.error(`bench: ${name} ...`);
  for (const t of targets) rows.push(await ours(t, size, batch));
  if (!peers) continue;
  rows.push(
    peerRow(name, "torch-cpu", shape, await benchTorchUnet({ size, batch, warmup: 3, runs: 10 })),
  );
  rows.push(peerRow(name, "tfjs-webgpu", shape, await tfjs("webgpu", size, batch)));
  if (size === 64) rows.push(peerRow(name, "tfjs-wasm", shape, await tfjs("wasm", size, batch)));
}

for (const t of targets) {
  const r = await lvitForward(t);
  if (r) rows.push(r);
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : "-");
console.log(
  "| name | backend | shape | median ms | min ms | max ms | runs | time / our fastest | note |",
);
console.log("|---|---|---|---:|---:|---:|---:|---:|---|");
for (const r of rows) {
  // Ratios are relative to our fastest backend on that benchmark.
  const base = rows
    .filter((o) => o.name === r.name && (o.backend === "webgpu" || o.backend === "cpu"))
    .reduce((a, b) => (b.median_ms < a.median_ms ? b : a));
  const ratio = r === base
    ? "1.00"
    : Number.isFinite(r.median_ms)
    ? (r.median_ms / base.median_ms).toFixed(2)
    : "-";
  console.log(
    `| ${r.name} | ${r.backend} | ${r.shape} | ${fmt(r.median_ms)} | ${fmt(r.min_ms)} | ${
      fmt(r.max_ms)
    } | ${r.runs} | ${ratio} | ${r.note ?? ""} |`,
  );
}
const jsonFile = flag("json");
if (jsonFile) {
  const clean = rows.filter((r) => Number.isFinite(r.median_ms)).map(({ note: _n, ...r }) => r);
  await Deno.writeTextFile(jsonFile, JSON.stringify(clean, null, 2) + "\n");
  console.error(`bench: wrote ${jsonFile}`);
}
