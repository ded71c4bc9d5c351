/**
 * Issue 15's fuzz test: seeded mutations of experiment YAML, xlsx tables, PNG/TIFF/JPEG images,
 * safetensors checkpoints and the trainer state of a last.safetensors must end as "read" (the
 * mutation left a valid file) or "refused as bad input" (exit 2, one message), never as an
 * internal error (exit 1, a stack trace), a crash or a hang, and within 2 GiB.
 *
 * Two parts. The library part runs tests/fuzz_driver.ts in a subprocess (a few thousand cases in
 * seconds; each input goes to the function that reads it, the trainer state through
 * `--resume` in-process) under tests/watch.ts, which measures its peak memory (VmHWM from
 * /proc) and kills it past 2 GiB or 120 s; the driver reports every case that was not read or
 * refused, and every case slower than 5 s, with the input saved. The CLI part takes mutants the
 * library refuses and hands them to the commands a user runs (data:check, run, eval,
 * run --resume), each watched the same way: exit 2, no stack trace, under 2 GiB.
 *
 * LVIT_FUZZ_SEED (default 15) and LVIT_FUZZ_SCALE (default 4, cases per format x 300 or so /
 * 4) choose other or longer runs; a failure prints the seed and the saved inputs' folder.
 */
import { join } from "node:path";
import { isInputError } from "../lib/cli/common.ts";
import { loadExperiment } from "../lib/config/load.ts";
import { decodeImage } from "../lib/data/codecs.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { parseXlsx, textTableOf } from "../lib/data/xlsx.ts";
import { decodeSafetensors } from "../lib/io/safetensors.ts";
import { assert } from "./assert.ts";
import { bases, type FuzzReport, mutateBytes, mutateYamlText, Rng } from "./fuzz_driver.ts";
import { assertNoStackTrace, withTmp } from "./process.ts";
import { assertPeakBelow, describeRun, runWatched, type Watched } from "./watch.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CLI = (name: string) => join(ROOT, "lib/cli", name);
const GiB = 2 ** 30;
const env = (k: string, d: number) => {
  try {
    return Number(Deno.env.get(k) ?? d);
  } catch {
    return d;
  }
};
const SEED = env("LVIT_FUZZ_SEED", 15);
const SCALE = env("LVIT_FUZZ_SCALE", 4);

/** Exit 2 with a message naming `file`, no stack trace, under 2 GiB. */
function refusedCleanly(what: string, r: Watched, file: string): void {
  const why = `${what} (seed ${SEED}): ${describeRun(r)}`;
  assert(r.killed === null && r.code === 2, why);
  assert(r.text.includes(file), `names ${file}? ${why}`);
  assertNoStackTrace(r.text);
  assertPeakBelow(r, 2 * GiB, what);
}

Deno.test("fuzz: mutated inputs of every format are read or refused, never a crash, under 2 GiB", async () => {
  const work = await Deno.makeTempDir({ prefix: "lvit-fuzz-" });
  let keep = false;
  try {
    const r = await runWatched(
      [join(ROOT, "tests/fuzz_driver.ts"), work, String(SEED), String(SCALE)],
      { maxBytes: 2 * GiB, timeoutMs: 120_000 },
    );
    const current = await Deno.readTextFile(join(work, "current")).catch(() => "?");
    keep = true;
    assert(r.killed === null && r.code === 0, `driver (at ${current}): ${describeRun(r)}`);
    const report = JSON.parse(
      r.text.trim().split("\n").findLast((l) => l.startsWith("{"))!,
    ) as FuzzReport;
    const bugs = Object.values(report.formats).flatMap((f) => f.bugs);
    const table = Object.entries(report.formats).map(([k, f]) =>
      `${k}: ${f.cases} cases, ${f.accepted} read, ${f.refused} refused, ${f.bugs.length} bugs, ` +
      `slowest ${f.slowestMs.toFixed(0)} ms`
    ).join("\n");
    assert(
      bugs.length === 0,
      `seed ${SEED}: ${bugs.length} cases neither read nor refused (inputs in ${work}):\n` +
        bugs.slice(0, 5).map((b) => `${b.format} case ${b.case}: ${b.error}`).join("\n\n") +
        `\n${table}`,
    );
    // Every format reached both outcomes: the mutations are neither all fatal nor all harmless.
    for (const [k, f] of Object.entries(report.formats)) {
      assert(f.refused > 0 && f.accepted > 0, `${k}: ${f.accepted} read, ${f.refused} refused`);
    }
    assertPeakBelow(r, 2 * GiB, "the fuzz driver");
    if (report.peakBytes !== null) {
      assert(report.peakBytes < 2 * GiB, `own peak ${report.peakBytes}`);
    }
    console.log(
      `seed ${SEED}, scale ${SCALE}: ${report.seconds.toFixed(1)} s, peak ` +
        `${((r.peakBytes ?? 0) / 2 ** 20).toFixed(0)} MiB\n${table}`,
    );
    keep = false;
  } finally {
    if (!keep) await Deno.remove(work, { recursive: true });
  }
});

/** Mutants from `make` that `read` refuses as bad input (the CLIs must then exit 2). */
async function refusedMutants(
  n: number,
  make: () => Uint8Array,
  read: (b: Uint8Array) => unknown,
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let tries = 0; out.length < n && tries < 1000; tries++) {
    const b = make();
    try {
      await read(b);
    } catch (e) {
      if (isInputError(e)) out.push(b);
    }
  }
  assert(out.length === n, `only ${out.length} refused mutants`);
  return out;
}

Deno.test("fuzz: refused mutants through data:check, run, eval and run --resume exit 2", async () => {
  await withTmp("lvit-fuzz-cli-", async (dir) => {
    const r = new Rng(SEED + 1);
    const b = bases();
    const image = (x: Uint8Array) => decodeImage(x, "x");
    // A data set with a damaged image, mask and text table.
    const data = join(dir, "data");
    await generateSynth({ out: data, train: 3, val: 2, test: 2, size: 32 });
    const [img, mask] = await refusedMutants(2, () => mutateBytes(r, b.pngs[0]), image);
    const [tif] = await refusedMutants(1, () => mutateBytes(r, b.tiff), image);
    const [xlsx] = await refusedMutants(
      1,
      () => mutateBytes(r, b.xlsx),
      (x) => textTableOf(parseXlsx(x, "x"), "x"),
    );
    await Deno.writeFile(join(data, "Train_Folder/img/synth_00000.png"), img);
    await Deno.writeFile(join(data, "Val_Folder/labelcol/mask_synth_00003.png"), mask);
    await Deno.writeFile(join(data, "Test_Folder/img/synth_00005.png"), tif);
    await Deno.writeFile(join(data, "Test_Folder/Test_text.xlsx"), xlsx);
    refusedCleanly("data:check", await runWatched([CLI("data_check.ts"), data]), "Test_text.xlsx");

    const cache = join(dir, "cache"), out = join(dir, "runs");
    const tiny = (extra: string, epochs = 2) =>
      [
        "name: fz",
        "seed: 5",
        "backend: cpu",
        extra,
        "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
        `train: { epochs: ${epochs}, batch: 2, lr: 0.01 }`,
        "eval: { overlays: 1, save_predictions: false }",
      ].join("\n") + "\n";
    const onData = join(dir, "data.yaml");
    await Deno.writeTextFile(
      onData,
      tiny(`data: { dataset: qata, root: ${data}, cache_dir: ${cache} }`),
    );
    refusedCleanly(
      "run on the damaged data",
      await runWatched([CLI("run.ts"), onData, "--out", out]),
      "Test_text.xlsx",
    );

    // Damaged experiment files.
    const yamls = await refusedMutants(3, () => mutateYamlText(r, b.yaml), async (x) => {
      await Deno.writeFile(join(dir, "probe.yaml"), x);
      await loadExperiment(join(dir, "probe.yaml"));
    });
    for (const [i, y] of yamls.entries()) {
      await Deno.writeFile(join(dir, `m${i}.yaml`), y);
      refusedCleanly(
        `run m${i}.yaml`,
        await runWatched([CLI("run.ts"), join(dir, `m${i}.yaml`), "--out", out]),
        `m${i}.yaml`,
      );
    }

    // An interrupted run: its checkpoint damaged for eval, its trainer state for --resume.
    const e = join(dir, "e.yaml");
    await Deno.writeTextFile(
      e,
      tiny(
        `data: { dataset: synth, synth: { train: 4, val: 2, test: 2 }, cache_dir: ${cache} }`,
        1000,
      ),
    );
    // Stopped by its time limit at an epoch end: a paused run with a resumable checkpoint.
    const out2 = join(dir, "runs2");
    const first = await runWatched([CLI("run.ts"), e, "--out", out2, "--time-limit", "1"]);
    assert(first.code === 75, describeRun(first));
    const runs = join(out2, "fz", "default");
    const hashes = [];
    for await (const d of Deno.readDir(runs)) hashes.push(d.name);
    assert(hashes.length === 1, `run folders: ${hashes}`);
    const runDir = join(runs, hashes[0]);
    const lastPath = join(runDir, "checkpoints", "last.safetensors");
    const last = await Deno.readFile(lastPath);
    const [bad] = await refusedMutants(
      1,
      () => mutateBytes(r, last),
      (x) => decodeSafetensors(x, "x"),
    );
    await Deno.writeFile(join(runDir, "checkpoints", "best.safetensors"), bad);
    refusedCleanly("eval", await runWatched([CLI("eval.ts"), runDir]), "best.safetensors");
    await Deno.remove(join(runDir, "checkpoints", "best.safetensors"));
    // The trainer state is not JSON any more ('{' -> '[': an array that does not close).
    const meta = decodeSafetensors(last, "last").metadata;
    const text = new TextDecoder().decode(last);
    const at = text.indexOf(JSON.stringify(meta.get("trainer_state")).slice(1, -1));
    assert(at > 0, "trainer_state in the header");
    const broken = last.slice();
    broken[at] = "[".charCodeAt(0);
    await Deno.writeFile(lastPath, broken);
    refusedCleanly(
      "--resume",
      await runWatched([CLI("run.ts"), e, "--out", out2, "--resume"]),
      "last.safetensors",
    );
  });
});
