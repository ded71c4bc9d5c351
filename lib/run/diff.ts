/**
 * One training step on two backends, compared node by node and reported per layer: the
 * largest relative difference of activations (forward), gradients (backward) and updated
 * parameters. A wrong kernel shows up as the first layer whose difference jumps.
 */
import { STEP_INPUT } from "../models/lvit_blocks.ts";
import { gradients, Graph, initValues, type Tensor } from "../graph/mod.ts";
import { compile } from "../backends/compile.ts";
import { getOp } from "../graph/graph.ts";
import type { Backend } from "../backends/select.ts";
import type { Model } from "../train/session.ts";
import { segLoss } from "../train/loss.ts";
import { adamHyper, adamUpdate, HYPER } from "../train/optim.ts";

export interface DiffRow {
  layer: string;
  phase: "forward" | "backward" | "update";
  /** Nodes (or parameters) compared in this row. */
  count: number;
  /**
   * max |a - b| over the row's tensors divided by the largest |a| or |b| among them: relative
   * to the layer's scale, so a tensor that is zero up to rounding (the bias gradient of a conv
   * followed by batch norm) does not read as a 100% difference. For `update` rows the absolute
   * max |a - b|, since Adam's first step moves each weight by about lr whatever its size.
   */
  maxRel: number;
  /** The op (or parameter) where the maximum occurred. */
  worst: string;
}

interface Acc {
  row: DiffRow;
  maxDiff: number;
  maxMag: number;
}

export interface DiffOptions {
  batch: number;
  channels: number;
  height: number;
  width: number;
  seed: number;
  lr: number;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function absDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= d)) d = e;
  }
  return d;
}

export async function diffTrainStep(
  model: Model,
  o: DiffOptions,
  data: Record<string, Float32Array> & { x: Float32Array; y: Float32Array },
  a: Backend,
  b: Backend,
): Promise<DiffRow[]> {
  const g = new Graph();
  const x = g.input("x", [o.batch, o.channels, o.height, o.width]);
  const y = g.input("y", [o.batch, 1, o.height, o.width]);
  const p = model({ g, training: true }, x);
  const loss = g.withScope("loss", () => segLoss(p, y));
  const params = g.params();
  const grads = gradients(loss, params);
  const watched = g.nodes.filter((t) =>
    t.kind === "node" && t.size > 0 && !getOp(t.op).alias && !getOp(t.op).inplace
  );
  adamUpdate(g, params, grads);
  const outputs: Record<string, Tensor> = {};
  for (const t of watched) outputs[`n${t.id}`] = t;

  const run = async (be: Backend) => {
    const rt = be.runtime();
    const exe = await rt.load(compile(outputs, g.effects, be.limits, be.name));
    g.leaves().forEach((t, i) =>
      t.init && rt.hasLeaf(t.name!) && rt.write(t.name!, initValues(t.init, t.shape, o.seed, i))
    );
    const inputs: Record<string, Float32Array> = { ...data, [HYPER]: adamHyper(o.lr, 1) };
    if (exe.program.leaves.has(STEP_INPUT)) inputs[STEP_INPUT] = Float32Array.of(1);
    exe.run(inputs);
    const vals = new Map<string, Float32Array>();
    for (const k of Object.keys(outputs)) vals.set(k, await exe.read(k));
    const names = params.map((t) => t.name!);
    (await rt.readMany(names)).forEach((v, i) => vals.set(names[i], v));
    exe.destroy();
    rt.destroy();
    return vals;
  };
  const va = await run(a);
  const vb = await run(b);

  const rows: DiffRow[] = [];
  const byKey = new Map<string, Acc>();
  const note = (
    layer: string,
    phase: DiffRow["phase"],
    x: Float32Array,
    y: Float32Array,
    what: string,
  ) => {
    const key = `${phase}|${layer}`;
    let r = byKey.get(key);
    if (!r) {
      r = { row: { layer, phase, count: 0, maxRel: 0, worst: what }, maxDiff: 0, maxMag: 0 };
      byKey.set(key, r);
      rows.push(r.row);
    }
    r.row.count++;
    const d = absDiff(x, y);
    if (!(d <= r.maxDiff)) {
      r.maxDiff = d;
      r.row.worst = what;
    }
    if (phase !== "update") r.maxMag = Math.max(r.maxMag, maxAbs(x), maxAbs(y));
    r.row.maxRel = phase === "update" || r.maxMag === 0 ? r.maxDiff : r.maxDiff / r.maxMag;
  };
  for (const t of watched) {
    const k = `n${t.id}`;
    const back = t.scope.startsWith("grad:");
    const layer = (back ? t.scope.slice(5) : t.scope) || "(unscoped)";
    note(layer, back ? "backward" : "forward", va.get(k)!, vb.get(k)!, `${t.op}#${t.id}`);
  }
  for (const t of params) {
    const layer = t.name!.replace(/\.[^.]+$/, "");
    note(layer, "update", va.get(t.name!)!, vb.get(t.name!)!, t.name!);
  }
  return rows;
}

/**
 * Whether a row is over tolerance: `tol` for activations and gradients; for updates `updateTol`
 * (absolute), since Adam's first step moves a weight by about lr in the direction of its
 * gradient's sign, and a gradient that is zero up to rounding (a conv bias before batch norm)
 * has a random sign on each backend.
 */
export function overTolerance(r: DiffRow, tol: number, updateTol: number): boolean {
  return !(r.maxRel <= (r.phase === "update" ? updateTol : tol));
}

/** The table `deno task diff` prints; rows over tolerance are marked. */
export function formatDiff(
  rows: DiffRow[],
  names: [string, string],
  tol: number,
  updateTol: number,
): string {
  const out = [
    `largest relative difference per layer, ${names[0]} vs ${names[1]} (marked: > ${tol}; ` +
    `update rows: absolute difference of the updated parameters, marked > ${updateTol})`,
    `${"phase".padEnd(9)} ${"layer".padEnd(28)} ${"tensors".padStart(7)} ${
      "max rel diff".padStart(12)
    }  worst`,
  ];
  for (const r of rows) {
    const mark = overTolerance(r, tol, updateTol) ? "  <<" : "";
    out.push(
      `${r.phase.padEnd(9)} ${r.layer.padEnd(28)} ${String(r.count).padStart(7)} ${
        r.maxRel.toExponential(2).padStart(12)
      }  ${r.worst}${mark}`,
    );
  }
  return out.join("\n");
}
