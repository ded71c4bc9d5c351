/**
 * The LViT data reader: codecs on generated files (PNG, PackBits TIFF, JPEG) and hostile ones,
 * the OpenCV-style bilinear resize against hand-computed values, the xlsx reader on generated
 * and hostile workbooks, the folder reader on a generated QaTa layout, and the acceptance check
 * on the real MoNuSeg folder when it is present.
 */
import { encodePng, jpegJs, zipSync } from "../lib/deps.ts";
import { DataError, type DecodedImage, decodeImage, readImage } from "../lib/data/codecs.ts";
import {
  type Image8,
  preprocessImage,
  preprocessMask,
  resizeLinear,
  roundHalfEven,
  toBgr8,
} from "../lib/data/preprocess.ts";
import { parseXlsx, readTextTable } from "../lib/data/xlsx.ts";
import {
  listLvitDataset,
  listSplit,
  loadSample,
  resolveDataRoot,
} from "../lib/data/lvit_folder.ts";

const enc = new TextEncoder();

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertArrayEq(name: string, got: ArrayLike<number>, want: ArrayLike<number>) {
  assert(got.length === want.length, `${name}: length ${got.length} != ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    assert(got[i] === want[i], `${name}[${i}]: ${got[i]} != ${want[i]} (got ${Array.from(got)})`);
  }
}

/** Runs f and checks it fails with a DataError whose message contains `needle`. */
async function expectDataError(f: () => unknown, needle: string): Promise<DataError> {
  try {
    await f();
  } catch (e) {
    if (!(e instanceof DataError)) throw new Error(`expected DataError (${needle}), got ${e}`);
    assert(e.message.includes(needle), `message '${e.message}' lacks '${needle}'`);
    return e;
  }
  throw new Error(`accepted bad input (${needle})`);
}

// ------------------------------------------------------------------ resize

Deno.test("resize: 4x4 -> 2x2 averages 2x2 blocks, ties round to even like saturate_cast", () => {
  // Half-pixel centres put every output exactly between four inputs with weights 1/4.
  const src: Image8 = {
    width: 4,
    height: 4,
    channels: 1,
    data: new Uint8Array([
      ...[0, 10, 2, 3],
      ...[40, 50, 2, 3],
      ...[3, 4, 7, 7],
      ...[3, 4, 7, 8],
    ]),
  };
  // (0+10+40+50)/4 = 25; (2+3+2+3)/4 = 2.5 -> 2; (3+4+3+4)/4 = 3.5 -> 4; 29/4 = 7.25 -> 7.
  assertArrayEq("4x4->2x2", resizeLinear(src, 2, 2).data, [25, 2, 4, 7]);
  assert(roundHalfEven(0.5) === 0 && roundHalfEven(1.5) === 2 && roundHalfEven(2.5) === 2, "rhe");
});

Deno.test("resize: 2x2 -> 5x5 with border clamp, hand-computed", () => {
  // scale 0.4: source x = (d + 0.5) * 0.4 - 0.5 = -0.3, 0.1, 0.5, 0.9, 1.3; the two ends clamp
  // to the edge pixels, so the weights of pixel 1 are 0, 0.1, 0.5, 0.9, 1 on both axes.
  // top(a) = 100a, bottom(a) = 200 - 160a, out = (1 - b) top + b bottom.
  const src: Image8 = { width: 2, height: 2, channels: 1, data: new Uint8Array([0, 100, 200, 40]) };
  const want = [
    ...[0, 10, 50, 90, 100],
    ...[20, 27, 57, 87, 94], // 27.4, 57, 86.6, 94
    ...[100, 97, 85, 73, 70],
    ...[180, 167, 113, 59, 46], // 166.6, 113, 59.4
    ...[200, 184, 120, 56, 40],
  ];
  assertArrayEq("2x2->5x5", resizeLinear(src, 5, 5).data, want);
});

Deno.test("resize: channels are resized independently; BGR order and mask threshold", () => {
  const rgb: DecodedImage = {
    width: 2,
    height: 1,
    channels: 3,
    data: new Uint8Array([255, 0, 10, 255, 0, 10]),
  };
  const bgr = toBgr8(rgb);
  assertArrayEq("bgr", bgr.data, [10, 0, 255, 10, 0, 255]);
  const chw = preprocessImage(rgb, 2);
  assertArrayEq("chw", Array.from(chw, (v) => Math.round(v * 255)), [
    10,
    10,
    10,
    10,
    0,
    0,
    0,
    0,
    255,
    255,
    255,
    255,
  ]);
  // A lone foreground pixel spreads wherever its bilinear weight rounds to 1 or more.
  const mask: DecodedImage = {
    width: 2,
    height: 2,
    channels: 1,
    data: new Uint8Array([255, 0, 0, 0]),
  };
  const m = preprocessMask(mask, 5);
  // Row 0 of the grey resize is 255, 230, 128, 26, 0 (weights 1, .9, .5, .1, 0): > 0 except last.
  assertArrayEq("mask row 0", m.subarray(0, 5), [1, 1, 1, 1, 0]);
  assertArrayEq("mask row 4", m.subarray(20, 25), [0, 0, 0, 0, 0]);
});

// ------------------------------------------------------------------ codecs

/** A little-endian RGB TIFF, one strip, PackBits-compressed (a literal and a repeat run/row). */
function packBitsTiff(width: number, height: number, rgb: Uint8Array): Uint8Array {
  const strip: number[] = [];
  const row = width * 3;
  for (let y = 0; y < height; y++) {
    const r = rgb.subarray(y * row, (y + 1) * row);
    // Literal run of the first half, then a replicate run when the rest is constant.
    const half = Math.floor(row / 2);
    strip.push(half - 1, ...r.subarray(0, half));
    const rest = r.subarray(half);
    if (rest.every((v) => v === rest[0]) && rest.length > 1) strip.push(257 - rest.length, rest[0]);
    else strip.push(rest.length - 1, ...rest);
  }
  const entries: [number, number, number, number][] = [
    [256, 3, 1, width],
    [257, 3, 1, height],
    [258, 3, 3, 134], // three 8s stored after the directory
    [259, 3, 1, 32773], // PackBits
    [262, 3, 1, 2], // RGB
    [273, 4, 1, 140],
    [277, 3, 1, 3],
    [278, 3, 1, height],
    [279, 4, 1, strip.length],
    [284, 3, 1, 1],
  ];
  const out = new Uint8Array(140 + strip.length);
  const dv = new DataView(out.buffer);
  out.set([0x49, 0x49, 42, 0]);
  dv.setUint32(4, 8, true);
  dv.setUint16(8, entries.length, true);
  entries.forEach(([t, type, count, value], i) => {
    const o = 10 + 12 * i;
    dv.setUint16(o, t, true);
    dv.setUint16(o + 2, type, true);
    dv.setUint32(o + 4, count, true);
    if (type === 3 && count === 1) dv.setUint16(o + 8, value, true);
    else dv.setUint32(o + 8, value, true);
  });
  dv.setUint32(10 + 12 * entries.length, 0, true);
  for (let i = 0; i < 3; i++) dv.setUint16(134 + 2 * i, 8, true);
  out.set(strip, 140);
  return out;
}

Deno.test("codecs: PNG 8-bit RGB, 16-bit grey, palette and 1-bit grey", () => {
  const rgb = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const a = decodeImage(encodePng({ width: 2, height: 2, channels: 3, data: rgb }), "a.png");
  assert(a.channels === 3 && a.width === 2 && a.data instanceof Uint8Array, "rgb shape");
  assertArrayEq("rgb", a.data, rgb);

  const g16 = new Uint16Array([0, 1000, 65535]);
  const b = decodeImage(
    encodePng({ width: 3, height: 1, channels: 1, depth: 16, data: g16 }),
    "b.png",
  );
  assert(b.channels === 1 && b.data instanceof Uint16Array, "16-bit kept");
  assertArrayEq("g16", b.data, g16);
  assertArrayEq("g16 as bgr8", toBgr8(b).data, [0, 0, 0, 3, 3, 3, 255, 255, 255]);

  const pal = decodeImage(
    encodePng({
      width: 3,
      height: 1,
      channels: 1,
      depth: 8,
      data: new Uint8Array([1, 0, 1]),
      palette: [[10, 20, 30], [200, 100, 50]],
    }),
    "p.png",
  );
  assert(pal.channels === 3, "palette expands to RGB");
  assertArrayEq("palette", pal.data, [200, 100, 50, 10, 20, 30, 200, 100, 50]);

  // 1-bit grey, 3 pixels packed in one byte: 1 0 1 -> 0b10100000.
  const bit = decodeImage(
    encodePng({ width: 3, height: 1, channels: 1, depth: 1, data: new Uint8Array([0xa0]) }),
    "bit.png",
  );
  assertArrayEq("1-bit", bit.data, [255, 0, 255]);
});

Deno.test("codecs: PackBits RGB TIFF and JPEG decode", async () => {
  const w = 4, h = 3;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = i < 6 || i % 12 < 6 ? (i * 7) & 255 : 99;
  const t = decodeImage(packBitsTiff(w, h, rgb), "t.tif");
  assert(t.width === w && t.height === h && t.channels === 3, "tiff shape");
  assertArrayEq("tiff", t.data, rgb);

  const grey = new Uint8Array(16 * 8 * 4).fill(128);
  const jpg = jpegJs.encode({ width: 16, height: 8, data: grey }, 90).data;
  const j = decodeImage(new Uint8Array(jpg), "j.jpg");
  assert(j.width === 16 && j.height === 8 && j.channels === 3, "jpeg shape");
  assert(j.data.every((v) => Math.abs(v - 128) <= 2), "jpeg values");

  // readImage goes by content and reports missing files as DataError.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/mislabelled.png`, packBitsTiff(w, h, rgb));
    assert((await readImage(`${dir}/mislabelled.png`)).channels === 3, "sniffed");
    await expectDataError(() => readImage(`${dir}/none.png`), "file not found");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("codecs: hostile and corrupt files become DataError, never a crash", async () => {
  const png = encodePng({ width: 8, height: 8, channels: 3, data: new Uint8Array(192) });
  await expectDataError(() => decodeImage(enc.encode("hello world"), "x.png"), "unrecognised");
  await expectDataError(() => decodeImage(png.subarray(0, 20), "short.png"), "truncated PNG");
  await expectDataError(() => decodeImage(png.subarray(0, png.length - 20), "cut.png"), "cut.png");
  const flipped = png.slice();
  flipped[flipped.length - 30] ^= 0xff;
  await expectDataError(() => decodeImage(flipped, "crc.png"), "crc.png");
  // Claimed 100000 x 100000: refused from the header, before any allocation.
  const huge = png.slice();
  const dv = new DataView(huge.buffer);
  dv.setUint32(16, 100000);
  dv.setUint32(20, 100000);
  await expectDataError(() => decodeImage(huge, "huge.png"), "exceed the limit");

  const tif = packBitsTiff(4, 3, new Uint8Array(36));
  const bigTif = tif.slice();
  new DataView(bigTif.buffer).setUint16(18, 60000, true); // width
  new DataView(bigTif.buffer).setUint16(30, 60000, true); // height
  await expectDataError(() => decodeImage(bigTif, "big.tif"), "exceed the limit");
  await expectDataError(() => decodeImage(tif.subarray(0, 12), "cut.tif"), "cut.tif");
  await expectDataError(
    () => decodeImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 2, 1, 2]), "bad.jpg"),
    "bad.jpg",
  );
});

Deno.test("codecs: a TIFF directory claiming huge counts is refused at once, nothing allocated", async () => {
  /** A little-endian TIFF header, its directory at byte 8 with `count` claimed entries. */
  const tiff = (count: number, entries: [number, number, number, number][]) => {
    const out = new Uint8Array(8 + 2 + 12 * entries.length + 4);
    const dv = new DataView(out.buffer);
    out.set([0x49, 0x49, 0x2a, 0x00]);
    dv.setUint32(4, 8, true);
    dv.setUint16(8, count, true);
    entries.forEach(([tag, type, n, value], i) => {
      const e = 10 + 12 * i;
      dv.setUint16(e, tag, true);
      dv.setUint16(e + 2, type, true);
      dv.setUint32(e + 4, n, true);
      dv.setUint32(e + 8, value, true);
    });
    return out;
  };
  const t0 = performance.now();
  // 65535 directory entries claimed in a 28-byte file.
  await expectDataError(() => decodeImage(tiff(65535, []), "tags.tif"), "65535 entries");
  // Strip offset and byte-count tables of 2^32 - 1 values each, pointing inside the file.
  const strips = tiff(2, [[273, 4, 0xffffffff, 8], [279, 4, 0xffffffff, 8]]);
  await expectDataError(() => decodeImage(strips, "strips.tif"), "table of tag 273");
  // Tile tables of 2^31 shorts, the count tag first.
  const tiles = tiff(2, [[325, 3, 2 ** 31, 8], [324, 3, 2 ** 31, 8]]);
  await expectDataError(() => decodeImage(tiles, "tiles.tif"), "table of tag 325");
  const ms = performance.now() - t0;
  assert(ms < 250, `hostile TIFF directories took ${ms.toFixed(0)} ms`);
});

// ------------------------------------------------------------------ xlsx

const CT = `<?xml version="1.0" encoding="UTF-8"?><Types ` +
  `xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`;
const WB = `<?xml version="1.0"?><workbook xmlns:r="r"><sheets>` +
  `<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>`;

function sst(strings: string[]): string {
  return `<?xml version="1.0"?><sst count="${strings.length}">` +
    strings.map((s) => `<si><t>${s}</t></si>`).join("") + `</sst>`;
}

function sheet(rows: string[][]): string {
  const body = rows.map((r, i) =>
    `<row r="${i + 1}">` +
    r.map((v, j) => `<c r="${"AB"[j]}${i + 1}" t="s"><v>${v}</v></c>`).join("") + `</row>`
  ).join("");
  return `<?xml version="1.0"?><worksheet><sheetData>${body}</sheetData></worksheet>`;
}

function xlsx(parts: Record<string, string>): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(parts)) files[k] = enc.encode(v);
  return zipSync(files);
}

/** A minimal valid workbook: header row + the given (image, description) rows. */
function textXlsx(rows: [string, string][]): Uint8Array {
  const strings = ["Image", "Description", ...rows.flat()];
  const idx = [["0", "1"], ...rows.map((_, i) => [`${2 + 2 * i}`, `${3 + 2 * i}`])];
  return xlsx({
    "[Content_Types].xml": CT,
    "xl/workbook.xml": WB,
    "xl/worksheets/sheet1.xml": sheet(idx),
    "xl/sharedStrings.xml": sst(strings),
  });
}

Deno.test("xlsx: minimal hand-built workbook, entities, rich text, phonetic runs, inline", () => {
  const r = parseXlsx(textXlsx([["a.png", "Fish &amp; chips &#x263A;"], ["b.png", "Two"]]), "m");
  assertArrayEq("header", r.header.map((h) => h.length), [5, 11]);
  assert(r.rows.length === 2, "2 rows");
  assert(r.rows[0].get("Description") === "Fish & chips \u263a", "entities decoded");
  const rich = xlsx({
    "xl/workbook.xml": WB,
    "xl/worksheets/sheet1.xml": `<worksheet><sheetData>` +
      `<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>Description</t>` +
      `</is></c></row><row r="3"><c r="A3" t="s"><v>1</v></c><c r="B3" t="s"><v>2</v></c>` +
      `</row></sheetData></worksheet>`,
    "xl/sharedStrings.xml": `<sst><si><t>Image</t><rPh><t>IGNORED</t></rPh></si>` +
      `<si><r><t>x</t></r><r><t>.png</t></r></si><si><t><![CDATA[a <b>]]></t></si></sst>`,
  });
  const q = parseXlsx(rich, "rich");
  assert(q.header.join("|") === "Image|Description", `header ${q.header}`);
  assert(q.rows.length === 1 && q.rows[0].get("Image") === "x.png", "rich text joined");
  assert(q.rows[0].get("Description") === "a <b>", "CDATA");
});

Deno.test("xlsx: hostile files fail cleanly or load without polluting prototypes", async () => {
  await expectDataError(() => parseXlsx(enc.encode("PK not really"), "nz.xlsx"), "zip");
  await expectDataError(() => parseXlsx(xlsx({ "a.txt": "x" }), "nowb.xlsx"), "workbook.xml");
  await expectDataError(
    () => parseXlsx(xlsx({ "xl/workbook.xml": WB }), "nosheet.xlsx"),
    "sheet part",
  );
  await expectDataError(
    () =>
      parseXlsx(
        xlsx({ "xl/workbook.xml": WB, "xl/worksheets/sheet1.xml": sheet([["0", "1"]]) }),
        "nosst.xlsx",
      ),
    "no sharedStrings",
  );
  await expectDataError(
    () =>
      parseXlsx(
        xlsx({
          "xl/workbook.xml": WB,
          "xl/worksheets/sheet1.xml": sheet([["0", "7"]]),
          "xl/sharedStrings.xml": sst(["Image"]),
        }),
        "range.xlsx",
      ),
    "out of range",
  );
  const laughs = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><sst>` +
    `<si><t>&lol;</t></si></sst>`;
  await expectDataError(
    () =>
      parseXlsx(
        xlsx({
          "xl/workbook.xml": WB,
          "xl/worksheets/sheet1.xml": sheet([["0"]]),
          "xl/sharedStrings.xml": laughs,
        }),
        "dtd.xlsx",
      ),
    "DTDs",
  );
  await expectDataError(
    () =>
      parseXlsx(
        xlsx({ "xl/workbook.xml": WB, "xl/worksheets/sheet1.xml": "<worksheet><row></worksheet>" }),
        "tags.xlsx",
      ),
    "does not close",
  );
  await expectDataError(
    () =>
      parseXlsx(
        xlsx({
          "xl/workbook.xml": WB,
          "xl/worksheets/sheet1.xml": sheet([["0"]]),
          "xl/sharedStrings.xml": sst(["&bogus;"]),
        }),
        "ent.xlsx",
      ),
    "unknown XML entity",
  );

  // __proto__ and constructor as header names, keys and values; a zip entry named __proto__.
  const evil = xlsx({
    "__proto__": "polluted",
    "xl/workbook.xml": WB,
    "xl/worksheets/sheet1.xml": sheet([["0", "1"], ["2", "3"], ["4", "5"]]),
    "xl/sharedStrings.xml": sst(["__proto__", "constructor", "__proto__", '{"polluted":1}']
      .concat(["constructor", "prototype"])),
  });
  const r = parseXlsx(evil, "evil.xlsx");
  assert(r.header.join("|") === "__proto__|constructor", "header read as strings");
  assert(r.rows[0].get("__proto__") === "__proto__", "value stored in Map");
  assert(r.rows[1].get("constructor") === "prototype", "constructor key in Map");
  assert(({} as Record<string, unknown>).polluted === undefined, "Object.prototype untouched");
  assert(Object.getPrototypeOf(r.rows[0]) === Map.prototype, "Map prototype intact");

  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/t.xlsx`, textXlsx([["__proto__", "x"], ["a.png", "y"]]));
    const t = await readTextTable(`${dir}/t.xlsx`);
    assert(t.get("__proto__") === "x" && t.size === 2, "__proto__ as an image key");
    assert(({} as Record<string, unknown>).x === undefined, "still untouched");
    await Deno.writeFile(
      `${dir}/h.xlsx`,
      xlsx({
        "xl/workbook.xml": WB,
        "xl/worksheets/sheet1.xml": sheet([["0", "1"]]),
        "xl/sharedStrings.xml": sst(["Name", "Text"]),
      }),
    );
    await expectDataError(() => readTextTable(`${dir}/h.xlsx`), "Image and Description");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ folder reader

Deno.test("folder: generated QaTa layout (mask_ names, shared Train_Val table) and errors", async () => {
  const root = await Deno.makeTempDir();
  const png = (v: number) =>
    encodePng({ width: 3, height: 2, channels: 1, data: new Uint8Array(6).fill(v) });
  try {
    const splits = {
      Train_Folder: ["a.png", "b.png"],
      Val_Folder: ["c.png"],
      Test_Folder: ["d.png"],
    };
    for (const [folder, names] of Object.entries(splits)) {
      await Deno.mkdir(`${root}/${folder}/img`, { recursive: true });
      await Deno.mkdir(`${root}/${folder}/labelcol`, { recursive: true });
      for (const n of names) {
        await Deno.writeFile(`${root}/${folder}/img/${n}`, png(200));
        await Deno.writeFile(`${root}/${folder}/labelcol/mask_${n}`, png(255));
      }
    }
    await Deno.writeFile(`${root}/Train_Folder/labelcol/.DS_Store`, new Uint8Array(3));
    await Deno.writeFile(
      `${root}/Train_Folder/Train_Val_text.xlsx`,
      textXlsx([["mask_a.png", "A"], ["mask_b.png", "B"], ["mask_c.png", "C"]]),
    );
    await Deno.writeFile(`${root}/Test_Folder/Test_text.xlsx`, textXlsx([["mask_d.png", "D"]]));

    const ds = await listLvitDataset("qata", root);
    assertArrayEq("counts", [ds.splits.train.length, ds.splits.val.length, ds.splits.test.length], [
      2,
      1,
      1,
    ]);
    const c = ds.splits.val[0];
    assert(c.key === "mask_c.png" && c.text === "C", "val text from Train_Val table");
    assert(c.imagePath.endsWith("Val_Folder/img/c.png"), c.imagePath);
    const s = await loadSample(c, 4);
    assert(s.image.length === 3 * 16 && s.mask.length === 16, "shapes");
    assert(
      s.image.every((v) => Math.abs(v - 200 / 255) < 1e-6) && s.mask.every((v) => v === 1),
      "values",
    );

    // The root may come from LVIT_DATA.
    const old = Deno.env.get("LVIT_DATA");
    Deno.env.set("LVIT_DATA", root);
    try {
      assert(resolveDataRoot() === root, "env root");
      assert((await listSplit("qata", "test")).length === 1, "env listing");
    } finally {
      if (old === undefined) Deno.env.delete("LVIT_DATA");
      else Deno.env.set("LVIT_DATA", old);
    }

    // A mask whose image is gone, a missing row, a missing folder: DataError naming the layout.
    await Deno.remove(`${root}/Test_Folder/img/d.png`);
    await expectDataError(() => listSplit("qata", "test", root), "no image");
    await Deno.writeFile(`${root}/Test_Folder/img/d.png`, png(1));
    await Deno.writeFile(`${root}/Test_Folder/Test_text.xlsx`, textXlsx([["other.png", "D"]]));
    await expectDataError(() => listSplit("qata", "test", root), "no row with Image = mask_d.png");
    const e = await expectDataError(() => listLvitDataset("monuseg", root), "text table missing");
    assert(e.message.includes("Train_Folder/img/") && e.message.includes("MoNuSeg"), e.message);
    await Deno.remove(`${root}/Val_Folder/labelcol`, { recursive: true });
    await expectDataError(() => listSplit("qata", "val", root), "folder missing");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// ------------------------------------------------------------------ acceptance: real MoNuSeg

const MONUSEG = new URL("../../shared/datasets/MoNuSeg", import.meta.url);

async function monusegPresent(): Promise<boolean> {
  try {
    return (await Deno.stat(MONUSEG)).isDirectory;
  } catch {
    return false;
  }
}

Deno.test("acceptance: MoNuSeg splits 24/6/14 and one TIFF sample to 3x224x224", async () => {
  if (!(await monusegPresent())) {
    console.log(`SKIPPED: MoNuSeg not found at ${MONUSEG.pathname} (design.md 7)`);
    return;
  }
  const root = MONUSEG.pathname;
  const ds = await listLvitDataset("monuseg", root);
  const counts = ds.splits;
  for (const split of ["train", "val", "test"] as const) {
    const s = counts[split];
    const masks = new Set(s.map((x) => x.maskPath)).size;
    const texts = s.filter((x) => x.text.length > 0).length;
    console.log(`MoNuSeg ${split}: images ${s.length}, masks ${masks}, texts ${texts}`);
    assert(masks === s.length && texts === s.length, `${split}: every image has mask and text`);
  }
  assertArrayEq("counts", [counts.train.length, counts.val.length, counts.test.length], [
    24,
    6,
    14,
  ]);

  const tables = await readTextTable(`${root}/Test_Folder/Test_text.xlsx`);
  assert(
    tables.get("TCGA-2Z-A9J9-01A-01-TS1.png") === "The nuclei are sparsely distributed.",
    "text",
  );

  const sample = counts.test.find((x) => x.imagePath.endsWith("TCGA-2Z-A9J9-01A-01-TS1.tif"))!;
  assert(sample !== undefined && sample.text === "The nuclei are sparsely distributed.", "sample");
  const raw = await readImage(sample.imagePath);
  console.log(
    `decoded ${sample.key.replace(".png", ".tif")}: ${raw.width}x${raw.height}x${raw.channels}`,
  );
  assert(raw.width === 1000 && raw.height === 1000 && raw.channels === 3, "TIFF is 1000x1000 RGB");
  const s = await loadSample(sample);
  let lo = Infinity, hi = -Infinity, fg = 0;
  for (const v of s.image) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  for (const v of s.mask) fg += v;
  const binary = s.mask.every((v) => v === 0 || v === 1);
  console.log(
    `preprocessed: image 3x${s.size}x${s.size} in [${lo.toFixed(3)}, ${hi.toFixed(3)}], ` +
      `mask ${s.size}x${s.size} binary=${binary}, foreground ${(fg / s.mask.length).toFixed(3)}`,
  );
  assert(s.image.length === 3 * 224 * 224 && s.mask.length === 224 * 224, "shapes");
  assert(lo >= 0 && hi <= 1 && hi > lo, "image in [0, 1]");
  assert(binary && fg > 0 && fg < s.mask.length, "mask binary with both classes");

  // One training PNG as well, checking the BGR order against the decoded RGB.
  const train = counts.train[0];
  const png = await readImage(train.imagePath);
  assert(png.channels === 3 || png.channels === 4, "train PNG is colour");
  const bgr = toBgr8(png);
  assert(bgr.data[0] === png.data[2] && bgr.data[2] === png.data[0], "BGR order");
  const mask = await readImage(train.maskPath);
  assert(mask.channels === 1 && mask.data.every((v) => v === 0 || v === 255), "mask {0,255}");
});
