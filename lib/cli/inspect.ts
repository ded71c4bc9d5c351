/**
 * `deno task inspect <experiment.yaml> [--set a.b=c]... [--json]`: resolves the experiment
 * (lib/config/load.ts: extends, overrides, schema), builds its model for one image
 * ([1, 3, S, S], text [1, 10, 768] where the model reads text) and prints the resolved config,
 * a per-module table, the parameter and MAC totals and the planned peak memory of the training
 * step (at train.batch) and of evaluation. `--json` prints exactly the design.md 5 object (MACs
 * per image). Exit codes (design.md 5): 0 success, 2 bad input (file:line:col), 1 internal error.
 */
import { type LoadedExperiment, loadExperiment, resolveExperimentText } from "../config/load.ts";
import { modelOptions } from "../config/schema.ts";
import { InputError } from "../config/errors.ts";
import { cliArgs, runCli } from "./common.ts";
import { countModel, evalPeak, type ModelCount, trainPeak } from "../models/count.ts";
import { buildModel } from "../models/registry.ts";

const USAGE = "usage: deno task inspect <experiment.yaml> [--set key.path=value]... [--json]";

/** The design.md 5 contract of `inspect --json`. */
export interface InspectJson {
  params_registered: number;
  params_used: number;
  macs_reference: number;
  macs: number;
  peak_bytes_train: number;
  peak_bytes_eval: number;
}

/** Everything `inspect` reports about one experiment. */
export interface InspectReport {
  /** `name/variant` of the experiment. */
  experiment: string;
  /** The config hash (8 hex digits) and the resolved config as YAML. */
  hash: string;
  yaml: string;
  model: string;
  imageSize: number;
  trainBatch: number;
  count: ModelCount;
  peakTrain: number;
  peakEval: number;
}

/** Builds, counts and plans the model of a resolved experiment. */
export function inspectExperiment(loaded: LoadedExperiment): InspectReport {
  const cfg = loaded.config;
  const { name, options } = modelOptions(cfg);
  // deno-lint-ignore no-explicit-any
  const model = buildModel(name, options as any);
  const S = cfg.model.image_size;
  const batch = cfg.train.batch;
  return {
    experiment: `${cfg.name}/${cfg.variant}`,
    hash: loaded.hash,
    yaml: loaded.yaml,
    model: name,
    imageSize: S,
    trainBatch: batch,
    count: countModel(model, 1, S),
    peakTrain: trainPeak(model, batch, S).bytes,
    // The evaluation program is planned at the training batch, as the session compiles it.
    peakEval: evalPeak(model, batch, S).bytes,
  };
}

/** Resolves (with `--set` overrides), builds, counts and plans an experiment file's text. */
export function inspectText(file: string, text: string, sets: string[] = []): InspectReport {
  return inspectExperiment(resolveExperimentText(file, text, sets));
}

/** The design.md 5 object of a report. */
export function toJson(r: InspectReport): InspectJson {
  return {
    params_registered: r.count.paramsRegistered,
    params_used: r.count.paramsUsed,
    macs_reference: r.count.macsReference,
    macs: r.count.macs,
    peak_bytes_train: r.peakTrain,
    peak_bytes_eval: r.peakEval,
  };
}

const n = (v: number) => v.toLocaleString("en-US");
const g = (v: number) => (v / 1e9).toFixed(3);
const mib = (v: number) => `${(v / 2 ** 20).toFixed(1)} MiB`;

/** The human-readable report. */
export function formatReport(r: InspectReport): string {
  const head = ["module", "output shape", "params", "used", "GMAC (thop)", "GMAC (exact)"];
  const rows = r.count.modules
    .filter((m) => m.paramsRegistered > 0 || m.macs > 0 || m.macsReference > 0)
    .map((m) => [
      m.module,
      m.shape ? m.shape.join("x") : "(unused)",
      n(m.paramsRegistered),
      n(m.paramsUsed),
      g(m.macsReference),
      g(m.macs),
    ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  const c = r.count;
  return [
    `experiment ${r.experiment}, config hash ${r.hash}`,
    "",
    r.yaml.trimEnd(),
    "",
    `model ${r.model}, image ${r.imageSize}x${r.imageSize}, counted for batch 1`,
    "",
    line(head),
    line(w.map((k) => "-".repeat(k))),
    ...rows.map(line),
    "",
    `parameters registered  ${n(c.paramsRegistered)}`,
    `parameters used        ${n(c.paramsUsed)}`,
    `parameters (thop)      ${n(c.paramsThop)}   (used, without position embeddings)`,
    `MACs per image (thop)  ${n(c.macsReference)}   (${g(c.macsReference)} G; "reference")`,
    `MACs per image (exact) ${n(c.macs)}   (${g(c.macs)} G; attention matmuls included)`,
    `peak memory, train     ${mib(r.peakTrain)}   (batch ${r.trainBatch}: forward, loss, ` +
    `backward, Adam)`,
    `peak memory, eval      ${mib(r.peakEval)}   (batch ${r.trainBatch})`,
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = cliArgs(argv, {
    set: { type: "string", multiple: true },
    json: { type: "boolean" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  const r = inspectExperiment(await loadExperiment(positionals[0], v.set ?? []));
  console.log(v.json ? JSON.stringify(toJson(r)) : formatReport(r));
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
