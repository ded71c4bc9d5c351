/**
 * A writer for minimal .xlsx workbooks: one sheet ("Sheet1"), a header row and rows of strings,
 * every cell a shared string. That is the shape of the LViT text tables (lvit-reference.md 4.2),
 * so synthetic data sets can ship tables the reader in `xlsx.ts` (and Excel, LibreOffice,
 * openpyxl) accept.
 *
 * Output is deterministic: parts are written in a fixed order with a fixed zip timestamp, so the
 * same rows give the same bytes on every run.
 */
import { zipSync } from "../deps.ts";

const NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships";
const CT_BASE = "application/vnd.openxmlformats-officedocument.spreadsheetml";
const XML_DECL = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n`;

// Characters XML 1.0 cannot carry at all, even escaped (C0 controls other than tab, LF, CR,
// and the two non-characters U+FFFE/U+FFFF).
// deno-lint-ignore no-control-regex
const XML_FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/**
 * Escapes text for XML element content and attribute values.
 * @throws RangeError for characters XML 1.0 cannot represent
 */
export function xmlEscape(s: string): string {
  const bad = XML_FORBIDDEN.exec(s);
  if (bad) {
    const code = bad[0].charCodeAt(0).toString(16).padStart(4, "0");
    throw new RangeError(`character U+${code} cannot be stored in an xlsx cell`);
  }
  return s.replace(
    /[&<>"']/g,
    (c) =>
      c === "&"
        ? "&amp;"
        : c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === '"'
        ? "&quot;"
        : "&apos;",
  );
}

/** Zero-based column index -> spreadsheet letters (0 -> "A", 25 -> "Z", 26 -> "AA"). */
export function columnName(col: number): string {
  let s = "";
  for (let n = col + 1; n > 0; n = Math.floor((n - 1) / 26)) {
    s = String.fromCharCode(65 + ((n - 1) % 26)) + s;
  }
  return s;
}

/**
 * Builds an .xlsx file in memory.
 * @param header the names of row 1 (e.g. `["Image", "Description"]`)
 * @param rows the later rows; a row shorter than the header leaves its last cells empty
 * @throws RangeError for text XML cannot hold
 */
export function buildXlsx(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): Uint8Array {
  // Shared strings, deduplicated in first-use order (what spreadsheet programs write too).
  const index = new Map<string, number>();
  const strings: string[] = [];
  let refs = 0;
  const ref = (s: string): number => {
    refs++;
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      index.set(s, i);
      strings.push(s);
    }
    return i;
  };
  const sheetRows = [header, ...rows].map((r, ri) => {
    const cells = r.map((v, ci) => `<c r="${columnName(ci)}${ri + 1}" t="s"><v>${ref(v)}</v></c>`);
    return `<row r="${ri + 1}">${cells.join("")}</row>`;
  });
  const sst =
    `${XML_DECL}<sst xmlns="${NS_MAIN}" count="${refs}" uniqueCount="${strings.length}">` +
    // xml:space="preserve" keeps leading/trailing blanks that readers would otherwise trim.
    strings.map((s) => `<si><t xml:space="preserve">${xmlEscape(s)}</t></si>`).join("") +
    `</sst>`;
  const sheet = `${XML_DECL}<worksheet xmlns="${NS_MAIN}"><sheetData>${sheetRows.join("")}` +
    `</sheetData></worksheet>`;
  const workbook = `${XML_DECL}<workbook xmlns="${NS_MAIN}" xmlns:r="${NS_REL}"><sheets>` +
    `<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>`;
  const workbookRels = `${XML_DECL}<Relationships xmlns="${NS_PKG_REL}">` +
    `<Relationship Id="rId1" Type="${NS_REL}/worksheet" Target="worksheets/sheet1.xml"/>` +
    `<Relationship Id="rId2" Type="${NS_REL}/sharedStrings" Target="sharedStrings.xml"/>` +
    `</Relationships>`;
  const rootRels = `${XML_DECL}<Relationships xmlns="${NS_PKG_REL}">` +
    `<Relationship Id="rId1" Type="${NS_REL}/officeDocument" Target="xl/workbook.xml"/>` +
    `</Relationships>`;
  const contentTypes = `${XML_DECL}<Types ` +
    `xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
    `<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
    `<Default Extension="xml" ContentType="application/xml"/>` +
    `<Override PartName="/xl/workbook.xml" ContentType="${CT_BASE}.sheet.main+xml"/>` +
    `<Override PartName="/xl/worksheets/sheet1.xml" ContentType="${CT_BASE}.worksheet+xml"/>` +
    `<Override PartName="/xl/sharedStrings.xml" ContentType="${CT_BASE}.sharedStrings+xml"/>` +
    `</Types>`;
  const enc = new TextEncoder();
  const parts: [string, string][] = [
    ["[Content_Types].xml", contentTypes],
    ["_rels/.rels", rootRels],
    ["xl/workbook.xml", workbook],
    ["xl/_rels/workbook.xml.rels", workbookRels],
    ["xl/worksheets/sheet1.xml", sheet],
    ["xl/sharedStrings.xml", sst],
  ];
  const files: Record<string, Uint8Array> = {};
  for (const [name, xml] of parts) files[name] = enc.encode(xml);
  // fflate stamps entries with the current time by default; a fixed local-time date keeps the
  // bytes reproducible (zip stores local DOS time, so a local-time constructor is TZ-proof).
  return zipSync(files, { level: 6, mtime: new Date(2000, 0, 1) });
}

/** Writes {@link buildXlsx}'s workbook to `path`. */
export async function writeXlsx(
  path: string,
  header: readonly string[],
  rows: readonly (readonly string[])[],
): Promise<void> {
  await Deno.writeFile(path, buildXlsx(header, rows));
}
