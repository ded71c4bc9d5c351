/**
 * `deno task run <experiment.yaml> [--backend auto|webgpu|cpu]`: trains and evaluates the experiment,
 * printing one line per epoch. Exit codes (design.md 5): 0 success, 2 bad input, 1 internal.
 */
import { InputError, parseExperiment } from "../config/demo_schema.ts";
import { runExperiment } from "../run/experiment.ts";
import { NoAdapterError } from "../backends/webgpu/device.ts";
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
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    console.error(`${file}: cannot read the experiment file (${(e as Error).message})`);
    return 2;
  }
  try {
    const exp = parseExperiment(file, text);
    if (backend) exp.backend = backend as BackendRequest;
    await runExperiment(exp, { log: (s) => console.log(s) });
    return 0;
  } catch (e) {
    if (e instanceof InputError) {
      console.error(e.message);
      return 2;
    }
    if (e instanceof NoAdapterError) {
      console.error(e.message);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
