/**
 * Run reports (lib/report): SVG charts are well-formed and reproducible, overlays and PNGs have
 * the pixels they claim, and report.md links exactly the files written next to it.
 */
import { join } from "node:path";
import { decodePng } from "../lib/deps.ts";
import { gridPng, overlayRgb, predictionPng } from "../lib/report/images.ts";
import {
  type EpochRecord,
  renderReport,
  type ReportInput,
  writeReport,
} from "../lib/report/report.ts";
import { lineChartSvg } from "../lib/report/svg.ts";
import { assert, assertEquals, expectError } from "./assert.ts";

/**
 * A small well-formedness check, since Deno has no DOMParser: every tag closes in order,
 * attributes are quoted, `&` only starts a known entity, and there is one root element.
 */
function checkXml(doc: string): void {
  const body = doc.replace(/^<\?xml[^?]*\?>\s*/, "");
  assert(!body.includes("<?") && !body.includes("<!"), "unexpected declaration");
  const bad = body.match(/&(?!(amp|lt|gt|quot|#\d+|#x[0-9a-fA-F]+|apos);)/);
  assert(!bad, `bare & at ${bad?.index}`);
  const stack: string[] = [];
  let roots = 0;
  let last = 0;
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/g;
  for (let m; (m = tag.exec(body));) {
    const between = body.slice(last, m.index);
    assert(!between.includes("<") && !between.includes(">"), `malformed tag near ${m.index}`);
    last = tag.lastIndex;
    const [, close, name, , selfClose] = m;
    if (close) {
      assertEquals(stack.pop(), name);
    } else {
      if (stack.length === 0) roots++;
      if (!selfClose) stack.push(name);
    }
  }
  assert(!body.slice(last).includes("<"), "trailing malformed tag");
  assertEquals(stack, []);
  assertEquals(roots, 1);
}

Deno.test("xml checker rejects broken documents", () => {
  const fails = (s: string) => expectError(`accepted: ${s}`, Error, () => checkXml(s));
  checkXml('<svg a="1"><g><text>x &amp; y</text></g><rect/></svg>');
  fails("<svg><g></svg>");
  fails("<svg><text>a & b</text></svg>");
  fails("<svg><text>a < b</text></svg>");
  fails("<svg a=1></svg>");
  fails("<svg></svg><svg></svg>");
});

Deno.test("lineChartSvg: well-formed, escaped, deterministic", () => {
  const series = [
    { name: "loss <&> 'q\"", points: [[1, 0.9], [2, 0.5], [3, NaN], [4, 0.3], [5, 0.2]] },
    { name: "other", points: [[1, 0.1], [2, Infinity], [3, 0.2], [4, NaN]] },
  ] as { name: string; points: [number, number][] }[];
  const o = { title: "T <1> & 2", xLabel: "epoch & x", yLabel: "y<" };
  const a = lineChartSvg(series, o);
  checkXml(a);
  assert(a.includes("loss &lt;&amp;&gt; &#39;q&quot;"), "legend name not escaped");
  assert(!a.includes("<&>"), "raw name leaked");
  assert(a.includes("T &lt;1&gt; &amp; 2") && a.includes("epoch &amp; x"), "labels not escaped");
  assert(!/NaN|Infinity/.test(a), "non-finite number in output");
  assert(a.startsWith('<?xml version="1.0"'), "xml declaration");
  assert(a.includes('xmlns="http://www.w3.org/2000/svg"') && a.includes('version="1.1"'));
  // The NaN in series 1 splits it into two drawn runs; series 2's points 1 and 3 are isolated
  // by non-finite neighbours, so they are dots.
  const paths = a.match(/<path d="[^"]*"/g) ?? [];
  assertEquals(paths.length, 1);
  assertEquals(((paths[0] ?? "").match(/M/g) ?? []).length, 2);
  assertEquals((a.match(/<circle /g) ?? []).length, 2);
  assertEquals(lineChartSvg(series, o), a);
});

Deno.test("lineChartSvg: empty, single point, constant, fixed range, tiny values", () => {
  const o = { title: "t", xLabel: "x", yLabel: "y" };
  const cases: [string, { name: string; points: [number, number][] }[], object][] = [
    ["no series", [], o],
    ["empty series", [{ name: "a", points: [] }], o],
    ["all NaN", [{ name: "a", points: [[NaN, 1], [2, NaN]] }], o],
    ["one point", [{ name: "a", points: [[3, 0.25]] }], o],
    ["constant", [{ name: "a", points: [[1, 2], [2, 2], [3, 2]] }], o],
    ["constant zero", [{ name: "a", points: [[1, 0], [2, 0]] }], o],
    ["fixed range", [{ name: "a", points: [[1, 0.2], [2, 1.7]] }], { ...o, yRange: [0, 1] }],
    ["lr", [{ name: "a", points: [[1, 1e-4], [2, 3e-4], [3, 2e-5]] }], o],
    ["huge", [{ name: "a", points: [[0, -1e300], [1, 1e300]] }], o],
    ["small size", [{ name: "a", points: [[0, 1], [1, 2]] }], { ...o, width: 50, height: 40 }],
  ];
  for (const [what, s, opts] of cases) {
    const svg = lineChartSvg(s, opts as typeof o);
    try {
      checkXml(svg);
      assert(!/NaN|Infinity/.test(svg), "non-finite number in output");
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
    const noData = svg.includes(">no data<");
    assertEquals([what, noData], [
      what,
      what === "no series" || what.startsWith("empty") || what === "all NaN",
    ]);
  }
  const one = lineChartSvg([{ name: "a", points: [[3, 0.25]] }], o);
  assert(one.includes("<circle "), "single point is drawn as a dot");
  // A fixed range puts ticks at its ends, and the clip path hides the 1.7.
  const fixed = lineChartSvg([{ name: "a", points: [[1, 0.2], [2, 1.7]] }], {
    ...o,
    yRange: [0, 1],
  });
  assert(fixed.includes(">0.0<") && fixed.includes(">1.0<"), "ticks of a fixed [0,1] range");
  assert(fixed.includes('clip-path="url(#plot-area)"'));
  // Epoch axes tick on whole numbers only.
  const ep = lineChartSvg([{ name: "a", points: [[1, 1], [2, 2]] }], o);
  assert(!/>1\.5</.test(ep), "half-epoch tick");
  const lr = lineChartSvg([{ name: "a", points: [[1, 1e-4], [2, 3e-4]] }], o);
  assert(/>\d\.\de-4</.test(lr), "learning rates in exponent form");
});

// The 6x6 overlay example, hand-computed. Ground truth fills rows/cols 1-4, the prediction rows/
// cols 2-5 (touching the image edge, which closes its contour). G: ground-truth contour only,
// R: predicted contour only, Y: both, .: the image.
const GT_RECT = [1, 4];
const PRED_RECT = [2, 5];
const EXPECTED = [
  "......",
  ".GGGG.",
  ".GRRYR",
  ".GR.GR",
  ".GYGGR",
  "..RRRR",
];

function rectMask(size: number, [a, b]: number[], value = 1): Float32Array {
  const m = new Float32Array(size * size);
  for (let y = a; y <= b; y++) for (let x = a; x <= b; x++) m[y * size + x] = value;
  return m;
}

Deno.test("overlayRgb: contours on a 6x6 example, BGR to RGB", () => {
  const n = 6;
  const image = new Float32Array(3 * n * n);
  image.fill(0.25, 0, n * n); // B
  image.fill(0.5, n * n, 2 * n * n); // G
  image.fill(0.75, 2 * n * n); // R
  const mask = rectMask(n, GT_RECT);
  const prob = rectMask(n, PRED_RECT, 0.9);
  prob[0] = NaN; // NaN is background
  prob[1] = 0.5; // not above the threshold
  const rgb = overlayRgb(image, mask, prob, n);
  const colour: Record<string, number[]> = {
    ".": [191, 128, 64],
    G: [0, 255, 0],
    R: [255, 0, 0],
    Y: [255, 255, 0],
  };
  // Through PNG and back, as a report reader would see it.
  const png = decodePng(gridPng([rgb], n, 1));
  assertEquals([png.width, png.height, png.channels, png.depth], [n, n, 3, 8]);
  for (const pixels of [rgb, png.data]) {
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        const i = 3 * (y * n + x);
        const got = Array.from(pixels.slice(i, i + 3));
        assertEquals([y, x, got], [y, x, colour[EXPECTED[y][x]]]);
      }
    }
  }
  // Without ground truth only the red contour is drawn.
  const noGt = overlayRgb(image, null, prob, n);
  // A threshold above every probability draws no contour at all.
  const none = overlayRgb(image, null, prob, n, 0.95);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const c = EXPECTED[y][x];
      const i = 3 * (y * n + x);
      assertEquals([y, x, Array.from(noGt.slice(i, i + 3))], [
        y,
        x,
        colour[c === "R" || c === "Y" ? "R" : "."],
      ]);
      assertEquals([y, x, Array.from(none.slice(i, i + 3))], [y, x, colour["."]]);
    }
  }
  expectError(
    "length mismatch is a RangeError",
    RangeError,
    () => overlayRgb(image, mask, new Float32Array(5), n),
  );
});

Deno.test("predictionPng: 8-bit grey, 0 or 255", () => {
  const n = 5;
  const prob = new Float32Array(n * n);
  for (let i = 0; i < prob.length; i++) prob[i] = i / (n * n - 1);
  const png = decodePng(predictionPng(prob, n));
  assertEquals([png.width, png.height, png.channels, png.depth], [n, n, 1, 8]);
  const vals = Array.from(png.data);
  assert(vals.every((v) => v === 0 || v === 255), "values are 0 or 255");
  assertEquals(vals, Array.from(prob, (p) => (p > 0.5 ? 255 : 0)));
  assertEquals(Array.from(decodePng(predictionPng(prob, n, 0.9)).data).filter((v) => v).length, 3);
});

Deno.test("gridPng: size, placement, white gaps", () => {
  const t = 4, cols = 3, gap = 2;
  const tiles = [0, 1, 2, 3, 4].map((k) => new Uint8Array(t * t * 3).fill(10 * (k + 1)));
  const png = decodePng(gridPng(tiles, t, cols, gap));
  assertEquals([png.width, png.height], [cols * t + (cols - 1) * gap, 2 * t + gap]);
  const at = (x: number, y: number) => png.data[3 * (y * png.width + x)];
  assertEquals(at(0, 0), 10);
  assertEquals(at(t + gap, 0), 20); // second tile
  assertEquals(at(t, 0), 255); // gap between tiles 1 and 2
  assertEquals(at(0, t), 255); // gap between rows
  assertEquals(at(t + gap + t - 1, t + gap + t - 1), 50); // last pixel of tile 5
  assertEquals(at(2 * (t + gap), t + gap), 255); // empty sixth cell
  // Fewer tiles than columns: the grid shrinks to the tiles.
  const two = decodePng(gridPng(tiles.slice(0, 2), t, 4, 1));
  assertEquals([two.width, two.height], [2 * t + 1, t]);
  // Deterministic bytes.
  assertEquals(gridPng(tiles, t, cols, gap), gridPng(tiles, t, cols, gap));
});

function epoch(e: number, loss: number, val: number | null, best: boolean): EpochRecord {
  return {
    kind: "epoch",
    epoch: e,
    steps: e * 10,
    loss,
    lr: 1e-3 / e,
    val_dice: val,
    val_iou: val === null ? null : val * 0.8,
    seconds: e * 2.5,
    best,
  };
}

function fakeInput(): ReportInput {
  const tile = (v: number) => new Uint8Array(4 * 4 * 3).fill(v);
  return {
    summary: {
      experiment: "monuseg_repro",
      variant: "lvit|small",
      seed: 42,
      backend: "cpu",
      adapter: "none",
      params: 29_700_000,
      epochs: 3,
      steps: 30,
      best_epoch: 2,
      val: { dice: 0.81234, iou: 0.6543 },
      test: { dice: 0.7999, iou: 0.66661, f1: NaN, pooled: { dice: 0.84567, iou: 0.73 } },
      train_seconds: 3723.4,
      step_ms_median: 123.45,
    },
    epochs: [epoch(1, 0.9, 0.5, true), epoch(2, 0.5, 0.81234, true), epoch(3, 0.4, 0.8, false)],
    configYaml: "experiment: monuseg_repro\nmodel:\n  name: lvit\n",
    overlays: [
      { key: "TCGA_1", rgb: tile(10), dice: 0.8 },
      { key: "TCGA_2", rgb: tile(20), dice: 0.7512 },
      { key: "a_b", rgb: tile(30), dice: NaN },
    ],
    tileSize: 4,
  };
}

Deno.test("renderReport: table values, links, overlays caption, config", () => {
  const { markdown, files } = renderReport(fakeInput());
  assertEquals(Object.keys(files), [
    "plots/loss.svg",
    "plots/lr.svg",
    "plots/val.svg",
    "overlays.png",
  ]);
  for (const path of Object.keys(files)) {
    assert(markdown.includes(`](${path})`), `no link to ${path}`);
  }
  const links = [...markdown.matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]);
  assertEquals(links.sort(), Object.keys(files).sort());
  for (
    const s of [
      "# Run report: monuseg\\_repro / lvit\\|small",
      "| val | Dice (per-image mean) | 81.23% | 0.8123 |",
      "| val | IoU (per-image mean) | 65.43% | 0.6543 |",
      "| test | Dice (per-image mean) | 79.99% | 0.7999 |",
      "| test | IoU (per-image mean) | 66.66% | 0.6666 |",
      "| test | F1 (per-image mean) | n/a | n/a |",
      "| test | Dice (pooled over pixels) | 84.57% | 0.8457 |",
      "| test | IoU (pooled over pixels) | 73.00% | 0.7300 |",
      "Pooled over pixels: one score from the pixel counts summed over the whole split",
      "| Parameters | 29,700,000 (29.70 M) |",
      "| Train time | 1h 02m 03s (3723.4 s) |",
      "| Median step | 123.5 ms |",
      "| Backend | cpu |",
      "| Adapter | none |",
      "Best: epoch 2 (loss 0.5000, val Dice 81.23%",
      "Last: epoch 3 (loss 0.4000, val Dice 80.00%",
      "1. TCGA\\_1: Dice 80.00%\n2. TCGA\\_2: Dice 75.12%\n3. a\\_b: Dice n/a",
      "<details>",
      "```yaml\nexperiment: monuseg_repro\nmodel:\n  name: lvit\n```",
    ]
  ) assert(markdown.includes(s), `missing: ${s}`);
  assert(!/NaN|undefined|\[object/.test(markdown), "leaked NaN/undefined");
  for (const f of ["plots/loss.svg", "plots/lr.svg", "plots/val.svg"]) checkXml(files[f] as string);
  const png = decodePng(files["overlays.png"] as Uint8Array);
  assertEquals([png.width, png.height], [3 * 4 + 2 * 2, 4]);
  // Byte-reproducible.
  const again = renderReport(fakeInput());
  assertEquals(again.markdown, markdown);
  assertEquals(again.files, files);
});

Deno.test("renderReport: no epochs, no val, no overlays, missing fields", () => {
  const empty = renderReport({
    summary: {},
    epochs: [],
    configYaml: "",
    overlays: [],
    tileSize: 4,
  });
  assertEquals(Object.keys(empty.files), []);
  assert(empty.markdown.includes("No epochs logged yet."));
  assert(empty.markdown.includes("No overlays."));
  assert(empty.markdown.includes("| val | Dice (per-image mean) | n/a | n/a |"));
  // A summary.json from before the pooled metric: its rows say n/a.
  assert(empty.markdown.includes("| test | Dice (pooled over pixels) | n/a | n/a |"));
  assert(empty.markdown.includes("# Run report: n/a / n/a"));
  assert(!/NaN|undefined|!\[/.test(empty.markdown), "nothing linked, nothing NaN");

  const noVal = renderReport({
    ...fakeInput(),
    summary: { experiment: "e", variant: "v", val: { dice: null } },
    epochs: [epoch(1, NaN, null, false), epoch(2, 0.5, null, false)],
    overlays: [],
  });
  assertEquals(Object.keys(noVal.files), ["plots/loss.svg", "plots/lr.svg"]);
  assert(noVal.markdown.includes("No validation metrics logged."));
  assert(noVal.markdown.includes("Best: n/a. Last: epoch 2 (loss 0.5000, val Dice n/a"));
  assert(!/NaN|undefined/.test(noVal.markdown));

  // A config holding a fence cannot close the block early.
  const fenced = renderReport({ ...fakeInput(), configYaml: "a: |\n  ```\n  x\n" });
  assert(fenced.markdown.includes("````yaml\na: |\n  ```\n  x\n````"));
});

Deno.test("renderReport: re-logged epochs show once, best from flags before summary", () => {
  const input = fakeInput();
  input.summary = { experiment: "e", variant: "v" };
  input.epochs = [
    epoch(1, 0.9, 0.5, true),
    epoch(2, 0.7, 0.6, true),
    epoch(2, 0.6, 0.65, true), // resumed run re-logged epoch 2
    epoch(3, 0.5, 0.55, false),
  ];
  const { markdown, files } = renderReport(input);
  assert(markdown.includes("Best: epoch 2 (loss 0.6000, val Dice 65.00%"), markdown);
  const loss = files["plots/loss.svg"] as string;
  assertEquals((loss.match(/ L/g) ?? []).length, 2); // three points, two segments
});

Deno.test("writeReport: writes every file, leaves no temp files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "report_test_" });
  try {
    // An existing report is replaced, not appended to.
    await Deno.writeTextFile(join(dir, "report.md"), "old");
    await writeReport(dir, fakeInput());
    const { markdown, files } = renderReport(fakeInput());
    assertEquals(await Deno.readTextFile(join(dir, "report.md")), markdown);
    for (const [rel, content] of Object.entries(files)) {
      const got = await Deno.readFile(join(dir, rel));
      const want = typeof content === "string" ? new TextEncoder().encode(content) : content;
      assertEquals(got, want);
    }
    const all: string[] = [];
    const walk = async (d: string, prefix: string) => {
      for await (const e of Deno.readDir(d)) {
        if (e.isDirectory) await walk(join(d, e.name), `${prefix}${e.name}/`);
        else all.push(prefix + e.name);
      }
    };
    await walk(dir, "");
    assertEquals(all.sort(), [...Object.keys(files), "report.md"].sort());
    assert(all.every((p) => !p.includes(".tmp-")), "temp file left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
