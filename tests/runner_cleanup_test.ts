/**
 * A run that ends in an error after its session exists still stops the session's helper threads
 * (and closes its data): a process that runs experiments one after another, as the fuzz driver
 * does, used to keep every failed run's threads and their buffers, ~16 MiB per tiny run, until it
 * was killed at 2 GiB. Checked in-process with CpuThreads.live: an interrupted
 * run, a resume refused for a damaged trainer state, and a finished resume each leave none.
 */
import { join } from "node:path";
import { resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { CpuThreads } from "../lib/backends/cpu/threads.ts";
import { decodeSafetensors, encodeSafetensors } from "../lib/io/safetensors.ts";
import { assert } from "./assert.ts";
import { withTmp } from "./process.ts";
import { tinyExperiment } from "./fuzz_driver.ts";

Deno.test("runner: every way a run ends stops its CPU helper threads", async () => {
  const prev = Deno.env.get("LVIT_CPU_THREADS");
  Deno.env.set("LVIT_CPU_THREADS", "2");
  try {
    await withTmp("lvit-cleanup-", async (dir) => {
      const text = tinyExperiment(join(dir, "c"));
      const exp = resolveExperimentText(join(dir, "e.yaml"), text);
      const before = CpuThreads.live;
      // The most helpers seen while a run logs: the test means something only if runs start some.
      let seen = 0;
      const log = () => void (seen = Math.max(seen, CpuThreads.live - before));
      const quiet = { progress: false, signals: false, log };
      const out = join(dir, "runs");
      const first = await runExperiment(exp, { ...quiet, out, stopAfterSteps: 1 });
      assert(first.interrupted, "the first run stops after a step");
      assert(seen === 1, `helper threads while the run ran: ${seen}`);
      assert(
        CpuThreads.live === before,
        `helpers left by an interrupted run: ${CpuThreads.live}`,
      );

      // A damaged trainer state: refused after the session (and its threads) started.
      const last = join(first.dir, "checkpoints", "last.safetensors");
      const good = await Deno.readFile(last);
      const d = decodeSafetensors(good, "last.safetensors");
      const tensors = new Map([...d.tensors].map(([k, t]) => [k, {
        shape: t.shape,
        data: t.data,
        dtype: t.dtype === "I64" ? "I64" as const : "F32" as const,
      }]));
      const meta = Object.fromEntries(d.metadata);
      meta.trainer_state = '{"epoch": "x"}';
      await Deno.writeFile(last, encodeSafetensors(tensors, meta));
      const refused = await runExperiment(exp, { ...quiet, out, resume: true }).then(
        () => null,
        (e) => e,
      );
      assert(refused instanceof Error, "a damaged trainer state is refused");
      assert(
        CpuThreads.live === before,
        `helpers left by a refused resume: ${CpuThreads.live}`,
      );

      await Deno.writeFile(last, good);
      const done = await runExperiment(exp, { ...quiet, out, resume: true });
      assert(done.summary !== null, "the resume finishes");
      assert(CpuThreads.live === before, `helpers left by a finished run: ${CpuThreads.live}`);
    });
  } finally {
    if (prev === undefined) Deno.env.delete("LVIT_CPU_THREADS");
    else Deno.env.set("LVIT_CPU_THREADS", prev);
  }
});
