/**
 * Every third-party dependency, once, as full npm specifiers with pinned majors: a module
 * imported from a URL does not see this repository's import map (design.md 2).
 */
export { isMap, LineCounter, parseDocument } from "npm:yaml@^2.8.1";

// Image codecs for the LViT data reader (lib/data/codecs.ts says why these); the encoders build
// test fixtures.
export { convertIndexedToRgb, decode as decodePng, encode as encodePng } from "npm:fast-png@^8.0.0";
export { default as UTIF } from "npm:utif2@^4.1.0";
export { default as jpegJs } from "npm:jpeg-js@^0.4.4";
// Zip container of .xlsx files (lib/data/xlsx.ts); zipSync builds test fixtures.
export { unzipSync, zipSync } from "npm:fflate@^0.8.3";
