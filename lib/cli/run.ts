/**
 * `deno task run <experiment.yaml> [--backend auto|webgpu|cpu]`: trains and evaluates the experiment,
 * printing one line per epoch. Exit codes (design.md 5): 0 success, 2 bad input, 1 internal.
 */
import { parseExperiment } from "../config/demo_schema.ts";
import { readExperimentFile, runCli } from "./common.ts";
import { runExperiment } from "../run/experiment.ts";
import { type BackendRequest, BACKENDS } from "../backends/select.ts";

const USAGE = "usage: deno task run <experiment.yaml> [--backend auto|webgpu|cpu]";

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  let backend: string | undefined;
  const bi = args.indexOf("--backend");
  if (bi >= 0) {
    backend = args[bi + 1];
    args.splice(bi, 2);
    if (!BACKENDS.includes(backend as BackendRequest)) {
      console.error(`--backend must be one of ${BACKENDS.join(", ")} (got ${backend})\n${USAGE}`);
      return 2;
    }
  }
  const file = args[0];
  if (!file || args.length > 1) {
    console.error(USAGE);
    return 2;
  }
  const exp = parseExperiment(file, await readExperimentFile(file));
  if (backend) exp.backend = backend as BackendRequest;
  await runExperiment(exp, { log: (s) => console.log(s) });
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
