/**
 * `deno task inspect <experiment.yaml> [--set a.b=c]... [--json]`: resolves the experiment
 * (lib/config/load.ts: extends, overrides, schema), builds its model for one image
 * ([1, 3, S, S], text [1, 10, 768] where the model reads text) and prints the resolved config,
 * the model's options (value, default, description: its declaration), a per-module table, the parameter and MAC totals and the planned peak memory of the training
 * step (at train.batch) and of evaluation. `--json` prints exactly the design.md 5 object (MACs
 * per image). Exit codes (design.md 5): 0 success, 2 bad input (file:line:col), 1 internal error.
 */
import { type LoadedExperiment, loadExperiment, resolveExperimentText } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import { type ModelOptionRow, modelOptionRows } from "../config/schema.ts";
import { cliArgs, runCli } from "./common.ts";
import { countModel, evalPeak, type ModelCount, trainPeak } from "../models/count.ts";
import { experimentModel, geometryOf } from "../run/experiment.ts";

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
  /** The model's declared options with their values (lib/models/options.ts). */
  options: ModelOptionRow[];
  count: ModelCount;
  peakTrain: number;
  peakEval: number;
}

/** Builds, counts and plans the model of a resolved experiment. */
export function inspectExperiment(loaded: LoadedExperiment): InspectReport {
  const cfg = loaded.config;
  const { name, fn: model } = experimentModel(cfg);
  const { batch, channels, size: S } = geometryOf(cfg);
  return {
    experiment: `${cfg.name}/${cfg.variant}`,
    hash: loaded.hash,
    yaml: loaded.yaml,
    model: name,
    imageSize: S,
    trainBatch: batch,
    options: modelOptionRows(cfg.model),
    count: countModel(model, 1, S, channels),
    peakTrain: trainPeak(model, batch, S, channels).bytes,
    // The evaluation program is planned at the training batch, as the session compiles it.
    peakEval: evalPeak(model, batch, S, channels).bytes,
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

/**
 * The model's options as a text table: YAML key, value (`*`: not the default), default and
 * description, all from the model's declaration.
 */
export function formatModelOptions(rows: readonly ModelOptionRow[]): string {
  const cells = rows.map((o) => {
    const changed = JSON.stringify(o.value) !== JSON.stringify(o.default);
    return [
      o.key,
      `${JSON.stringify(o.value)}${changed ? " *" : ""}`,
      JSON.stringify(o.default),
      o.description,
    ];
  });
  const head = ["option", "value", "default", "description"];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => i < 3 ? x.padEnd(w[i]) : x).join("  ").trimEnd();
  return [line(head), line(w.map((k) => "-".repeat(k))), ...cells.map(line)].join("\n");
}

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
    `model ${r.model} options (* differs from the default)`,
    "",
    formatModelOptions(r.options),
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
