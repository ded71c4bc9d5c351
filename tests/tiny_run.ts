/**
 * A tiny LViT-T run with text on generated data (one epoch at 64x64), for the tests that need a
 * trained run folder to export, serve or predict from.
 */
import { join } from "node:path";
import { type LoadedExperiment, resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment, type RunResult } from "../lib/run/runner.ts";

/**
 * Trains the tiny LViT-T `name` in `dir` (data cached in `dir/cache`, runs in `dir/runs`); the
 * run and its resolved experiment.
 */
export async function tinyLvitRun(
  dir: string,
  name: string,
  test: number,
): Promise<{ run: RunResult; exp: LoadedExperiment }> {
  const exp = resolveExperimentText(
    join(dir, "e.yaml"),
    [
      `name: ${name}`,
      "seed: 5",
      "backend: cpu",
      `data: { dataset: synth, synth: { train: 4, val: 2, test: ${test} }, cache_dir: ${dir}/cache }`,
      "model: { name: lvit-t, base_channels: 8, image_size: 64, text_tokens: 4 }",
      "train: { epochs: 1, batch: 2, lr: 0.01, min_save_epoch: 1 }",
      "eval: { overlays: 0 }",
    ].join("\n"),
  );
  const run = await runExperiment(exp, {
    progress: false,
    signals: false,
    log: () => {},
    out: join(dir, "runs"),
  });
  return { run, exp };
}
