/**
 * `deno task diff <experiment.yaml> [--set key=value]... [--tol 1e-3]`: one training step of the
 * experiment's model on the webgpu and cpu backends, compared layer by layer (activations,
 * gradients, updates), on a generated batch at the experiment's image size.
 */
import { loadExperiment } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import { cliArgs, runCli } from "./common.ts";
import { selectBackend } from "../backends/select.ts";
import { blobSet } from "../data/blobs.ts";
import { experimentModel, geometryOf } from "../run/experiment.ts";
import { diffTrainStep, formatDiff, overTolerance } from "../run/diff.ts";
import { TEXT_INPUT } from "../models/lvit.ts";
import { fillNormal, Stream } from "../rng/philox.ts";

const USAGE = "usage: deno task diff <experiment.yaml> [--set key=value]... [--tol 1e-3]";

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = cliArgs(argv, {
    set: { type: "string", multiple: true },
    tol: { type: "string" },
  }, USAGE);
  const tol = v.tol === undefined ? 1e-3 : Number(v.tol);
  if (!(tol > 0)) throw new InputError(`--tol must be a positive number\n${USAGE}`);
  if (positionals.length !== 1) throw new InputError(USAGE);
  const { config: cfg } = await loadExperiment(positionals[0], v.set ?? []);
  const { batch: B, channels, size } = geometryOf(cfg);
  const d = blobSet(cfg.seed, 0, B, size);
  const m = experimentModel(cfg);
  const data: Record<string, Float32Array> & { x: Float32Array; y: Float32Array } = {
    x: d.images,
    y: d.masks,
  };
  if (cfg.model.name.startsWith("lvit") && m.options.text) {
    const t = new Float32Array(
      B * (m.options.textTokens as number) * (m.options.textDim as number),
    );
    fillNormal(t, cfg.seed, Stream.data, 1);
    data[TEXT_INPUT] = t;
  }
  const [a, b] = [await selectBackend("webgpu"), await selectBackend("cpu")];
  const rows = await diffTrainStep(
    m.fn,
    { batch: B, channels, height: size, width: size, seed: cfg.seed, lr: cfg.train.lr },
    data,
    a,
    b,
  );
  const updateTol = 2 * cfg.train.lr + tol;
  console.log(formatDiff(rows, ["webgpu", "cpu"], tol, updateTol));
  const bad = rows.filter((r) => overTolerance(r, tol, updateTol));
  console.log(
    bad.length
      ? `first layer over tolerance: ${bad[0].phase} ${bad[0].layer} (${bad[0].worst})`
      : `all ${rows.length} rows within tolerance`,
  );
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
