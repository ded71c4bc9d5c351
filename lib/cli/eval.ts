/**
 * `deno task eval <run-dir|checkpoint.safetensors> [--split test|val|train] [--backend ...]`:
 * re-evaluates a checkpoint with the reference's test rules and prints Dice and IoU.
 */
import { InputError } from "../config/errors.ts";
import { parseBackend, runCli } from "./common.ts";
import { evaluate } from "../run/evaluate.ts";
import type { BackendRequest } from "../backends/select.ts";

const USAGE =
  "usage: deno task eval <run-dir|checkpoint.safetensors> [--split test|val|train] [--backend auto|webgpu|cpu]";

async function main(argv: string[]): Promise<number> {
  const pos: string[] = [];
  let split: "test" | "val" | "train" | undefined;
  let backend: BackendRequest | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--split") {
      const v = argv[++i];
      if (v !== "test" && v !== "val" && v !== "train") {
        throw new InputError(`--split must be test, val or train (got ${v})\n${USAGE}`);
      }
      split = v;
    } else if (a === "--backend") backend = parseBackend(argv[++i], USAGE);
    else if (a.startsWith("-")) throw new InputError(`unknown option ${a}\n${USAGE}`);
    else pos.push(a);
  }
  if (pos.length !== 1) throw new InputError(USAGE);
  await evaluate(pos[0], { split, backend });
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
