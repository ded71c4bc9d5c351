/**
 * `deno task eval <run-dir|checkpoint.safetensors> [--split test|val|train] [--backend ...]`:
 * re-evaluates a checkpoint with the reference's test rules and prints Dice and IoU (per-image
 * means, then pooled over the split's pixels). `--checkpoint FILE` scores other weights (a
 * .safetensors or an official PyTorch .pth, read without running pickle code) with the run
 * folder's model and data. A checkpoint holding NaN or infinite weights is
 * refused (exit 2) unless `--allow-non-finite`; a run folder that a run is training is refused
 * (exit 2, naming its process), and so is a checkpoint trained on another data set.
 * `--text-ablation shift|zeros` scores a text-guided model with the next image's text or with
 * all-zero text features (lib/run/text_ablation.ts).
 */
import { InputError } from "../config/errors.ts";
import { cliArgs, parseBackend, runCli } from "./common.ts";
import { evaluate } from "../run/evaluate.ts";
import { isTextAblation, TEXT_ABLATIONS } from "../run/text_ablation.ts";

const USAGE = "usage: deno task eval <run-dir|checkpoint.safetensors> [--split test|val|train] " +
  "[--backend auto|webgpu|cpu] [--allow-non-finite] [--checkpoint FILE.safetensors|FILE.pth] " +
  `[--text-ablation ${TEXT_ABLATIONS.join("|")}]`;

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = cliArgs(argv, {
    split: { type: "string" },
    backend: { type: "string" },
    "allow-non-finite": { type: "boolean" },
    checkpoint: { type: "string" },
    "text-ablation": { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  const split = v.split;
  if (split !== undefined && split !== "test" && split !== "val" && split !== "train") {
    throw new InputError(`--split must be test, val or train (got ${split})\n${USAGE}`);
  }
  const backend = v.backend === undefined ? undefined : parseBackend(v.backend, USAGE);
  const ablation = v["text-ablation"];
  if (ablation !== undefined && !isTextAblation(ablation)) {
    throw new InputError(
      `--text-ablation must be ${TEXT_ABLATIONS.join(" or ")} (got ${ablation})\n${USAGE}`,
    );
  }
  await evaluate(positionals[0], {
    split,
    backend,
    allowNonFinite: v["allow-non-finite"],
    checkpoint: v.checkpoint,
    textAblation: ablation,
  });
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
