/**
 * A reader for the LViT text tables (lvit-reference.md 4.2): the first sheet of an .xlsx, row 1
 * a header (Image | Description), cells mostly shared strings.
 *
 * Not the npm `xlsx` (SheetJS) package: its npm releases carry a prototype-pollution advisory
 * (CVE-2023-30533) fixed only outside npm. This reads the zip with lib/data/zip.ts (sizes and
 * CRC-32 checked, inflating bounded) and the three or four XML parts it needs with a small
 * parser written for hostile input: no DTDs, so no entity expansion; only the five predefined
 * entities and character references; bounded nesting; and all keyed data in Maps, so a
 * `__proto__` cell is just a string.
 */
import { readFileChecked } from "./codecs.ts";
import { DataError } from "./errors.ts";
import { readZipDirectory, readZipEntry, type ZipBudget } from "./zip.ts";

/** .xlsx files larger than this are refused before being read (the LViT ones are ~10 KB). */
export const MAX_XLSX_BYTES = 16 * 2 ** 20;
/**
 * The most bytes inflated from one .xlsx, all parts read together (32 MiB): QaTa's table of
 * about 9,000 rows is under 2 MiB of XML. A zip bomb of a few hundred KB declares parts of
 * 255 MiB each and is refused before anything is inflated.
 */
export const MAX_XLSX_INFLATED_BYTES = 32 * 2 ** 20;
const MAX_DEPTH = 128;

/** A sheet as read: header names from row 1 and one Map (header -> cell text) per later row. */
export interface SheetRows {
  /** The cell texts of row 1, in column order. */
  header: string[];
  /** One map per later row, from header name to cell text. */
  rows: Map<string, string>[];
}

// ---------------------------------------------------------------- XML

interface XmlHandler {
  open(name: string, attrs: Map<string, string>): void;
  close(name: string): void;
  text(s: string): void;
}

const PREDEFINED = new Map([["lt", "<"], ["gt", ">"], ["amp", "&"], ["quot", '"'], [
  "apos",
  "'",
]]);

function decodeEntities(s: string, where: string): string {
  if (!s.includes("&")) return s;
  return s.replace(/&([^;&\s]{0,12});/g, (_m, name: string) => {
    if (name.startsWith("#")) {
      const code = name[1] === "x" || name[1] === "X"
        ? parseInt(name.slice(2), 16)
        : parseInt(name.slice(1), 10);
      if (!Number.isInteger(code) || code < 0 || code > 0x10ffff) {
        throw new DataError(where, `invalid character reference &${name};`);
      }
      return String.fromCodePoint(code);
    }
    const v = PREDEFINED.get(name);
    if (v === undefined) throw new DataError(where, `unknown XML entity &${name};`);
    return v;
  });
}

/** Element names without their namespace prefix (`x:row` -> `row`); writers differ. */
function localName(qname: string): string {
  const i = qname.indexOf(":");
  return i < 0 ? qname : qname.slice(i + 1);
}

const NAME_RE = /^[A-Za-z_][\w.:-]*/;
const ATTR_RE = /\s*([A-Za-z_][\w.:-]*)\s*=\s*("([^"]*)"|'([^']*)')/y;

/** A streaming, non-validating XML tokenizer for well-formed documents; refuses DTDs. */
function parseXml(xml: string, where: string, h: XmlHandler): void {
  const stack: string[] = [];
  let pos = 0;
  const fail = (what: string): never => {
    throw new DataError(where, `malformed XML at offset ${pos}: ${what}`);
  };
  while (pos < xml.length) {
    const lt = xml.indexOf("<", pos);
    const end = lt < 0 ? xml.length : lt;
    if (end > pos) {
      const t = xml.slice(pos, end);
      if (stack.length) h.text(decodeEntities(t, where));
      else if (t.trim()) fail("text outside the root element");
    }
    if (lt < 0) break;
    pos = lt;
    if (xml.startsWith("<?", pos)) {
      const e = xml.indexOf("?>", pos);
      if (e < 0) fail("unterminated processing instruction");
      pos = e + 2;
    } else if (xml.startsWith("<!--", pos)) {
      const e = xml.indexOf("-->", pos);
      if (e < 0) fail("unterminated comment");
      pos = e + 3;
    } else if (xml.startsWith("<![CDATA[", pos)) {
      const e = xml.indexOf("]]>", pos);
      if (e < 0) fail("unterminated CDATA section");
      if (stack.length) h.text(xml.slice(pos + 9, e));
      pos = e + 3;
    } else if (xml.startsWith("<!", pos)) {
      // DOCTYPE and friends: the only route to entity-expansion attacks, and never in xlsx.
      fail("DTDs and declarations are not accepted");
    } else if (xml.startsWith("</", pos)) {
      const e = xml.indexOf(">", pos);
      if (e < 0) fail("unterminated end tag");
      const name = xml.slice(pos + 2, e).trim();
      const top = stack.pop();
      if (top !== name) fail(`</${name}> does not close <${top ?? "nothing"}>`);
      h.close(localName(name));
      pos = e + 1;
    } else {
      const m = NAME_RE.exec(xml.slice(pos + 1, pos + 257));
      if (!m) fail("bad tag name");
      const name = m![0];
      pos += 1 + name.length;
      const attrs = new Map<string, string>();
      for (;;) {
        ATTR_RE.lastIndex = pos;
        const a = ATTR_RE.exec(xml);
        if (!a) break;
        if (attrs.has(a[1])) fail(`duplicate attribute ${a[1]}`);
        attrs.set(a[1], decodeEntities(a[3] ?? a[4], where));
        pos = ATTR_RE.lastIndex;
      }
      while (pos < xml.length && /\s/.test(xml[pos])) pos++;
      const selfClosing = xml.startsWith("/>", pos);
      if (!selfClosing && xml[pos] !== ">") fail(`bad attribute syntax in <${name}>`);
      pos += selfClosing ? 2 : 1;
      h.open(localName(name), attrs);
      if (selfClosing) h.close(localName(name));
      else {
        stack.push(name);
        if (stack.length > MAX_DEPTH) fail("nesting too deep");
      }
    }
  }
  if (stack.length) fail(`unclosed <${stack[stack.length - 1]}>`);
}

// ---------------------------------------------------------------- xlsx parts

function readSharedStrings(xml: string, where: string): string[] {
  const out: string[] = [];
  // Text counts only inside <t> directly under <si> or under a rich-text run <r>; <rPh>
  // (phonetic hints, present in the MoNuSeg files) also holds <t> that must be skipped.
  const path: string[] = [];
  let cur: string[] | null = null;
  parseXml(xml, where, {
    open(name) {
      path.push(name);
      if (name === "si") cur = [];
    },
    close(name) {
      path.pop();
      if (name === "si" && cur) {
        out.push(cur.join(""));
        cur = null;
      }
    },
    text(s) {
      if (!cur || path[path.length - 1] !== "t") return;
      const parent = path[path.length - 2];
      if (parent === "si" || parent === "r") cur.push(s);
    },
  });
  return out;
}

/** "B12" -> 1 (zero-based column), or -1 when the reference is not of that form. */
function columnOf(ref: string): number {
  const m = /^([A-Z]{1,3})\d+$/.exec(ref);
  if (!m) return -1;
  let col = 0;
  for (const ch of m[1]) col = col * 26 + (ch.charCodeAt(0) - 64);
  return col - 1;
}

function readSheetCells(xml: string, where: string, shared: string[] | null): string[][] {
  const rows: string[][] = [];
  let row: string[] | null = null;
  let cellType = "";
  let cellCol = -1;
  let value: string[] | null = null; // text of <v>, or of <t> inside an inline string <is>
  let inValue = false;
  const path: string[] = [];
  parseXml(xml, where, {
    open(name, attrs) {
      path.push(name);
      if (name === "row") {
        row = [];
        // Rows may skip empty ones; keep positions so "row 1 is the header" stays true.
        const r = Number(attrs.get("r"));
        if (Number.isInteger(r) && r >= 1 && r <= 1_048_576) {
          while (rows.length < r - 1) rows.push([]);
        }
      } else if (name === "c" && row) {
        cellType = attrs.get("t") ?? "n";
        const ref = attrs.get("r");
        cellCol = ref === undefined ? row.length : columnOf(ref);
        if (cellCol < 0) throw new DataError(where, `bad cell reference ${ref}`);
        value = [];
      } else if (
        value && (name === "v" || (name === "t" && path.includes("is") && !path.includes("rPh")))
      ) {
        inValue = true;
      }
    },
    close(name) {
      path.pop();
      if (name === "v" || name === "t") inValue = false;
      else if (name === "c" && row && value) {
        let text = value.join("");
        if (cellType === "s") {
          const i = Number(text);
          if (!shared) throw new DataError(where, "shared-string cell but no sharedStrings.xml");
          if (!Number.isInteger(i) || i < 0 || i >= shared.length) {
            throw new DataError(where, `shared-string index ${text} out of range`);
          }
          text = shared[i];
        }
        while (row.length < cellCol) row.push("");
        row[cellCol] = text;
        value = null;
      } else if (name === "row" && row) {
        rows.push(row);
        row = null;
      }
    },
    text(s) {
      if (inValue && value) value.push(s);
    },
  });
  return rows;
}

/** The zip path of the first sheet, via workbook.xml and its relationships when present. */
function firstSheetPath(part: (name: string) => string | undefined, where: string): string {
  const workbook = part("xl/workbook.xml");
  if (workbook === undefined) throw new DataError(where, "not an xlsx: xl/workbook.xml missing");
  let rid: string | undefined;
  parseXml(workbook, `${where} (xl/workbook.xml)`, {
    open(name, attrs) {
      if (name === "sheet" && rid === undefined) {
        for (const [k, v] of attrs) if (k.endsWith(":id")) rid = v;
        rid ??= "";
      }
    },
    close() {},
    text() {},
  });
  if (rid === undefined) throw new DataError(where, "workbook lists no sheet");
  const rels = part("xl/_rels/workbook.xml.rels");
  if (rels !== undefined && rid) {
    let target: string | undefined;
    parseXml(rels, `${where} (xl/_rels/workbook.xml.rels)`, {
      open(name, attrs) {
        if (name === "Relationship" && attrs.get("Id") === rid) target = attrs.get("Target");
      },
      close() {},
      text() {},
    });
    if (target) return target.startsWith("/") ? target.slice(1) : `xl/${target}`;
  }
  // Minimal writers omit the relationships part; the first sheet is then sheet1 by convention.
  return "xl/worksheets/sheet1.xml";
}

/**
 * Reads the first sheet of an .xlsx held in memory.
 * @param bytes the file contents
 * @param where the file path, for error messages
 * @throws DataError when it is not a zip, lacks a part, or holds malformed XML
 */
export function parseXlsx(bytes: Uint8Array, where: string): SheetRows {
  const zip = readZipDirectory(bytes, where);
  const budget: ZipBudget = {
    left: MAX_XLSX_INFLATED_BYTES,
    describe: `${MAX_XLSX_INFLATED_BYTES} bytes (32 MiB) accepted uncompressed for one xlsx`,
  };
  // Only the parts read below are inflated, each at most once.
  const parts = new Map<string, string | undefined>();
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const part = (name: string): string | undefined => {
    if (parts.has(name)) return parts.get(name);
    const entry = zip.get(name);
    let text: string | undefined;
    if (entry) {
      const raw = readZipEntry(bytes, entry, where, budget);
      try {
        text = utf8.decode(raw);
      } catch {
        throw new DataError(where, `zip part ${name} is not valid UTF-8`);
      }
    }
    parts.set(name, text);
    return text;
  };
  const sheetPath = firstSheetPath(part, where);
  const sheet = part(sheetPath);
  if (sheet === undefined) throw new DataError(where, `sheet part ${sheetPath} missing`);
  const sst = part("xl/sharedStrings.xml");
  const shared = sst === undefined
    ? null
    : readSharedStrings(sst, `${where} (xl/sharedStrings.xml)`);
  const cells = readSheetCells(sheet, `${where} (${sheetPath})`, shared);
  if (cells.length === 0) throw new DataError(where, "first sheet is empty (no header row)");
  const header = cells[0].map((h) => h.trim());
  const rows: Map<string, string>[] = [];
  for (const r of cells.slice(1)) {
    if (r.every((v) => v === "")) continue;
    const m = new Map<string, string>();
    header.forEach((name, i) => {
      if (name) m.set(name, r[i] ?? "");
    });
    rows.push(m);
  }
  return { header, rows };
}

/** Reads the first sheet of an .xlsx file. @throws DataError as {@link parseXlsx} */
export async function readXlsx(path: string): Promise<SheetRows> {
  return parseXlsx(await readFileChecked(path, MAX_XLSX_BYTES, "xlsx tables"), path);
}

/**
 * The LViT text table of a file: mask file name (column `Image`) -> description (column
 * `Description`). A repeated name keeps its last description, as the reference's dict does.
 * @throws DataError when the file is unreadable or lacks either column
 */
export async function readTextTable(path: string): Promise<Map<string, string>> {
  return textTableOf(await readXlsx(path), path);
}

/**
 * The LViT text table of a sheet already read ({@link readXlsx}), as {@link readTextTable}.
 * @param path the file the sheet came from, for error messages
 * @param onRepeat called with a name that appears again with a different description (the
 *   later row wins)
 * @throws DataError when the sheet lacks the Image or Description column
 */
export function textTableOf(
  sheet: SheetRows,
  path: string,
  onRepeat?: (key: string) => void,
): Map<string, string> {
  const { header, rows } = sheet;
  for (const col of ["Image", "Description"]) {
    if (!header.includes(col)) {
      throw new DataError(
        path,
        `header row must name columns Image and Description, found: ${header.join(" | ")}`,
      );
    }
  }
  const out = new Map<string, string>();
  for (const r of rows) {
    const key = (r.get("Image") ?? "").trim();
    if (!key) continue;
    const text = r.get("Description") ?? "";
    const prev = out.get(key);
    if (prev !== undefined && prev !== text) onRepeat?.(key);
    out.set(key, text);
  }
  return out;
}
