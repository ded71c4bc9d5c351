/**
 * Entry of the exported page's text encoder (`text_builtin.js`, made from this file by
 * `deno run --allow-read --allow-write --allow-run lib/export/web_bundle.ts`): the builtin
 * encoder of lib/data/text_builtin.ts with its Philox and FNV-1a code, as one browser module, so
 * the page's text features are the ones training and `predict` use, bit for bit.
 */
export { BUILTIN_ENCODER_ID, encodeBuiltin } from "../../data/text_builtin.ts";
