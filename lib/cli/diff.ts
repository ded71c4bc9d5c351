/**
 * `deno task diff <experiment.yaml> [--tol 1e-3]`: one training step of the experiment's model
 * on the webgpu and cpu backends, compared layer by layer (activations, gradients, updates).
 */
import { parseExperiment } from "../config/demo_schema.ts";
import { readExperimentFile, runCli } from "./common.ts";
import { selectBackend } from "../backends/select.ts";
import { blobSet } from "../data/blobs.ts";
import { unet } from "../models/unet.ts";
import { diffTrainStep, formatDiff, overTolerance } from "../run/diff.ts";

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  let tol = 1e-3;
  const ti = args.indexOf("--tol");
  if (ti >= 0) {
    tol = Number(args[ti + 1]);
    args.splice(ti, 2);
    if (!(tol > 0)) {
      console.error("--tol must be a positive number");
      return 2;
    }
  }
  if (args.length !== 1) {
    console.error("usage: deno task diff <experiment.yaml> [--tol 1e-3]");
    return 2;
  }
  {
    const e = parseExperiment(args[0], await readExperimentFile(args[0]));
    const d = blobSet(e.seed, 0, e.train.batch, e.data.size);
    const [a, b] = [await selectBackend("webgpu"), await selectBackend("cpu")];
    const rows = await diffTrainStep(
      (c, x) => unet(c, x, { widths: e.model.widths }),
      {
        batch: e.train.batch,
        channels: 3,
        height: e.data.size,
        width: e.data.size,
        seed: e.seed,
        lr: e.train.lr,
      },
      { x: d.images, y: d.masks },
      a,
      b,
    );
    const updateTol = 2 * e.train.lr + tol;
    console.log(formatDiff(rows, ["webgpu", "cpu"], tol, updateTol));
    const bad = rows.filter((r) => overTolerance(r, tol, updateTol));
    console.log(
      bad.length
        ? `first layer over tolerance: ${bad[0].phase} ${bad[0].layer} (${bad[0].worst})`
        : `all ${rows.length} rows within tolerance`,
    );
    return 0;
  }
}

if (import.meta.main) await runCli(() => main(Deno.args));
