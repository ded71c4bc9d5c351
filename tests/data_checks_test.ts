/**
 * Issue 15, class 4: `data:check` and training check a data set the same way (one listing
 * check, lib/data/check.ts's checkDataset, and one pair check, lvit_folder.ts's
 * readSamplePair). The case first: a 500x500 mask for a 1000x1000 image was exit 2 in
 * data:check but trained in `run`; then more of the class: a table row naming no file (refused
 * by data:check, ignored by run before), and symbolic links: a data set made of links to files
 * elsewhere (skipped before, so neither command saw a sample) is read as the files they point
 * to, while a link loop and a link to /dev/zero are refused by both, naming the link; a table
 * row with a path in it still matches no file (names never become paths).
 */
import { join } from "node:path";
import { encodePng } from "../lib/deps.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { buildXlsx } from "../lib/data/xlsx_write.ts";
import { readTextTable } from "../lib/data/xlsx.ts";
import { assert } from "./assert.ts";
import { assertNoStackTrace, denoRun, withTmp } from "./process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CHECK = join(ROOT, "lib/cli/data_check.ts");
const RUN = join(ROOT, "lib/cli/run.ts");

/** A QaTa-named folder of 3/2/2 samples of 32x32 (the generator's layout). */
async function makeQata(root: string): Promise<void> {
  await generateSynth({ out: root, train: 3, val: 2, test: 2, size: 32 });
}

/** A tiny run on the folder `root` (U-Net 4-8 at 32x32, one epoch, cpu). */
async function writeExperiment(dir: string, root: string): Promise<string> {
  const e = join(dir, "e.yaml");
  await Deno.writeTextFile(
    e,
    [
      "name: checks",
      "backend: cpu",
      `data: { dataset: qata, root: ${root}, cache_dir: ${join(dir, "cache")} }`,
      "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
      "train: { epochs: 1, batch: 2, lr: 0.01 }",
      "eval: { overlays: 1 }",
    ].join("\n") + "\n",
  );
  return e;
}

/** data:check and run on the same folder. */
async function both(dir: string, root: string) {
  const check = await denoRun([CHECK, root]);
  const run = await denoRun([RUN, await writeExperiment(dir, root), "--out", join(dir, "runs")]);
  return { check, run };
}

/** Both exit 2, each naming every needle, without a stack trace. */
function bothRefuse(r: Awaited<ReturnType<typeof both>>, ...needles: string[]): void {
  for (const [name, x] of Object.entries(r)) {
    assert(x.code === 2, `${name}: exit ${x.code}\n${x.text}`);
    for (const n of needles) assert(x.text.includes(n), `${name} lacks '${n}':\n${x.text}`);
    assertNoStackTrace(x.text);
  }
}

Deno.test("same checks: a 500x500 mask for a 1000x1000 image is exit 2 in data:check and run", async () => {
  await withTmp("lvit-checks-", async (dir) => {
    const root = join(dir, "data");
    await makeQata(root);
    // The case.
    const grey = (n: number, v: number) =>
      encodePng({ width: n, height: n, channels: 1, data: new Uint8Array(n * n).fill(v) });
    await Deno.writeFile(join(root, "Train_Folder/img/synth_00000.png"), grey(1000, 90));
    await Deno.writeFile(join(root, "Train_Folder/labelcol/mask_synth_00000.png"), grey(500, 255));
    bothRefuse(
      await both(dir, root),
      "Train_Folder/labelcol/mask_synth_00000.png: mask is 500x500 but its image " +
        "synth_00000.png is 1000x1000",
    );
  });
});

Deno.test("same checks: a table row naming no file is exit 2 in both", async () => {
  await withTmp("lvit-checks-", async (dir) => {
    const root = join(dir, "data");
    await makeQata(root);
    const table = join(root, "Test_Folder/Test_text.xlsx");
    const rows = [...(await readTextTable(table))].map(([k, v]) => [k, v]);
    rows.push(["mask_ghost.png", "Bilateral pulmonary infection."]);
    await Deno.writeFile(table, buildXlsx(["Image", "Description"], rows));
    bothRefuse(
      await both(dir, root),
      "Test_text.xlsx: row Image = mask_ghost.png has no image: no ghost.png",
    );
  });
});

Deno.test("same checks: symlinked images, masks and tables are read as their targets", async () => {
  await withTmp("lvit-checks-", async (dir) => {
    // The shared copy lives outside the data root; the root holds only links to it.
    const store = join(dir, "store"), root = join(dir, "data");
    await makeQata(store);
    for await (const split of Deno.readDir(store)) {
      if (!split.isDirectory || !split.name.endsWith("_Folder")) continue;
      await Deno.mkdir(join(root, split.name), { recursive: true });
      for await (const e of Deno.readDir(join(store, split.name))) {
        if (e.isFile) {
          await Deno.symlink(join(store, split.name, e.name), join(root, split.name, e.name));
          continue;
        }
        await Deno.mkdir(join(root, split.name, e.name));
        for await (const f of Deno.readDir(join(store, split.name, e.name))) {
          const target = join(store, split.name, e.name, f.name);
          await Deno.symlink(target, join(root, split.name, e.name, f.name));
        }
      }
    }
    const r = await both(dir, root);
    for (const [name, x] of Object.entries(r)) {
      assert(x.code === 0, `${name}: exit ${x.code}\n${x.text}`);
    }
    assert(r.check.text.includes("data:check: OK, 7 samples"), r.check.text);
    assert(r.run.text.includes("test: dice"), r.run.text);
  });
});

Deno.test("same checks: a link loop, a link to /dev/zero and a path in a row are refused by both", async () => {
  await withTmp("lvit-checks-", async (dir) => {
    const root = join(dir, "data");
    await makeQata(root);
    const loop = join(root, "Train_Folder/img/synth_00001.png");
    await Deno.remove(loop);
    await Deno.symlink(loop, loop);
    const zero = join(root, "Val_Folder/labelcol/mask_synth_00003.png");
    await Deno.remove(zero);
    await Deno.symlink("/dev/zero", zero);
    const r = await both(dir, root);
    // data:check lists every problem; run stops at the first file it decodes.
    bothRefuse(r, "Train_Folder/img/synth_00001.png: symbolic link loop");
    assert(
      r.check.text.includes(`${zero}: is a character device, not a regular file`),
      r.check.text,
    );
    // Names from the tables are only looked up among the listed files, never opened.
    const table = join(root, "Test_Folder/Test_text.xlsx");
    const rows = [...(await readTextTable(table))].map(([k, v]) => [k, v]);
    rows.push(["../../../../etc/passwd", "Bilateral pulmonary infection."]);
    await Deno.writeFile(table, buildXlsx(["Image", "Description"], rows));
    const c = await denoRun([CHECK, root]);
    assert(
      c.text.includes(
        "row Image = ../../../../etc/passwd is not a mask name (mask_<image>) " +
          "and matches no file",
      ),
      c.text,
    );
  });
});
