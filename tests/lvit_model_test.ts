/**
 * LViT and the reference U-Net as graphs (no device): parameter counts, thop-style MACs, the
 * intermediate shapes and state_dict names of lvit-reference.md 1.4 / 1.7 / 1.8 / 1.9, the
 * variants, the inspect CLI's contract, and a tiny LViT forward on the float64 reference.
 */
import { Graph, initValues, type Tensor } from "../lib/graph/mod.ts";
import { schedule } from "../lib/graph/plan.ts";
import { runRef } from "../lib/backends/ref/interpreter.ts";
import { lvitForward, type LViTOptions, STEP_INPUT, TEXT_INPUT } from "../lib/models/lvit.ts";
import { countGraph, countModel, exactMacs, referenceMacs } from "../lib/models/count.ts";
import { buildModel, MODELS } from "../lib/models/registry.ts";
import { unetRef } from "../lib/models/unet_ref.ts";
import { inspectText, toJson } from "../lib/cli/inspect.ts";

function eq(what: string, got: unknown, want: unknown) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

function build(B: number, opts: Partial<LViTOptions> = {}, training = false) {
  const S = opts.imageSize ?? 224;
  const g = new Graph();
  const x = g.input("x", [B, 3, S, S]);
  const { out, taps } = lvitForward({ g, training }, x, opts);
  return { g, out, taps };
}

// One reference build shared by the tests below (graph building only, ~0.1 s).
const ref1 = build(1);
const count1 = countGraph(ref1.g, ref1.out);

Deno.test("LViT-T at 224: 39,933,345 registered, 29,908,033 used, 29,719,873 thop params", () => {
  console.log(
    `registered ${count1.paramsRegistered}, used ${count1.paramsUsed}, thop ${count1.paramsThop}`,
  );
  eq("registered", count1.paramsRegistered, 39933345);
  eq("used", count1.paramsUsed, 29908033);
  eq("thop-style params", count1.paramsThop, 29719873);
});

Deno.test("per-module registered parameters match lvit-reference.md 1.7", () => {
  const want: Record<string, number> = {
    inc: 1920,
    down1: 221952,
    down2: 886272,
    down3: 3542016,
    down4: 4721664,
    downVit: 1148837,
    downVit1: 1402373,
    downVit2: 2388677,
    downVit3: 6278213,
    upVit: 1148837,
    upVit1: 1402373,
    upVit2: 2388677,
    upVit3: 6278213,
    up4: 3737631,
    up3: 934943,
    up2: 234015,
    up1: 123359,
    reconstruct1: 4288,
    reconstruct2: 16768,
    reconstruct3: 66304,
    reconstruct4: 263680,
    pix_module1: 12383,
    pix_module2: 49311,
    pix_module3: 196895,
    pix_module4: 786975,
    text_module4: 1180160,
    text_module3: 393472,
    text_module2: 98432,
    text_module1: 24640,
    outc: 65,
  };
  const got = Object.fromEntries(
    count1.modules.filter((m) => m.paramsRegistered > 0).map((m) => [m.module, m.paramsRegistered]),
  );
  eq("modules", Object.keys(got).sort(), Object.keys(want).sort());
  for (const [m, n] of Object.entries(want)) eq(m, got[m], n);
  // Per-level ViT formulas (1.7): block 12C^2 + 13C, patch conv C^2 p^2 + C, position 196C.
  const sizeOf = (prefix: string) =>
    ref1.g.params().filter((p) => p.name!.startsWith(prefix)).reduce((s, p) => s + p.size, 0);
  [64, 128, 256, 512].forEach((C, l) => {
    const vit = l === 0 ? "downVit" : `downVit${l}`;
    const p = 16 >> l;
    eq(`${vit} block`, sizeOf(`${vit}.Encoder_blocks.0.`), 12 * C * C + 13 * C);
    eq(`${vit} patch`, sizeOf(`${vit}.embeddings.patch_embeddings.`), C * C * p * p + C);
    eq(`${vit} pos`, sizeOf(`${vit}.embeddings.position_embeddings`), 196 * C);
    eq(`${vit} CTBN`, sizeOf(`${vit}.CTBN.`), (3 * C * C) / 2 + C / 2 + C);
    eq(`${vit} CTBN2`, sizeOf(`${vit}.CTBN2.`), 6 * C * C + C + 2 * C);
    eq(`${vit} CTBN3`, sizeOf(`${vit}.CTBN3.`), 6468);
    eq(`up${l + 1} PLAM`, sizeOf(`up${l + 1}.pixModule.`), 3 * C * C + C + 31);
  });
});

Deno.test("U-Net baseline: 14,751,873 params and 25.19 GMAC (thop) per image", () => {
  const c1 = countModel((c, x) => unetRef(c, x), 1, 224);
  const c2 = countModel((c, x) => unetRef(c, x), 2, 224);
  console.log(
    `U-Net params ${c1.paramsRegistered}, thop MACs per image ${c1.macsReference}, ` +
      `batch 2 ${c2.macsReference}, exact per image ${c1.macs}`,
  );
  eq("params", c1.paramsRegistered, 14751873);
  eq("used", c1.paramsUsed, 14751873);
  eq("GMAC per image", (c1.macsReference / 1e9).toFixed(2), "25.19");
  eq("GMAC batch 2", (c2.macsReference / 1e9).toFixed(2), "50.37");
});

Deno.test("LViT-T thop-style MACs: 27.07e9 per image, 54.14e9 for batch 2", () => {
  const b2 = build(2);
  const c2 = countGraph(b2.g, b2.out);
  console.log(
    `LViT thop MACs per image ${count1.macsReference}, batch 2 ${c2.macsReference}; ` +
      `exact per image ${count1.macs}`,
  );
  eq("GMAC per image", (count1.macsReference / 1e9).toFixed(2), "27.07");
  eq("GMAC batch 2", (c2.macsReference / 1e9).toFixed(2), "54.14");
  eq("batch 2 is twice batch 1", c2.macsReference, 2 * count1.macsReference);
  // The matmuls thop leaves out are exactly attention: q k^T and att v per level and path,
  // 2 * 196^2 * (64 + 128 + 256 + 512) per ViT path (1.8: 0.074 GMAC), two paths.
  const attention = schedule([ref1.out], [])
    .filter((t) => t.op === "matmul" && referenceMacs(t) === 0)
    .reduce((s, t) => s + exactMacs(t), 0);
  eq("attention MACs", attention, 2 * (2 * 196 * 196 * 960));
  const byModule = (name: string) => count1.modules.find((m) => m.module === name)!;
  eq("up1 GMAC (thop)", (byModule("up1").macsReference / 1e9).toFixed(2), "5.99");
  eq("downVit3 GMAC (thop)", (byModule("downVit3").macsReference / 1e9).toFixed(2), "0.90");
  eq("upVit3 GMAC (thop)", (byModule("upVit3").macsReference / 1e9).toFixed(2), "0.62");
});

Deno.test("every intermediate shape of lvit-reference.md 1.4 (2x3x224x224, text 2x10x768)", () => {
  const { g, taps } = build(2);
  eq("text input", g.get(TEXT_INPUT)?.shape, [2, 10, 768]);
  const want: Record<string, number[]> = {
    x1: [2, 64, 224, 224],
    x2: [2, 128, 112, 112],
    x3: [2, 256, 56, 56],
    x4: [2, 512, 28, 28],
    x5: [2, 512, 14, 14],
    y1: [2, 196, 64],
    y2: [2, 196, 128],
    y3: [2, 196, 256],
    y4: [2, 196, 512],
    u4: [2, 196, 512],
    u3: [2, 196, 256],
    u2: [2, 196, 128],
    u1: [2, 196, 64],
    x1f: [2, 64, 224, 224],
    x2f: [2, 128, 112, 112],
    x3f: [2, 256, 56, 56],
    x4f: [2, 512, 28, 28],
    d4: [2, 256, 28, 28],
    d3: [2, 128, 56, 56],
    d2: [2, 64, 112, 112],
    d1: [2, 64, 224, 224],
    out: [2, 1, 224, 224],
  };
  eq("taps", Object.keys(taps).sort(), Object.keys(want).sort());
  for (const [k, s] of Object.entries(want)) eq(k, taps[k].shape, s);
});

Deno.test("state_dict: 541 entries with the lvit-reference.md 1.9 names", () => {
  const names = ref1.g.leaves().filter((t) => t.kind !== "input").map((t) => t.name!);
  eq("entries", names.length, 541);
  eq("unique", new Set(names).size, 541);
  const bn = String.raw`(weight|bias|running_mean|running_var|num_batches_tracked)`;
  const wb = String.raw`(weight|bias)`;
  const vit = String.raw`(downVit|downVit[123]|upVit|upVit[123])`;
  const patterns = [
    String.raw`inc\.conv\.${wb}`,
    String.raw`inc\.norm\.${bn}`,
    String.raw`down[1-4]\.nConvs\.[01]\.conv\.${wb}`,
    String.raw`down[1-4]\.nConvs\.[01]\.norm\.${bn}`,
    String.raw`up[1-4]\.pixModule\.(conv_avg\.weight|conv_max\.weight)`,
    String.raw`up[1-4]\.pixModule\.(bottleneck\.[02]|conv_sig\.0)\.${wb}`,
    String.raw`up[1-4]\.nConvs\.[01]\.conv\.${wb}`,
    String.raw`up[1-4]\.nConvs\.[01]\.norm\.${bn}`,
    String.raw`outc\.${wb}`,
    String.raw`reconstruct[1-4]\.conv\.${wb}`,
    String.raw`reconstruct[1-4]\.norm\.${bn}`,
    String.raw`pix_module[1-4]\.(conv_avg\.weight|conv_max\.weight)`,
    String.raw`pix_module[1-4]\.(bottleneck\.[02]|conv_sig\.0)\.${wb}`,
    String.raw`text_module[1-4]\.${wb}`,
    String.raw`${vit}\.embeddings\.position_embeddings`,
    String.raw`${vit}\.embeddings\.patch_embeddings\.${wb}`,
    String.raw`${vit}\.norm\.${wb}`,
    String
      .raw`${vit}\.Encoder_blocks\.0\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.${wb}`,
    String.raw`${vit}\.head\.${wb}`,
    String.raw`${vit}\.CTBN[23]?\.conv\.${wb}`,
    String.raw`${vit}\.CTBN[23]?\.norm\.${bn}`,
  ].map((p) => new RegExp(`^${p}$`));
  const odd = names.filter((n) => !patterns.some((p) => p.test(n)));
  eq("names outside the 1.9 patterns", odd, []);
  const shape = (n: string) => ref1.g.get(n)!.shape;
  eq("position embedding", shape("downVit2.embeddings.position_embeddings"), [1, 196, 256]);
  eq("qkv", shape("upVit3.Encoder_blocks.0.attn.qkv.weight"), [1536, 512]);
  eq("Conv1d layout", shape("text_module4.weight"), [512, 768, 3]);
  eq("CTBN3", shape("downVit.CTBN3.conv.weight"), [196, 10, 3]);
  eq("PLAM bottleneck", shape("up1.pixModule.bottleneck.0.weight"), [6, 3]);
  eq("num_batches_tracked", shape("inc.norm.num_batches_tracked"), [1]);
});

/** Names of the leaves the output depends on. */
function usedLeaves(out: Tensor): Set<string> {
  return new Set(schedule([out], []).filter((t) => t.kind !== "node").map((t) => t.name!));
}

Deno.test("lvit-tw does not depend on any text input; text_level moves the injection", () => {
  const g = new Graph();
  const x = g.input("x", [1, 3, 224, 224]);
  const out = buildModel("lvit-tw")({ g, training: false }, x);
  eq("text input", g.get(TEXT_INPUT), undefined);
  const used = usedLeaves(out);
  eq("text params used", [...used].filter((n) => n.startsWith("text_module")), []);
  eq("CTBN3 used", [...used].filter((n) => n.includes("CTBN3")), []);
  const c = countGraph(g, out);
  eq("registered (same state_dict)", c.paramsRegistered, 39933345);
  eq("used = T minus text convs and CTBN3", c.paramsUsed, 29908033 - 1696704 - 6468);

  const img = build(1, { text: false, textSubstitute: "image" });
  const usedImg = usedLeaves(img.out);
  eq("image substitute: no text", img.g.get(TEXT_INPUT), undefined);
  if (!usedImg.has("downVit.CTBN3.conv.weight")) throw new Error("substitute skips CTBN3");

  const l3 = build(1, { textLevel: 3 });
  const usedL3 = usedLeaves(l3.out);
  if (!usedL3.has("downVit2.CTBN3.conv.weight") || usedL3.has("downVit.CTBN3.conv.weight")) {
    throw new Error("text_level 3 must use downVit2.CTBN3 only");
  }
});

Deno.test("plam: false passes the skips unchanged", () => {
  const { g, out } = build(1, { plam: false });
  const c = countGraph(g, out);
  eq("used = T minus the used PLAM part", c.paramsUsed, 29908033 - 696444);
  eq("registered unchanged", c.paramsRegistered, 39933345);
  const live = schedule([out], []);
  eq("PLAM nodes", live.filter((t) => t.scope.includes("pixModule")).length, 0);
  // The decoder concat reads the fused skip itself.
  const cat = live.find((t) => t.op === "concat" && t.scope === "up4")!;
  const { taps } = { taps: build(1, { plam: false }).taps };
  eq("concat inputs", cat.inputs.map((t) => t.shape), [taps.x4f.shape, [1, 512, 28, 28]]);
  eq("first input is a fuse add", cat.inputs[0].scope, "fuse4");
});

Deno.test("image_size 64 builds (4x4 tokens), and variants L/LW differ only in depth", () => {
  const { g, out, taps } = build(2, { imageSize: 64 });
  eq("out", out.shape, [2, 1, 64, 64]);
  eq("y4", taps.y4.shape, [2, 16, 512]);
  eq("CTBN3", g.get("downVit.CTBN3.conv.weight")!.shape, [16, 10, 3]);
  const l = countModel(buildModel("lvit-l"), 1, 224);
  const perBlock = [64, 128, 256, 512].reduce((s, C) => s + 12 * C * C + 13 * C, 0);
  eq("lvit-l registered", l.paramsRegistered, 39933345 + 3 * 2 * perBlock);
  eq("registry defaults", MODELS["lvit-lw"].defaults.text, false);
});

Deno.test("training builds dropout (p 0.1, keyed by the step input) only in training", () => {
  const train = build(2, { imageSize: 64, baseChannels: 16 }, true);
  const drops = schedule([train.out], []).filter((t) => t.op === "dropout");
  // 4 embeddings + 2 per MLP x 8 ViT objects, each with its own seed.
  eq("dropout sites", drops.length, 4 + 2 * 8);
  eq("p", [...new Set(drops.map((t) => t.attrs.p))], [0.1]);
  eq("distinct seeds", new Set(drops.map((t) => t.attrs.seed)).size, drops.length);
  eq("step input", train.g.get(STEP_INPUT)?.shape, [1]);
  const evalG = build(2, { imageSize: 64, baseChannels: 16 });
  eq("eval dropout", schedule([evalG.out], []).filter((t) => t.op === "dropout").length, 0);
  // Training counts batches in num_batches_tracked, one effect per BN that runs: inc 1,
  // down 8, up 8, reconstruct 4, CTBN3 1, CTBN 3, CTBN2 3.
  const counters = train.g.effects.filter((t) => t.inputs[0].name?.endsWith("num_batches_tracked"));
  eq("BN counters updated", counters.length, 28);
});

Deno.test("tiny LViT (base 8, 64x64) forward on the float64 reference gives (0, 1)", () => {
  const opts = { baseChannels: 8, imageSize: 64 };
  const { g, out } = build(1, opts);
  const leaves = new Map<string, Float64Array>();
  g.leaves().forEach((t, i) => {
    const init = t.init ?? { kind: "normal" as const, std: t.name === "x" ? 0.3 : 1 };
    const v = initValues(init, t.shape, 5, i);
    leaves.set(t.name!, Float64Array.from(t.name === "x" ? v.map((a) => 0.5 + a) : v));
  });
  // Non-zero position embeddings and BN statistics exercise more of the graph.
  for (const [n, v] of leaves) {
    if (n.endsWith("position_embeddings")) v.forEach((_, i) => (v[i] = Math.sin(i)));
  }
  const t0 = performance.now();
  const p = runRef({ p: out }, leaves).p;
  const min = Math.min(...p), max = Math.max(...p);
  console.log(
    `tiny LViT on runRef: ${(performance.now() - t0).toFixed(0)} ms, p in [${min}, ${max}]`,
  );
  if (!(min > 0 && max < 1 && p.every(Number.isFinite))) {
    throw new Error(`probabilities outside (0, 1): [${min}, ${max}]`);
  }
  if (!(max - min > 1e-6)) throw new Error("constant output");
});

Deno.test("inspect --json prints exactly the design.md 5 object", () => {
  const r = inspectText(
    "u.yaml",
    "name: u\ndata: {dataset: synth}\nmodel: {name: unet, base_channels: 8, image_size: 64}\n",
  );
  const j = toJson(r);
  eq("keys", Object.keys(j), [
    "params_registered",
    "params_used",
    "macs_reference",
    "macs",
    "peak_bytes_train",
    "peak_bytes_eval",
  ]);
  if (!(j.peak_bytes_train > j.peak_bytes_eval && j.peak_bytes_eval > 0)) {
    throw new Error(`peak memory ${JSON.stringify(j)}`);
  }
});
