/**
 * `deno task run <experiment.yaml>`: trains and evaluates the experiment on the WebGPU backend,
 * printing one line per epoch. Exit codes (design.md 5): 0 success, 2 bad input, 1 internal.
 */
import { InputError, parseExperiment } from "../config/demo_schema.ts";
import { runExperiment } from "../run/experiment.ts";
import { NoAdapterError } from "../backends/webgpu/device.ts";

async function main(args: string[]): Promise<number> {
  const file = args[0];
  if (!file || args.length > 1) {
    console.error("usage: deno task run <experiment.yaml>");
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
