/**
 * `deno task data:check`: generated QaTa-named (lib/data/synth.ts) and MosMed-named folders,
 * each damaged one way at a time, checked by running the CLI as a subprocess: exit 2, the
 * damaged file named, no stack trace. A clean folder exits 0; six damages at once are all
 * reported in one run. Plus the library parts (naming detection, TIFF truncation) directly.
 */
import { join } from "node:path";
import { encodePng, UTIF, zipSync } from "../lib/deps.ts";
import { checkDataset, detectKind, pngTruncation, tiffTruncation } from "../lib/data/check.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { buildXlsx } from "../lib/data/xlsx_write.ts";
import { assert } from "./assert.ts";
import { assertNoStackTrace, denoRun } from "./process.ts";

const REPO = new URL("..", import.meta.url).pathname;
const HEADER = ["Image", "Description"];
type Layout = "qata" | "mosmed";

/** A QaTa-named folder: 3 train, 2 val, 2 test samples of 32x32 from the synthetic generator. */
async function makeQata(root: string): Promise<void> {
  await generateSynth({ out: root, train: 3, val: 2, test: 2, size: 32 });
}

/** An uncompressed RGBA TIFF (directory first, pixels after it), as UTIF writes them. */
function tiff(w: number, h: number, v: number): Uint8Array {
  return new Uint8Array(UTIF.encodeImage(new Uint8Array(w * h * 4).fill(v), w, h));
}

const MOSMED: Record<string, { folder: string; table: string; stems: string[] }> = {
  train: { folder: "Train_Folder", table: "Train_text.xlsx", stems: ["ct_0", "ct_1", "ct_2"] },
  val: { folder: "Val_Folder", table: "Val_text.xlsx", stems: ["ct_3", "ct_4"] },
  test: { folder: "Test_Folder", table: "Test_text.xlsx", stems: ["ct_5", "ct_6"] },
};

/**
 * A MosMed-named folder (the MoNuSeg rule: labelcol/<stem>.png for img/<stem>.<ext>, a text
 * table per split); test images are TIFFs as in MoNuSeg's test split.
 */
async function makeMosmed(root: string): Promise<void> {
  const w = 24, h = 16;
  for (const { folder, table, stems } of Object.values(MOSMED)) {
    await Deno.mkdir(join(root, folder, "img"), { recursive: true });
    await Deno.mkdir(join(root, folder, "labelcol"), { recursive: true });
    const rows: string[][] = [];
    for (const [i, stem] of stems.entries()) {
      const rgb = new Uint8Array(w * h * 3).map((_, k) => (k * 7 + i) & 255);
      const img = folder === "Test_Folder" ? { name: `${stem}.tif`, bytes: tiff(w, h, 40 + i) } : {
        name: `${stem}.png`,
        bytes: encodePng({ width: w, height: h, channels: 3, data: rgb }),
      };
      await Deno.writeFile(join(root, folder, "img", img.name), img.bytes);
      const mask = new Uint8Array(w * h);
      mask.fill(255, 0, 40 + 10 * i);
      await Deno.writeFile(
        join(root, folder, "labelcol", `${stem}.png`),
        encodePng({ width: w, height: h, channels: 1, data: mask }),
      );
      rows.push([`${stem}.png`, `Unilateral pulmonary infection, ${stem}.`]);
    }
    await Deno.writeFile(join(root, folder, table), buildXlsx(HEADER, rows));
  }
}

const make = (layout: Layout, root: string) =>
  layout === "qata" ? makeQata(root) : makeMosmed(root);

/** Per layout, the files the damages hit (relative to the root). */
function names(layout: Layout) {
  if (layout === "qata") {
    return {
      trainImage: "Train_Folder/img/synth_00000.png",
      trainMask: "Train_Folder/labelcol/mask_synth_00000.png",
      trainKey: "mask_synth_00000.png",
      trainTable: "Train_Folder/Train_Val_text.xlsx",
      valImage: "Val_Folder/img/synth_00003.png",
      testImage: "Test_Folder/img/synth_00005.png",
      testMask: "Test_Folder/labelcol/mask_synth_00005.png",
      testTable: "Test_Folder/Test_text.xlsx",
    };
  }
  return {
    trainImage: "Train_Folder/img/ct_0.png",
    trainMask: "Train_Folder/labelcol/ct_0.png",
    trainKey: "ct_0.png",
    trainTable: "Train_Folder/Train_text.xlsx",
    valImage: "Val_Folder/img/ct_3.png",
    testImage: "Test_Folder/img/ct_5.tif",
    testMask: "Test_Folder/labelcol/ct_5.png",
    testTable: "Test_Folder/Test_text.xlsx",
  };
}

/** The train table's rows other than `key`, rebuilt from what the generators wrote. */
async function rowsWithout(layout: Layout, root: string, key: string): Promise<string[][]> {
  if (layout === "qata") {
    const meta = JSON.parse(await Deno.readTextFile(join(root, "synth.json")));
    return (meta.samples as { split: string; mask: string; text: string }[])
      .filter((s) => s.split !== "test" && s.mask !== key)
      .map((s) => [s.mask, s.text]);
  }
  return MOSMED.train.stems.filter((s) => `${s}.png` !== key).map((s) => [`${s}.png`, "Text."]);
}

/** One damage: what to break, and what the report must contain. */
interface Damage {
  name: string;
  layouts: Layout[];
  apply(layout: Layout, root: string): Promise<void>;
  expect(layout: Layout): string[];
}

const DAMAGES: Damage[] = [
  {
    name: "mask missing for an image",
    layouts: ["qata", "mosmed"],
    apply: (l, root) => Deno.remove(join(root, names(l).trainMask)),
    expect: (l) => [names(l).trainImage, "mask missing", names(l).trainMask],
  },
  {
    name: "image with no text row",
    layouts: ["qata", "mosmed"],
    apply: async (l, root) => {
      const n = names(l);
      await Deno.writeFile(
        join(root, n.trainTable),
        buildXlsx(HEADER, await rowsWithout(l, root, n.trainKey)),
      );
    },
    expect: (l) => [names(l).trainImage, names(l).trainTable, "no text row"],
  },
  {
    name: "corrupt PNG",
    layouts: ["qata", "mosmed"],
    apply: async (l, root) => {
      const p = join(root, names(l).valImage);
      const bytes = await Deno.readFile(p);
      for (let i = 40; i < bytes.length - 20; i += 7) bytes[i] ^= 0x5a;
      await Deno.writeFile(p, bytes);
    },
    expect: (l) => [names(l).valImage, "PNG"],
  },
  {
    name: "truncated TIFF",
    layouts: ["mosmed"],
    apply: async (l, root) => {
      const p = join(root, names(l).testImage);
      const bytes = await Deno.readFile(p);
      await Deno.writeFile(p, bytes.subarray(0, bytes.length - 300));
    },
    expect: (l) => [names(l).testImage, "truncated TIFF"],
  },
  {
    name: "malformed xlsx",
    layouts: ["qata", "mosmed"],
    apply: async (l, root) => {
      // QaTa: not a zip at all; MosMed: a zip without the workbook parts.
      const bytes = l === "qata"
        ? new TextEncoder().encode("PK\x03\x04 this is not a workbook")
        : zipSync({ "hello.txt": new TextEncoder().encode("hi") });
      await Deno.writeFile(join(root, names(l).testTable), bytes);
    },
    expect: (l) => [names(l).testTable, "xlsx"],
  },
  {
    name: "text row for a missing image",
    layouts: ["qata", "mosmed"],
    apply: async (l, root) => {
      await Deno.remove(join(root, names(l).testImage));
      await Deno.remove(join(root, names(l).testMask));
    },
    // The row names only the mask; under MosMed naming the image extension is unknown.
    expect: (l) => [
      names(l).testTable,
      names(l).testImage.split("/").pop()!.replace(/\.\w+$/, "."),
      "has no image",
    ],
  },
  {
    name: "image missing for a mask",
    layouts: ["qata", "mosmed"],
    apply: (l, root) => Deno.remove(join(root, names(l).testImage)),
    expect: (l) => [names(l).testMask, "image missing"],
  },
  {
    name: "missing split folder",
    layouts: ["qata", "mosmed"],
    apply: (_l, root) => Deno.remove(join(root, "Val_Folder"), { recursive: true }),
    expect: () => ["Val_Folder", "split folder missing", "expected layout", "labelcol/"],
  },
];

interface CliResult {
  code: number;
  out: string;
}

async function runCheck(root: string, extra: string[] = []): Promise<CliResult> {
  const { code, text } = await denoRun(["lib/cli/data_check.ts", root, ...extra], REPO);
  return { code, out: text };
}

function assertNoStack(r: CliResult, what: string): void {
  assertNoStackTrace(r.out);
  assert(!r.out.includes("internal error"), `${what}: internal error:\n${r.out}`);
}

/**
 * Runs `f` over `items`, at most `n` at a time (subprocesses on a small machine). Waits for all
 * before failing, so no run is still writing when the caller removes the folder, and reports
 * every failure, not only the first.
 */
async function pool<T>(items: T[], n: number, f: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        await f(items[next++]).catch((e) =>
          failures.push(String(e instanceof Error ? e.message : e))
        );
      }
    }),
  );
  if (failures.length) throw new Error(failures.join("\n\n"));
}

Deno.test("data:check CLI: clean QaTa and MosMed folders exit 0 with a line per split", async () => {
  const base = await Deno.makeTempDir({ prefix: "check_" });
  try {
    for (const layout of ["qata", "mosmed"] as const) {
      const root = join(base, layout);
      await make(layout, root);
      const r = await runCheck(root);
      assert(r.code === 0, `${layout}: exit ${r.code}\n${r.out}`);
      assertNoStack(r, layout);
      const want = [3, 2, 2];
      for (const [i, split] of ["train", "val", "test"].entries()) {
        const line = r.out.split("\n").find((x) => x.startsWith(`${split} `));
        assert(line?.includes(`${want[i]} samples`), `${layout} ${split}: ${line}\n${r.out}`);
        assert(line!.includes(`${2 * want[i]} files decoded`), `${layout} ${split}: ${line}`);
      }
      assert(r.out.includes("data:check: OK, 7 samples, 14 files decoded"), r.out);
      // MosMed shares the MoNuSeg naming; detection says so, and --dataset names it.
      const naming = layout === "qata" ? "qata naming" : "monuseg naming";
      assert(r.out.includes(naming), `${layout}: naming line\n${r.out}`);
      if (layout === "mosmed") {
        const m = await runCheck(root, ["--dataset", "mosmed"]);
        assert(m.code === 0 && m.out.includes("mosmed naming"), m.out);
      }
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("data:check CLI: each damage alone gives exit 2 naming the file, no stack", async () => {
  const base = await Deno.makeTempDir({ prefix: "check_" });
  const cases = DAMAGES.flatMap((d) => d.layouts.map((layout) => ({ d, layout })));
  try {
    await pool(cases, 4, async ({ d, layout }) => {
      const root = join(base, `${layout}-${d.name.replaceAll(" ", "_")}`);
      await make(layout, root);
      await d.apply(layout, root);
      const r = await runCheck(root);
      const what = `${layout} / ${d.name}`;
      assert(r.code === 2, `${what}: exit ${r.code}\n${r.out}`);
      assertNoStack(r, what);
      for (const s of d.expect(layout)) {
        assert(r.out.includes(s), `${what}: output lacks '${s}':\n${r.out}`);
      }
    });
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("data:check CLI: six damages at once are all reported in one run", async () => {
  const base = await Deno.makeTempDir({ prefix: "check_" });
  try {
    const root = join(base, "mosmed");
    await makeMosmed(root);
    const f = (p: string) => join(root, p);
    // Six problems on six different files, so none hides another.
    await Deno.remove(f("Train_Folder/labelcol/ct_0.png"));
    await Deno.writeFile(
      f("Train_Folder/Train_text.xlsx"),
      buildXlsx(HEADER, [["ct_0.png", "A."], ["ct_2.png", "C."]]),
    );
    const png = await Deno.readFile(f("Val_Folder/img/ct_3.png"));
    png[png.length - 20] ^= 0xff;
    await Deno.writeFile(f("Val_Folder/img/ct_3.png"), png);
    await Deno.writeFile(f("Val_Folder/Val_text.xlsx"), new Uint8Array([1, 2, 3]));
    const tif = await Deno.readFile(f("Test_Folder/img/ct_5.tif"));
    await Deno.writeFile(f("Test_Folder/img/ct_5.tif"), tif.subarray(0, tif.length - 100));
    await Deno.remove(f("Test_Folder/img/ct_6.tif"));
    await Deno.remove(f("Test_Folder/labelcol/ct_6.png"));
    const r = await runCheck(root);
    assert(r.code === 2, `exit ${r.code}\n${r.out}`);
    assertNoStack(r, "all at once");
    const want = [
      "Train_Folder/img/ct_0.png: mask missing",
      "Train_Folder/img/ct_1.png: no text row",
      "Val_Folder/img/ct_3.png: corrupt or unsupported PNG",
      "Val_Folder/Val_text.xlsx: not a readable xlsx",
      "Test_Folder/img/ct_5.tif: truncated TIFF",
      "Test_Folder/Test_text.xlsx: row Image = ct_6.png has no image",
    ];
    for (const s of want) assert(r.out.includes(s), `lacks '${s}':\n${r.out}`);
    assert(r.out.includes("data:check: 6 problems"), `problem count:\n${r.out}`);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("data:check CLI: usage errors and a missing root exit 2 without a stack", async () => {
  const base = await Deno.makeTempDir({ prefix: "check_" });
  try {
    const bad = await runCheck(base, ["--dataset", "kvasir"]);
    assert(bad.code === 2 && bad.out.includes("--dataset must be one of"), bad.out);
    assertNoStack(bad, "bad --dataset");
    const none = await runCheck(join(base, "nowhere"));
    assert(none.code === 2 && none.out.includes("data root not found"), none.out);
    assert(none.out.includes("expected layout"), none.out);
    assertNoStack(none, "missing root");
    // An empty folder: every split missing, the layout printed once, the default said aloud.
    const empty = await runCheck(base);
    assert(empty.code === 2 && empty.out.includes("assuming qata"), empty.out);
    assert(empty.out.split("expected layout under").length === 2, `layout once:\n${empty.out}`);
    assertNoStack(empty, "empty root");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("check library: naming detection, TIFF truncation, dimension mismatch", async () => {
  const base = await Deno.makeTempDir({ prefix: "check_" });
  try {
    const q = join(base, "q"), m = join(base, "m");
    await makeQata(q);
    await makeMosmed(m);
    assert((await detectKind(q)).kind === "qata", "qata detected");
    assert((await detectKind(m)).kind === "monuseg", "MoNuSeg-style naming detected");
    assert(!(await detectKind(base)).detected, "nothing to detect in a folder of folders");

    const t = tiff(8, 8, 7);
    assert(tiffTruncation(t) === null, "intact TIFF");
    assert(tiffTruncation(t.subarray(0, t.length - 1))?.includes("1 missing"), "one byte short");
    assert(tiffTruncation(t.subarray(0, 20))?.includes("directory"), "directory cut");

    const png = encodePng({ width: 8, height: 8, channels: 1, data: new Uint8Array(64) });
    assert(pngTruncation(png) === null, "intact PNG");
    assert(pngTruncation(png.subarray(0, png.length - 12))?.includes("IEND"), "no IEND");
    assert(pngTruncation(png.subarray(0, 40))?.includes("chunk"), "chunk cut");

    // A mask of another size than its image is reported against the mask.
    await Deno.writeFile(
      join(m, "Train_Folder/labelcol/ct_1.png"),
      encodePng({ width: 8, height: 8, channels: 1, data: new Uint8Array(64) }),
    );
    let calls = 0;
    const r = await checkDataset(m, { kind: "mosmed", onProgress: () => void calls++ });
    assert(r.problems.length === 1, r.problems.map((p) => p.message).join("\n"));
    assert(r.problems[0].path.endsWith("labelcol/ct_1.png"), r.problems[0].message);
    assert(r.problems[0].message.includes("8x8 but its image ct_1.png is 24x16"), "dims message");
    assert(calls === 14 && r.decoded === 14, `progress ${calls}, decoded ${r.decoded}`);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
