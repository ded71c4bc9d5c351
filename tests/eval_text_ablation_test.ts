/**
 * `deno task eval --text-ablation shift|zeros` (lib/run/text_ablation.ts): the features each image
 * is scored with, the files and records it writes, and its refusals.
 */
import { join } from "node:path";
import { assert, assertEquals, expectRejection } from "./assert.ts";
import { assertNoStackTrace, denoRun, sha256File, withTmp } from "./process.ts";
import { ablateTexts, changedTexts } from "../lib/run/text_ablation.ts";
import { evaluate } from "../lib/run/evaluate.ts";
import { resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { InputError } from "../lib/config/errors.ts";

const EVAL = new URL("../lib/cli/eval.ts", import.meta.url).pathname;

Deno.test("text ablations: shift hands image i the text of image i+1, zeros keeps sizes", () => {
  const a = Float32Array.of(1, 2), b = Float32Array.of(3, 4), c = Float32Array.of(1, 2);
  const shifted = ablateTexts([a, b, c], "shift");
  assert(shifted[0] === b && shifted[1] === c && shifted[2] === a, "shift order");
  assertEquals(ablateTexts([a, b], "zeros").map((t) => [...t]), [[0, 0], [0, 0]]);
  // a and c hold equal values: image 0 (a -> b) and image 1 (b -> c) change, image 2 (c -> a)
  // keeps its values.
  assertEquals(changedTexts([a, b, c], "shift"), 2);
  assertEquals(changedTexts([a, b, c], "zeros"), 3);
  assertEquals(changedTexts([new Float32Array(2)], "zeros"), 0);
  assertEquals(changedTexts([a], "shift"), 0);
});

Deno.test("eval --text-ablation: other texts change the masks, records say which, refusals", async () => {
  await withTmp("lvit-ablate-", async (dir) => {
    // Ten tokens reach past "unilateral/bilateral pulmonary infection ," to the zones, so the
    // test images' features differ (tests/tiny_run.ts keeps four).
    const train = async (name: string, model: string) =>
      await runExperiment(
        resolveExperimentText(
          join(dir, `${name}.yaml`),
          [
            `name: ${name}`,
            "seed: 5",
            "backend: cpu",
            "data: { dataset: synth, synth: { train: 4, val: 2, test: 4 }, " +
            `cache_dir: ${dir}/cache }`,
            `model: ${model}`,
            "train: { epochs: 6, batch: 2, lr: 0.01, min_save_epoch: 1 }",
            "eval: { overlays: 0 }",
          ].join("\n"),
        ),
        { progress: false, signals: false, log: () => {}, out: join(dir, "runs") },
      );
    const run = await train(
      "abl",
      "{ name: lvit-t, base_channels: 8, image_size: 64, text_tokens: 10 }",
    );
    const quiet = { log: () => {} };
    const asIs = await evaluate(run.dir, quiet);
    assertEquals(asIs.text_ablation, undefined);
    const shift = await evaluate(run.dir, { ...quiet, textAblation: "shift" });
    const zeros = await evaluate(run.dir, { ...quiet, textAblation: "zeros" });
    assertEquals(zeros.text_ablation, { mode: "zeros", changed: 4 });
    assertEquals(shift.text_ablation, { mode: "shift", changed: 4 });
    // Each ablation has its own record and prediction folder; the plain one is untouched.
    const evalDir = join(run.dir, "eval");
    const rec = JSON.parse(await Deno.readTextFile(join(evalDir, "test-best-text-zeros.json")));
    assertEquals(rec.text_ablation, zeros.text_ablation);
    assertEquals(rec.dice, zeros.dice);
    assertEquals(
      JSON.parse(await Deno.readTextFile(join(evalDir, "test-best.json"))).dice,
      asIs.dice,
    );
    // The model reads its text, so other features must change some predicted mask.
    const pngs = async (sub: string) => {
      const names = [...Deno.readDirSync(join(evalDir, sub))].map((e) => e.name).sort();
      return await Promise.all(names.map((n) => sha256File(join(evalDir, sub, n))));
    };
    console.log(`dice: as is ${asIs.dice}, shift ${shift.dice}, zeros ${zeros.dice}`);
    const [plain, z] = [await pngs("test-best"), await pngs("test-best-text-zeros")];
    assertEquals(plain.length, 4);
    assert(plain.some((h, i) => h !== z[i]), "zero text features changed no predicted mask");

    // A model without text is refused, in the library and on the command line (exit 2).
    const u = await train("u", "{ name: unet-small, widths: [4, 8], image_size: 32 }");
    await expectRejection(
      "a model without text",
      InputError,
      () => evaluate(u.dir, { ...quiet, textAblation: "shift" }),
      "reads no text",
    );
    const cli = await denoRun([EVAL, u.dir, "--text-ablation", "zeros"]);
    assert(cli.code === 2, cli.text);
    assert(cli.text.includes("unet-small reads no text"), cli.text);
    const bad = await denoRun([EVAL, run.dir, "--text-ablation", "swap"]);
    assert(bad.code === 2, bad.text);
    assert(bad.text.includes("--text-ablation must be shift or zeros (got swap)"), bad.text);
    assertNoStackTrace(cli.text + bad.text);
  });
});
