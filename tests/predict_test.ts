/**
 * `deno task predict` (lib/run/predict.ts): masks of new images from a trained run.
 * - On images of the model's size its masks are byte for byte the PNGs `eval` writes for the
 *   same images (same preprocessing, same program, same threshold).
 * - Images of another size get a mask, an overlay and probabilities at their own size.
 * - Bad input is exit 2 naming the file: an unreadable image, a missing path, a model that reads
 *   text without one, a text table without the image.
 */
import { basename, join } from "node:path";
import { resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { evaluate } from "../lib/run/evaluate.ts";
import { predict, resizePlane } from "../lib/run/predict.ts";
import { decodePng, encodePng } from "../lib/deps.ts";
import { writeXlsx } from "../lib/data/xlsx_write.ts";
import { assert, assertEquals } from "./assert.ts";
import { assertNoStackTrace, denoRun, withTmp } from "./process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CLI = join(ROOT, "lib/cli/predict.ts");
const quiet = { progress: false, signals: false, log: () => {} };

function experiment(dir: string, model: string, epochs: number) {
  return resolveExperimentText(
    join(dir, "e.yaml"),
    [
      "name: tiny",
      "seed: 5",
      "backend: cpu",
      `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
      `model: ${model}`,
      `train: { epochs: ${epochs}, batch: 2, lr: 0.01, min_save_epoch: 1 }`,
      "eval: { overlays: 0 }",
    ].join("\n"),
  );
}

async function synthTestFolder(dir: string): Promise<string> {
  for await (const e of Deno.readDir(join(dir, "cache", "synth"))) {
    return join(dir, "cache", "synth", e.name, "Test_Folder");
  }
  throw new Error("no synthetic data set generated");
}

Deno.test("resizePlane: identity at the same size, cv2 INTER_LINEAR sampling otherwise", () => {
  const src = Float32Array.from([0, 1, 2, 3, 4, 5], (v) => v / 5);
  assertEquals([...resizePlane(src, 3, 2, 3, 2)], [...src]);
  // 2x upscale of a row [0, 1]: half-pixel centres give 0, 0.25, 0.75, 1.
  assertEquals([...resizePlane(Float32Array.from([0, 1]), 2, 1, 4, 1)], [0, 0.25, 0.75, 1]);
});

Deno.test("predict: masks equal eval's on the test images; other sizes come back at their size", async () => {
  await withTmp("lvit-predict-", async (dir) => {
    const run = await runExperiment(
      experiment(dir, "{ name: unet-small, widths: [4, 8], image_size: 32 }", 3),
      { ...quiet, out: join(dir, "runs") },
    );
    await evaluate(run.dir, { split: "test", log: () => {} });
    const test = await synthTestFolder(dir);
    const out = join(dir, "pred");
    const r = await predict(run.dir, [join(test, "img")], { out, log: () => {} });
    assertEquals(r.images.length, 4);
    for (const im of r.images) {
      const evalPng = join(run.dir, "eval", "test-best", `mask_${basename(im.file)}`);
      const [a, b] = [await Deno.readFile(im.mask), await Deno.readFile(evalPng)];
      assert(a.length === b.length && a.every((v, i) => v === b[i]), `${im.mask} != ${evalPng}`);
    }
    // One of them as a 50x37 image: mask, overlay and probabilities at 50x37.
    const src = decodePng(await Deno.readFile(r.images[0].file));
    const w = 50, h = 37, ch = src.channels;
    const big = new Uint8Array(w * h * ch);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < ch; c++) {
          big[(y * w + x) * ch + c] = Number(src.data[((y % 32) * 32 + (x % 32)) * ch + c]);
        }
      }
    }
    const odd = join(dir, "odd.png");
    await Deno.writeFile(
      odd,
      encodePng({ width: w, height: h, channels: ch, depth: 8, data: big }),
    );
    const r2 = await predict(join(run.dir, "checkpoints", "best.safetensors"), [odd], {
      out,
      probabilities: true,
      threshold: 0.4,
      log: () => {},
    });
    const m = decodePng(await Deno.readFile(r2.images[0].mask));
    assertEquals([m.width, m.height, m.channels], [w, h, 1]);
    assert([...m.data].every((v) => v === 0 || v === 255), "mask values are 0 or 255");
    const ov = decodePng(await Deno.readFile(r2.images[0].overlay));
    assertEquals([ov.width, ov.height, ov.channels], [w, h, 3]);
    const pr = decodePng(await Deno.readFile(r2.images[0].probabilities!));
    assertEquals([pr.width, pr.height], [w, h]);
    // Threshold 0.4: foreground exactly where the probability PNG's value exceeds ~0.4 * 255.
    for (let i = 0; i < w * h; i++) {
      if (Math.abs(Number(pr.data[i]) - 102) > 1) {
        assert((m.data[i] === 255) === Number(pr.data[i]) > 102, `pixel ${i}`);
      }
    }
    const summary = JSON.parse(await Deno.readTextFile(join(out, "predict.json")));
    assertEquals([summary.threshold, summary.images.length], [0.4, 1]);

    // Bad input through the CLI: exit 2, the file named, no stack trace.
    const junk = join(dir, "junk.png");
    await Deno.writeTextFile(junk, "not an image");
    for (
      const [args, want] of [
        [[run.dir, junk], "junk.png"],
        [[run.dir, join(dir, "missing.png")], "missing.png"],
        [[run.dir, odd, "--threshold", "2"], "--threshold"],
        [[join(dir, "nowhere"), odd], "nowhere"],
      ] as [string[], string][]
    ) {
      const c = await denoRun([CLI, ...args, "--out", out]);
      assert(c.code === 2, c.text);
      assert(c.text.includes(want), c.text);
      assertNoStackTrace(c.text);
    }
  });
});

Deno.test("predict: a model that reads text needs --text or a table row per image", async () => {
  await withTmp("lvit-predict-text-", async (dir) => {
    const run = await runExperiment(
      experiment(
        dir,
        "{ name: lvit-t, base_channels: 8, image_size: 64, text_tokens: 4 }",
        1,
      ),
      { ...quiet, out: join(dir, "runs") },
    );
    const img = join(await synthTestFolder(dir), "img");
    const out = join(dir, "pred");
    const none = await denoRun([CLI, run.dir, img, "--out", out]);
    assert(none.code === 2, none.text);
    assert(none.text.includes("--text"), none.text);
    assertNoStackTrace(none.text);
    const table = join(dir, "t.xlsx");
    await writeXlsx(table, ["Image", "Description"], [["mask_synth_99999.png", "Nothing here."]]);
    const missing = await denoRun([CLI, run.dir, img, "--texts", table, "--out", out]);
    assert(missing.code === 2, missing.text);
    assert(missing.text.includes("synth_"), missing.text);
    assertNoStackTrace(missing.text);
    const ok = await predict(run.dir, [img], { text: "Left lung infected.", out, log: () => {} });
    assertEquals(ok.images.length, 4);
    assert(ok.images.every((i) => i.text === "Left lung infected."), "text recorded");
  });
});
