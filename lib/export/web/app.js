// The exported page: loads model.json and model.onnx from this folder, runs the model in
// onnxruntime-web (wasm, one thread) on a dropped or chosen image and, for models that read
// text, a typed or picked description, then shows the mask's contour and offers the 0/255 mask
// PNG that `deno task predict` writes for the same image and text.
import * as ort from "./ort/ort.wasm.bundle.min.mjs";
import { encodeBuiltin } from "./text_builtin.js";
import { drawContour, lookupText, maskFileName, maskOf, preprocessRgba } from "./pipeline.js";
import { encodeGreyPng } from "./png.js";

const $ = (id) => document.getElementById(id);

/** What the page has done, for people reading the status line and for tests driving it. */
const result = { runs: 0, name: null, width: 0, height: 0, foreground: 0, text: null, error: null };
globalThis.lvitResult = result;

let meta = null;
let session = null;
let file = null;
let busy = false;
// An image chosen while another was being segmented: segmented next.
let pending = false;
let maskUrl = null;
// The description last filled in from the text table, so a user's own text is not replaced.
let filledText = null;

function status(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text;
}

async function fetchOk(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r;
}

/**
 * Decodes an image file to RGBA as stored: no colour-space conversion and no premultiplied alpha,
 * so 8-bit RGB, RGBA and grey PNGs give their own sample values.
 */
async function decode(blob) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

function show(canvas, rgba, width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
}

function ready() {
  const needsText = meta.text !== null;
  const hasText = $("text").value.trim() !== "";
  $("run").disabled = busy || file === null || (needsText && !hasText);
  if (busy) return;
  if (file === null) status("ready", "Drop or choose an image.");
  else if (needsText && !hasText) status("ready", "Type or pick a description of the image.");
}

async function segment() {
  if (busy) {
    pending = true;
    return;
  }
  if (file === null || session === null) return;
  const text = $("text").value;
  if (meta.text !== null && text.trim() === "") return ready();
  busy = true;
  ready();
  status("busy", `Segmenting ${file.name}…`);
  try {
    const img = await decode(file);
    const { width: w, height: h } = img;
    const size = meta.size;
    const feeds = {
      [meta.inputs.image]: new ort.Tensor(
        "float32",
        preprocessRgba(img.data, w, h, size),
        [1, 3, size, size],
      ),
    };
    if (meta.text !== null) {
      const { tokens, dim, seed } = meta.text;
      feeds[meta.inputs.text] = new ort.Tensor(
        "float32",
        encodeBuiltin(text, { maxTokens: tokens, dim, seed }),
        [1, tokens, dim],
      );
    }
    const out = await session.run(feeds);
    const prob = out[meta.output].data;
    const mask = maskOf(prob, size, w, h, meta.threshold);
    let fg = 0;
    for (let i = 0; i < mask.length; i++) if (mask[i]) fg++;

    const overlay = new Uint8ClampedArray(img.data);
    for (let i = 3; i < overlay.length; i += 4) overlay[i] = 255;
    drawContour(overlay, mask, w, h);
    show($("overlay"), overlay, w, h);
    const grey = new Uint8ClampedArray(4 * w * h);
    for (let i = 0; i < mask.length; i++) {
      grey[4 * i] = grey[4 * i + 1] = grey[4 * i + 2] = mask[i];
      grey[4 * i + 3] = 255;
    }
    show($("mask"), grey, w, h);
    $("views").hidden = false;

    const png = await encodeGreyPng(w, h, mask);
    if (maskUrl) URL.revokeObjectURL(maskUrl);
    maskUrl = URL.createObjectURL(new Blob([png], { type: "image/png" }));
    const link = $("download");
    link.href = maskUrl;
    link.download = maskFileName(file.name);
    link.hidden = false;

    Object.assign(result, {
      runs: result.runs + 1,
      name: file.name,
      width: w,
      height: h,
      foreground: fg / mask.length,
      text: meta.text !== null ? text : null,
      error: null,
    });
    status(
      "done",
      `${file.name} (${w}x${h}): ${(100 * fg / mask.length).toFixed(1)}% foreground.`,
    );
  } catch (e) {
    Object.assign(result, { runs: result.runs + 1, error: String(e?.message ?? e) });
    $("download").hidden = true;
    status("error", `${file.name}: ${result.error}`);
  } finally {
    busy = false;
    ready();
    if (pending) {
      pending = false;
      segment();
    }
  }
}

function choose(f) {
  if (!f) return;
  file = f;
  if (meta.text !== null && meta.texts.length > 0) {
    const found = lookupText(meta.texts, f.name);
    const input = $("text");
    if (found !== undefined && (input.value === "" || input.value === filledText)) {
      input.value = found;
      filledText = found;
    }
  }
  ready();
  if (!$("run").disabled) segment();
}

async function main() {
  meta = await (await fetchOk("model.json")).json();
  // The wasm binary is this folder's copy; one thread needs no cross-origin isolation.
  ort.env.wasm.wasmPaths = { wasm: new URL(meta.ort.wasm, location.href).href };
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  const bytes = new Uint8Array(await (await fetchOk(meta.model_file)).arrayBuffer());
  session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  $("model").textContent = `${meta.model} (config ${meta.config_hash.slice(0, 8)}` +
    `${meta.checkpoint ? `, ${meta.checkpoint}` : ""}): images resized to ${meta.size}x` +
    `${meta.size}, threshold ${meta.threshold}; ` +
    (meta.text !== null
      ? `reads a description (builtin text encoder, ${meta.text.tokens} tokens).`
      : "reads no text.");
  if (meta.text !== null) {
    $("text-row").hidden = false;
    const list = $("texts");
    for (const d of new Set(meta.texts.map(([, v]) => v))) {
      const o = document.createElement("option");
      o.value = d;
      list.append(o);
    }
  }
  $("file").addEventListener("change", (e) => choose(e.target.files[0]));
  $("text").addEventListener("input", ready);
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter") segment();
  });
  $("run").addEventListener("click", segment);
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });
  ready();
}

main().catch((e) => {
  result.error = String(e?.message ?? e);
  status("error", `Cannot load the model: ${result.error}`);
});
