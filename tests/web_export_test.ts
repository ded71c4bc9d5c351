/**
 * The exported web page (`deno task export --web`, lib/export/web.ts) and its server
 * (`deno task serve`, lib/export/web_serve.ts):
 * - The page's JavaScript reproduces `predict` bit for bit without a browser: its preprocessing
 *   (RGBA -> BGR, cv2 bilinear resize, / 255) equals preprocessImage, its mask equals
 *   resizePlane + threshold, its bundled text encoder equals the builtin encoder (and is a
 *   fresh `deno bundle` of it), its PNG encoder writes what fast-png decodes.
 * - `serve` sends the right content types, only GET/HEAD, only files below its folder (no
 *   traversal through `..`, percent escapes or symbolic links), and listens on 127.0.0.1.
 * - `export --web` of an .onnx file writes the folder; a model that reads BERT text is exit 2.
 * - In a real headless Chromium (Debian's `chromium`, over the DevTools protocol), the page
 *   served by `deno task serve` segments PNG images (RGB, grey, RGBA; with a text for the LViT)
 *   and its downloaded masks equal `predict --engine ort`'s (and the LViT's `predict`'s), with no
 *   request leaving the server; a screenshot is taken.
 *   Without Chromium this test is ignored with a message, unless LVIT_REQUIRE_CHROMIUM=1 (CI).
 */
import { join } from "node:path";
import { tinyLvitRun } from "./tiny_run.ts";
import { predict } from "../lib/run/predict.ts";
import { modelToOnnx } from "../lib/export/onnx.ts";
import { META } from "../lib/run/export.ts";
import { buildModel, type ModelFn } from "../lib/models/registry.ts";
import { stateDict } from "../lib/models/state_dict.ts";
import type { DecodedImage } from "../lib/data/codecs.ts";
import { preprocessImage, resizeLinear, toBgr8 } from "../lib/data/preprocess.ts";
import { resizePlane } from "../lib/run/predict.ts";
import { encodeBuiltin } from "../lib/data/text_builtin.ts";
import { writeXlsx } from "../lib/data/xlsx_write.ts";
import { decodePng, encodePng } from "../lib/deps.ts";
import { bundleTextEncoder, TEXT_BUNDLE } from "../lib/export/web_bundle.ts";
import type { WebModelJson } from "../lib/export/web.ts";
import * as page from "../lib/export/web/pipeline.js";
import { encodeGreyPng } from "../lib/export/web/png.js";
import * as pageText from "../lib/export/web/text_builtin.js";
import { assert, assertEquals } from "./assert.ts";
import { assertNoStackTrace, withTmp } from "./process.ts";
import { Browser, findChromium } from "./browser.ts";
import { Session } from "../lib/train/session.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { experimentModel } from "../lib/run/experiment.ts";
import { loadWeights, saveWeights } from "../lib/train/weights.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const TASKS = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks as Record<
  string,
  string
>;

/** `deno run` with the permissions and script of a deno.json task, so they are what is tested. */
function taskCommand(task: string, args: string[], piped = true): Deno.Command {
  const words = TASKS[task].split(/\s+/);
  assert(words[0] === "deno" && words[1] === "run", `task ${task}: ${TASKS[task]}`);
  return new Deno.Command(Deno.execPath(), {
    args: [...words.slice(1).map((w) => w.startsWith("lib/") ? join(ROOT, w) : w), ...args],
    stdout: piped ? "piped" : "null",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  });
}

async function task(name: string, args: string[]): Promise<{ code: number; text: string }> {
  const r = await taskCommand(name, args).output();
  const dec = new TextDecoder();
  return { code: r.code, text: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** `deno task serve DIR --port 0`, its URL once listening, and a stop that always ends it. */
async function startServe(dir: string, extra: string[] = []) {
  const child = taskCommand("serve", [dir, "--port", "0", ...extra]).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already ended
    }
    await child.status;
    await lines.cancel().catch(() => {});
    await child.stderr.cancel().catch(() => {});
  };
  try {
    const end = Date.now() + 30_000;
    while (!/http:\/\/\S+\//.test(seen)) {
      if (Date.now() > end) throw new Error(`serve did not start: ${seen}`);
      const { value, done } = await lines.read();
      if (done) throw new Error(`serve ended: ${seen}`);
      seen += value;
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: seen.match(/http:\/\/\S+\//)![0], line: seen, stop };
}

/** A raw HTTP/1.1 GET of `target` exactly as written (fetch would normalise it). */
async function rawGet(url: string, target: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET ${target} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(
      new Uint8Array(chunks.flatMap((c) => [...c])),
    );
    return { status: Number(text.split(" ")[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) };
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the server
    }
  }
}

/** Deterministic bytes (an LCG) for generated images. */
function bytes(n: number, seed: number): Uint8Array {
  let s = seed >>> 0;
  return Uint8Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  });
}

/** What a browser canvas hands the page for a decoded 8-bit image: RGBA, grey replicated. */
function asRgba(img: DecodedImage): Uint8Array {
  const n = img.width * img.height, c = img.channels, out = new Uint8Array(4 * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) out[4 * i + k] = img.data[c * i + (c === 1 ? 0 : k)];
    out[4 * i + 3] = c === 4 ? img.data[4 * i + 3] : 255;
  }
  return out;
}

Deno.test("web page pipeline: preprocessing, mask, text features and PNG equal predict's bit for bit", async () => {
  // Preprocessing: RGB, RGBA and grey images up- and down-sized to several model sizes.
  for (
    const [w, h, c, size] of [
      [97, 75, 3, 64],
      [40, 40, 4, 64],
      [50, 81, 1, 32],
      [64, 64, 3, 64],
      [300, 217, 3, 224],
    ] as [number, number, 1 | 3 | 4, number][]
  ) {
    const img: DecodedImage = { width: w, height: h, channels: c, data: bytes(w * h * c, w + c) };
    const want = preprocessImage(img, size);
    const got = page.preprocessRgba(asRgba(img), w, h, size);
    assertEquals(got.length, want.length);
    const diff = want.findIndex((v, i) => !Object.is(v, got[i]));
    assert(diff < 0, `${w}x${h}x${c} -> ${size}: value ${diff} differs`);
    // The 8-bit resize on its own, both directions.
    const bgr = toBgr8(img);
    for (const [ow, oh] of [[size, size], [w * 2 + 1, h + 3]]) {
      assertEquals([...page.resizeLinear(bgr, ow, oh).data], [...resizeLinear(bgr, ow, oh).data]);
    }
  }
  // Mask: probabilities resized back to odd sizes, thresholded as writePrediction does; values
  // set on the threshold itself and right next to it.
  const size = 32;
  const prob = Float32Array.from(bytes(size * size, 9), (b) => b / 255);
  prob[5] = 0.5, prob[6] = Math.fround(0.5 + 2 ** -24), prob[7] = Math.fround(0.5 - 2 ** -25);
  for (const [w, h] of [[32, 32], [97, 75], [20, 45], [1000, 999]]) {
    const p = resizePlane(prob, size, size, w, h);
    const want = Uint8Array.from(p, (v) => (v > 0.5 ? 255 : 0));
    assertEquals(page.maskOf(prob, size, w, h, 0.5), want);
  }
  // Text: the page's bundle gives the builtin encoder's features, bit for bit.
  const texts = [
    "Bilateral pulmonary infection, two infected areas, upper left lung and upper right lung.",
    "The nuclei are evenly distributed.",
    "",
    "Ünïcödé àccents, CJK 肺部感染 and $^`~ punctuation!",
    "line one\nline two",
    "a b c d e f g h i j k l m n o p",
  ];
  for (const t of texts) {
    for (const o of [{ maxTokens: 10, dim: 768, seed: 0 }, { maxTokens: 4, dim: 33, seed: 5 }]) {
      const want = encodeBuiltin(t, o);
      const got = pageText.encodeBuiltin(t, o) as Float32Array;
      assert(got.every((v, i) => Object.is(v, want[i])), `text ${JSON.stringify(t)} ${o.seed}`);
    }
  }
  // The committed bundle is what `deno bundle` makes of the current TypeScript.
  const fresh = await bundleTextEncoder();
  assert(
    fresh === await Deno.readTextFile(join(ROOT, TEXT_BUNDLE)),
    `${TEXT_BUNDLE} is stale: run deno run --allow-read --allow-write --allow-run ` +
      `lib/export/web_bundle.ts`,
  );
  // PNG: the download decodes to the mask, 8-bit grey.
  const mask = Uint8Array.from(bytes(97 * 75, 3), (b) => (b > 128 ? 255 : 0));
  const png = decodePng(await encodeGreyPng(97, 75, mask));
  assertEquals([png.width, png.height, png.channels, png.depth], [97, 75, 1, 8]);
  assertEquals([...png.data], [...mask]);
  // Text table lookup as predict --texts: name, mask_ + name, stem.
  const rows: [string, string][] = [["a.png", "A"], ["mask_b.png", "B"], ["c.png", "C"]];
  assertEquals(
    ["a.png", "b.png", "c.tif", "d.png"].map((n) => page.lookupText(rows, n)),
    ["A", "B", "C", undefined],
  );
  assertEquals(page.maskFileName("slide.01.tif"), "slide.01.png");
});

Deno.test("serve: content types, GET/HEAD only, no way out of the folder, 127.0.0.1 by default", async () => {
  await withTmp("lvit-serve-", async (dir) => {
    const root = join(dir, "site");
    await Deno.mkdir(join(root, "sub"), { recursive: true });
    await Deno.writeTextFile(join(dir, "secret.txt"), "SECRET");
    await Deno.writeTextFile(join(root, ".hidden"), "HIDDEN");
    const files: Record<string, [string, string]> = {
      "index.html": ["<!doctype html>", "text/html; charset=utf-8"],
      "app.js": ["export {};", "text/javascript; charset=utf-8"],
      "sub/x.mjs": ["export {};", "text/javascript; charset=utf-8"],
      "m.wasm": ["\0asm", "application/wasm"],
      "model.json": ["{}", "application/json; charset=utf-8"],
      "model.onnx": ["onnx", "application/octet-stream"],
      "style.css": ["body{}", "text/css; charset=utf-8"],
    };
    for (const [name, [body]] of Object.entries(files)) {
      await Deno.writeTextFile(join(root, name), body);
    }
    await Deno.symlink(join(dir, "secret.txt"), join(root, "link.txt"));
    await Deno.symlink(dir, join(root, "up"));
    const s = await startServe(root);
    try {
      assert(s.url.startsWith("http://127.0.0.1:"), s.line);
      for (const [name, [body, type]] of Object.entries(files)) {
        const r = await fetch(s.url + name);
        assertEquals([r.status, r.headers.get("content-type"), await r.text()], [200, type, body]);
      }
      const index = await fetch(s.url);
      assertEquals([index.status, await index.text()], [200, "<!doctype html>"]);
      const head = await fetch(s.url + "m.wasm", { method: "HEAD" });
      assertEquals([head.status, head.headers.get("content-length"), await head.text()], [
        200,
        "4",
        "",
      ]);
      const post = await fetch(s.url + "app.js", { method: "POST", body: "x" });
      assertEquals([post.status, post.headers.get("allow")], [405, "GET, HEAD"]);
      await post.body?.cancel();
      for (
        const target of [
          "/../secret.txt",
          "/sub/../../secret.txt",
          "/%2e%2e/secret.txt",
          "/..%2fsecret.txt",
          "/sub/..%2f..%2fsecret.txt",
          "/..%5csecret.txt",
          "/%2e%2e%5csecret.txt",
          "/link.txt",
          "/up/secret.txt",
          "/.hidden",
          "/%2ehidden",
          "/app.js%00.png",
          "/%E0%A4%A",
          "/nothing.txt",
          "/sub",
          "//etc/passwd",
          "/etc/passwd",
        ]
      ) {
        const r = await rawGet(s.url, target);
        assert(r.status === 404 || r.status === 400, `${target}: HTTP ${r.status}`);
        assert(!r.body.includes("SECRET") && !r.body.includes("HIDDEN"), `${target}: ${r.body}`);
      }
    } finally {
      await s.stop();
    }
    // Bad input: exit 2, one message.
    for (
      const [args, want] of [
        [[join(dir, "nowhere")], "no such folder"],
        [[join(root, "app.js")], "not a folder"],
        [[root, "--port", "70000"], "--port"],
      ] as [string[], string][]
    ) {
      const r = await task("serve", args);
      assert(r.code === 2 && r.text.includes(want), r.text);
      assertNoStackTrace(r.text);
    }
  });
});

/**
 * Loads a model (its seeded initial weights, or `checkpoint`'s) and shifts its output layer's
 * bias (`outc.bias`) by the median logit on the image `x`, so that about half of that image is
 * foreground: masks with both classes make equal masks mean something. `use` gets the session.
 */
async function recentred(
  fn: ModelFn,
  size: number,
  x: Float32Array,
  extra: Record<string, Float32Array>,
  use: (s: Session) => Promise<void>,
  checkpoint?: string,
): Promise<void> {
  const s = await Session.create(await selectBackend("cpu"), fn, {
    batch: 1,
    channels: 3,
    height: size,
    width: size,
    seed: 5,
  });
  try {
    if (checkpoint) await loadWeights(s, checkpoint);
    const f = await s.forward(x, extra);
    assert(f.logits, "the model's logits");
    const median = [...f.logits].sort((a, b) => a - b)[f.logits.length >> 1];
    const bias = (await s.state(true)).get("outc.bias")!.data as Float32Array;
    s.loadState(new Map([["outc.bias", Float32Array.of(bias[0] - median)]]));
    await use(s);
  } finally {
    s.destroy();
  }
}

/**
 * A small model as an ONNX file with the metadata `deno task export` writes: a tiny LViT that
 * reads text through `encoder`, or (encoder null) a U-Net without text. Weights are `given`, or
 * seeded values in [-0.5, 0.5) (batch-norm variances 1).
 */
function tinyOnnx(encoder: string | null, given?: Map<string, Float32Array>): Uint8Array {
  const unet = encoder === null;
  const name = unet ? "unet-small" : "lvit-t";
  const options = unet
    ? { widths: [4, 8] }
    : { baseChannels: 8, heads: 2, imageSize: 64, textTokens: 4 };
  const yaml = unet
    ? "{ name: unet-small, widths: [4, 8], image_size: 32 }"
    : "{ name: lvit-t, base_channels: 8, image_size: 64, text_tokens: 4 }";
  const size = unet ? 32 : 64;
  const fn = unet
    ? buildModel("unet-small", { widths: [4, 8] })
    : buildModel("lvit-t", { baseChannels: 8, heads: 2, imageSize: 64, textTokens: 4 });
  let k = 1;
  const weights = given ?? new Map(
    stateDict(fn, { size }).map((e) => {
      const n = Math.max(1, e.shape.reduce((a, b) => a * b, 1));
      const v = e.name.endsWith("running_var")
        ? new Float32Array(n).fill(1)
        : Float32Array.from(bytes(n, k++), (b) => (b - 128) / 256);
      return [e.name, v];
    }),
  );
  const metadata: Record<string, string> = {
    [META.model]: name,
    [META.options]: JSON.stringify(options),
    [META.config]: `name: tiny\nseed: 3\nbackend: cpu\ndata: { dataset: synth }\nmodel: ${yaml}`,
    [META.configHash]: "0123abcd",
    [META.checkpoint]: "best.safetensors",
    [META.preprocessing]: JSON.stringify({ layout: "NCHW", channel_order: "BGR", size }),
    [META.postprocessing]: JSON.stringify({ threshold: 0.5 }),
  };
  if (encoder !== null) metadata[META.text] = JSON.stringify({ tokens: 4, dim: 768, encoder });
  return modelToOnnx(fn, { channels: 3, size, weights, metadata }).bytes;
}

Deno.test("export --web: an .onnx file becomes the page's folder; BERT text models are exit 2", async () => {
  await withTmp("lvit-web-", async (dir) => {
    const onnx = join(dir, "m.onnx");
    await Deno.writeFile(onnx, tinyOnnx("builtin"));
    const table = join(dir, "texts.xlsx");
    await writeXlsx(table, ["Image", "Description"], [["a.png", "Two nuclei."]]);
    const web = join(dir, "web");
    const r = await task("export", [onnx, "--web", web, "--texts", table]);
    assert(r.code === 0, r.text);
    assert(r.text.includes("deno task serve"), r.text);
    const meta = JSON.parse(await Deno.readTextFile(join(web, "model.json"))) as WebModelJson;
    assertEquals(meta.text, { encoder: "builtin", tokens: 4, dim: 768, seed: 3 });
    assertEquals([meta.size, meta.threshold, meta.model, meta.checkpoint], [
      64,
      0.5,
      "lvit-t",
      "best.safetensors",
    ]);
    assertEquals(meta.texts, [["a.png", "Two nuclei."]]);
    assertEquals(await Deno.readFile(join(web, "model.onnx")), await Deno.readFile(onnx));
    for (const f of ["index.html", "app.js", "pipeline.js", "png.js", "text_builtin.js"]) {
      assert((await Deno.stat(join(web, f))).size > 0, f);
    }
    const wasm = await Deno.readFile(join(web, meta.ort.wasm));
    assertEquals([...wasm.subarray(0, 4)], [0, 0x61, 0x73, 0x6d]);
    assert((await Deno.stat(join(web, meta.ort.module))).size > 10_000, "ort module");
    // No URL outside the folder in the page's own files.
    for (const f of ["index.html", "app.js", "pipeline.js", "png.js", "text_builtin.js"]) {
      const text = await Deno.readTextFile(join(web, f));
      assert(!/https?:\/\/(?!127\.0\.0\.1)/.test(text), `${f} names a remote URL`);
    }

    const bert = join(dir, "bert.onnx");
    await Deno.writeFile(bert, tinyOnnx("bert"));
    // A run folder of a BERT model is refused before its checkpoint is read or anything written.
    const bertRun = join(dir, "bert-run");
    await Deno.mkdir(join(bertRun, "checkpoints"), { recursive: true });
    await Deno.writeTextFile(
      join(bertRun, "config.yaml"),
      "name: b\nseed: 1\ndata: { dataset: synth }\n" +
        "text: { encoder: bert, model: Xenova/bert-base-uncased }\n" +
        "model: { name: lvit-t, base_channels: 8, image_size: 64 }\n",
    );
    await Deno.writeFile(join(bertRun, "checkpoints", "best.safetensors"), new Uint8Array(8));
    for (
      const [args, want] of [
        [[bert, "--web", join(dir, "web2")], "builtin text encoder"],
        [[bertRun, "--web", join(dir, "web5")], "'bert' encoder"],
        [[onnx, "--web", join(dir, "web3"), "--out", "x.onnx"], "--out and --web"],
        [[onnx, "--texts", table], "--texts goes with --web"],
        [[join(dir, "none.onnx"), "--web", join(dir, "web4")], "not found"],
        [[onnx, "--web", table], "not a folder"],
      ] as [string[], string][]
    ) {
      const c = await task("export", args);
      assert(c.code === 2 && c.text.includes(want), c.text);
      assertNoStackTrace(c.text);
    }
    for (const d of ["web2", "web3", "web4", "web5"]) {
      assert(!(await Deno.stat(join(dir, d)).then(() => true, () => false)), `${d} written`);
    }
  });
});

const chromium = findChromium();
const requireChromium = Deno.env.get("LVIT_REQUIRE_CHROMIUM") === "1";
if (!chromium && !requireChromium) {
  console.log(
    "web_export_test: chromium not found (apt-get install chromium, or LVIT_CHROMIUM=PATH): " +
      "the browser test is ignored",
  );
}

Deno.test({
  name: "web page in headless Chromium: masks equal predict --engine ort's, no request leaves",
  ignore: !chromium && !requireChromium,
  fn: async () => {
    assert(chromium, "LVIT_REQUIRE_CHROMIUM=1 but no chromium (apt-get install chromium)");
    await withTmp("lvit-webpage-", async (dir) => {
      const t0 = performance.now();
      const { run, exp } = await tinyLvitRun(dir, "tiny-web", 2);
      const tTrain = performance.now();

      // Images: a synthetic test image at the model's size, the same resized to an odd,
      // non-square size (RGB), a grey one and an opaque RGBA one.
      let testDir = "";
      for await (const e of Deno.readDir(join(dir, "cache", "synth"))) {
        testDir = join(dir, "cache", "synth", e.name, "Test_Folder", "img");
      }
      const names: string[] = [];
      for await (const e of Deno.readDir(testDir)) names.push(e.name);
      names.sort();
      const src = decodePng(await Deno.readFile(join(testDir, names[0])));
      const imgDir = join(dir, "images");
      await Deno.mkdir(imgDir);
      await Deno.copyFile(join(testDir, names[0]), join(imgDir, "square.png"));
      const rgb = toBgr8({
        width: src.width,
        height: src.height,
        channels: src.channels as 3,
        data: src.data as Uint8Array,
      });
      const odd = resizeLinear(rgb, 97, 75);
      const oddRgb = new Uint8Array(odd.data.length);
      for (let i = 0; i < oddRgb.length; i += 3) {
        oddRgb[i] = odd.data[i + 2], oddRgb[i + 1] = odd.data[i + 1], oddRgb[i + 2] = odd.data[i];
      }
      await Deno.writeFile(
        join(imgDir, "odd.png"),
        encodePng({ width: 97, height: 75, channels: 3, depth: 8, data: oddRgb }),
      );
      const grey = resizeLinear(rgb, 50, 81);
      await Deno.writeFile(
        join(imgDir, "grey.png"),
        encodePng({
          width: 50,
          height: 81,
          channels: 1,
          depth: 8,
          data: Uint8Array.from({ length: 50 * 81 }, (_, i) => grey.data[3 * i + 1]),
        }),
      );
      const opaque = resizeLinear(rgb, 40, 56);
      const rgba = new Uint8Array(40 * 56 * 4);
      for (let i = 0; i < 40 * 56; i++) {
        rgba[4 * i] = opaque.data[3 * i + 2];
        rgba[4 * i + 1] = opaque.data[3 * i + 1];
        rgba[4 * i + 2] = opaque.data[3 * i];
        rgba[4 * i + 3] = 255;
      }
      await Deno.writeFile(
        join(imgDir, "rgba.png"),
        encodePng({ width: 40, height: 56, channels: 4, depth: 8, data: rgba }),
      );
      const images = ["grey.png", "rgba.png", "square.png", "odd.png"];
      const text = "Bilateral pulmonary infection, two infected areas.";

      // After one epoch the model calls every pixel background, which would make equal masks
      // say little: recentre it on the square image and export that checkpoint.
      const ckpt = join(run.dir, "checkpoints", "recentred.safetensors");
      const square = preprocessImage(src as DecodedImage, 64);
      await recentred(
        experimentModel(exp.config).fn,
        64,
        square,
        { [TEXT_INPUT]: encodeBuiltin(text, { maxTokens: 4, dim: 768, seed: 5 }) },
        async (s) => {
          await saveWeights(s, ckpt);
        },
        join(run.dir, "checkpoints", "best.safetensors"),
      );
      // A U-Net without text, with its seeded initial weights recentred the same way.
      let unetWeights = new Map<string, Float32Array>();
      await recentred(
        buildModel("unet-small", { widths: [4, 8] }),
        32,
        preprocessImage(src as DecodedImage, 32),
        {},
        async (s) => {
          unetWeights = new Map(
            [...await s.state(true)].map(([k, v]) => [k, v.data as Float32Array]),
          );
        },
      );

      // Two pages in one served folder: the LViT run (with text) and a U-Net without text.
      const site = join(dir, "site");
      const lvitWeb = join(site, "lvit"), unetWeb = join(site, "unet");
      const ex = await task("export", [run.dir, "--web", lvitWeb, "--checkpoint", ckpt]);
      assert(ex.code === 0, ex.text);
      const unetOnnx = join(dir, "unet.onnx");
      await Deno.writeFile(unetOnnx, tinyOnnx(null, unetWeights));
      const ex2 = await task("export", [unetOnnx, "--web", unetWeb]);
      assert(ex2.code === 0, ex2.text);
      const ortOut = join(dir, "ort"), unetOut = join(dir, "ort-unet");
      for (
        const args of [
          [join(lvitWeb, "model.onnx"), imgDir, "--text", text, "--out", ortOut],
          [unetOnnx, imgDir, "--out", unetOut],
        ]
      ) {
        const pr = await task("predict", ["--engine", "ort", ...args]);
        assert(pr.code === 0, pr.text);
      }
      const ownOut = join(dir, "own");
      await predict(run.dir, [imgDir], {
        text,
        checkpoint: ckpt,
        out: ownOut,
        probabilities: true,
        log: () => {},
      });
      const tPredict = performance.now();

      const server = await startServe(site);
      let browser: Browser | null = null;
      try {
        browser = await Browser.launch(chromium!);
        // The U-Net page first (no text: choosing an image segments it), then the LViT page,
        // whose description is typed as a user would, and whose final state is the screenshot.
        for (
          const [path, ortDir, ownDir] of [
            ["unet/", unetOut, null],
            ["lvit/", ortOut, ownOut],
          ] as [string, string, string | null][]
        ) {
          const tab = await browser.newPage(1000, 780);
          await tab.send("Page.navigate", { url: server.url + path });
          await tab.waitFor(
            "['ready', 'error'].includes(document.body?.dataset.state)",
            `the model of ${path} to load`,
          );
          const state = await tab.evaluate<string>("document.body.dataset.state");
          assert(state === "ready", `${path}: ${state}: ${await tab.evaluate("lvitResult.error")}`);
          const readsText =
            !(await tab.evaluate<boolean>("document.getElementById('text-row').hidden"));
          assertEquals(readsText, ownDir !== null);
          if (readsText) {
            await tab.evaluate("document.getElementById('text').focus()");
            await tab.send("Input.insertText", { text });
            await tab.evaluate("document.activeElement.blur()");
          }
          const { root } = await tab.send<{ root: { nodeId: number } }>("DOM.getDocument");
          const { nodeId } = await tab.send<{ nodeId: number }>("DOM.querySelector", {
            nodeId: root.nodeId,
            selector: "#file",
          });
          for (const [k, name] of images.entries()) {
            await tab.send("DOM.setFileInputFiles", { nodeId, files: [join(imgDir, name)] });
            await tab.waitFor(`lvitResult.runs === ${k + 1}`, `the mask of ${path}${name}`);
            const r = await tab.evaluate<{ error: string | null; name: string }>("lvitResult");
            assert(r.error === null && r.name === name, `${path}: ${JSON.stringify(r)}`);
            const stem = name.replace(/\.png$/, "");
            assertEquals(
              await tab.evaluate("document.getElementById('download').download"),
              `${stem}.png`,
            );
            const b64 = await tab.evaluate<string>(`(async () => {
              const r = await fetch(document.getElementById("download").href);
              const b = new Uint8Array(await r.arrayBuffer());
              let s = "";
              for (const x of b) s += String.fromCharCode(x);
              return btoa(s);
            })()`);
            const got = decodePng(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
            const viaOrt = decodePng(await Deno.readFile(join(ortDir, `${stem}.png`)));
            assertEquals([got.width, got.height, got.channels, got.depth], [
              viaOrt.width,
              viaOrt.height,
              1,
              8,
            ]);
            let vsOrt = 0, fg = 0;
            for (let i = 0; i < got.data.length; i++) {
              if (got.data[i] !== viaOrt.data[i]) vsOrt++;
              if (got.data[i]) fg++;
            }
            let line = `${path}${name} (${got.width}x${got.height}): page vs predict --engine ` +
              `ort: ${vsOrt} pixels differ`;
            if (ownDir !== null) {
              const own = decodePng(await Deno.readFile(join(ownDir, `${stem}.png`)));
              const ownProb = decodePng(await Deno.readFile(join(ownDir, `${stem}_prob.png`)));
              let vsOwn = 0;
              for (let i = 0; i < got.data.length; i++) {
                if (got.data[i] === own.data[i]) continue;
                vsOwn++;
                // Our engine and onnxruntime differ by ~1e-8: only pixels on the threshold flip.
                assert(Math.abs(Number(ownProb.data[i]) - 127.5) <= 1, `${name}: pixel ${i}`);
              }
              assert(vsOwn <= 2, `${name}: ${vsOwn} pixels differ from predict`);
              line += `; vs predict (cpu engine): ${vsOwn}`;
            }
            console.log(`${line}; foreground ${fg} of ${got.data.length}`);
            assertEquals(vsOrt, 0);
            assert(fg > 0 && fg < got.data.length, `${path}${name}: the mask has both classes`);
          }
          // Everything came from the server (or the page's own blobs), nothing failed.
          const urls = tab.events.filter((e) => e.method === "Network.requestWillBeSent")
            .map((e) => (e.params.request as { url: string }).url);
          assert(urls.some((u) => u.endsWith(".wasm")), `requests: ${urls.join(" ")}`);
          const outside = urls.filter((u) => !u.startsWith(server.url) && !/^(blob|data):/.test(u));
          assertEquals(outside, []);
          const failed = tab.events.filter((e) => e.method === "Network.loadingFailed");
          assertEquals(failed.map((e) => e.params.errorText), []);
          if (!readsText) continue;

          const shot = await tab.send<{ data: string }>("Page.captureScreenshot", {
            format: "png",
          });
          const png = Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
          await Deno.writeFile(join(dir, "screenshot.png"), png);
          const decoded = decodePng(png);
          assertEquals([decoded.width, decoded.height], [1000, 780]);
          console.log(
            `screenshot: ${png.length} bytes; train ${((tTrain - t0) / 1000).toFixed(1)} s, ` +
              `export + predict ${((tPredict - tTrain) / 1000).toFixed(1)} s, browser ` +
              `${((performance.now() - tPredict) / 1000).toFixed(1)} s`,
          );
          // LVIT_WEB_SCREENSHOT=FILE keeps a copy (results/web/screenshot.png is made this way).
          const keep = Deno.env.get("LVIT_WEB_SCREENSHOT");
          if (keep) await Deno.writeFile(keep, png);
        }
      } catch (e) {
        if (browser) console.error(`chromium log:\n${browser.log}`);
        throw e;
      } finally {
        await browser?.close();
        await server.stop();
      }
    });
  },
});
