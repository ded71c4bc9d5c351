/**
 * The BERT text encoder (lib/data/text_bert.ts) and the facade (lib/data/text.ts), run through
 * @huggingface/transformers on a tiny BERT the project writes itself (lib/data/tiny_bert.ts).
 */
import { importTransformers } from "../lib/deps.ts";
import { InputError } from "../lib/config/errors.ts";
import { DataError } from "../lib/data/errors.ts";
import { encodeTexts, openTextEncoder, type TextEncoder } from "../lib/data/text.ts";
import {
  BERT_MAX_SEQ_LENGTH,
  BertTextEncoder,
  bertWordPieces,
  mergeWordPieces,
  wordPiece,
} from "../lib/data/text_bert.ts";
import { basicTokenize, encodeBuiltin } from "../lib/data/text_builtin.ts";
import {
  erf,
  tinyBertForward,
  tinyBertOnnx,
  type TinyBertWeights,
  tinyBertWeights,
  writeTinyBert,
} from "../lib/data/tiny_bert.ts";
import { assert, assertEquals, expectRejection } from "./assert.ts";

const HIDDEN = 32;
const SEED = 7;

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function row(x: Float32Array, r: number, dim = HIDDEN): Float32Array {
  return x.subarray(r * dim, (r + 1) * dim);
}

function nonZeroRows(x: Float32Array, dim = HIDDEN): number {
  let n = 0;
  for (let r = 0; r * dim < x.length; r++) if (row(x, r, dim).some((v) => v !== 0)) n = r + 1;
  return n;
}

/** Reference features in float64: pieces, tinyBertForward, average per word, first N words. */
function referenceFeatures(w: TinyBertWeights, text: string, words: number): Float64Array {
  const vocab = new Map(w.config.vocab.map((t, i) => [t, i]));
  const pieces = bertWordPieces(text, vocab);
  const ids = [vocab.get("[CLS]")!, ...pieces.map((p) => vocab.get(p)!), vocab.get("[SEP]")!];
  const h = tinyBertForward(w, ids);
  const out = new Float64Array(words * HIDDEN);
  let word = -1, count = 0;
  const acc = new Float64Array(HIDDEN);
  const flush = () => {
    if (word >= 0 && word < words) {
      for (let d = 0; d < HIDDEN; d++) out[word * HIDDEN + d] = acc[d] / count;
    }
  };
  pieces.forEach((p, i) => {
    if (!p.startsWith("##")) {
      flush();
      word++, count = 0, acc.fill(0);
    }
    for (let d = 0; d < HIDDEN; d++) acc[d] += h[(i + 1) * HIDDEN + d];
    count++;
  });
  flush();
  return out;
}

async function expectDataError(
  what: string,
  f: () => Promise<unknown>,
  ...needles: string[]
): Promise<void> {
  const err = await expectRejection(what, DataError, f, ...needles);
  // One paragraph for the CLI, not a library's stack trace.
  assert(!/\n\s+at /.test(err.message), `${what}: message carries a stack trace: ${err.message}`);
}

// ---- pure parts ----

Deno.test("erf matches tabulated values to 1e-15", () => {
  const table: [number, number][] = [
    [0, 0],
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [1.5, 0.9661051464753108],
    [2, 0.9953222650189527],
    [2.5, 0.999593047982555],
    [2.9, 0.9999589021219005],
    [3, 0.9999779095030014],
    [4, 0.9999999845827421],
  ];
  for (const [x, v] of table) {
    assert(Math.abs(erf(x) - v) < 1e-15, `erf(${x}) = ${erf(x)}, want ${v}`);
    assert(Math.abs(erf(-x) + v) < 1e-15, `erf(${-x})`);
  }
});

Deno.test("wordPiece is greedy longest-match-first and gives [UNK] for unmatched words", () => {
  const vocab = new Map(
    ["[UNK]", "un", "##aff", "##able", "##a", "affable", "a", "##b"].map((t, i) => [t, i]),
  );
  assertEquals(wordPiece("unaffable", vocab), ["un", "##aff", "##able"]);
  assertEquals(wordPiece("affable", vocab), ["affable"]);
  assertEquals(wordPiece("ab", vocab), ["a", "##b"]);
  assertEquals(wordPiece("unx", vocab), ["[UNK]"]); // one unmatched rest spoils the whole word
  assertEquals(wordPiece("a".repeat(201), vocab), ["[UNK]"]);
});

Deno.test("mergeWordPieces averages ## runs, keeps the first N words, zero-pads", () => {
  const dim = 2;
  const pieces = ["the", "sparse", "##ly", "##ness", ".", "x"];
  const hidden = new Float32Array([1, 2, 10, 20, 30, 40, 50, 60, 7, 8, 9, 9]);
  assertEquals(
    mergeWordPieces(pieces, hidden, dim, 5),
    [1, 2, 30, 40, 7, 8, 9, 9, 0, 0],
  );
  assertEquals(mergeWordPieces(pieces, hidden, dim, 2), [1, 2, 30, 40]);
  // A word cut at its first piece is just that piece.
  assertEquals(mergeWordPieces(pieces.slice(0, 2), hidden, dim, 3), [1, 2, 10, 20, 0, 0]);
});

Deno.test("bertWordPieces pads like read_text, keeps the first line, cuts at 23 pieces", () => {
  const w = tinyBertWeights({ seed: SEED });
  const vocab = new Map(w.config.vocab.map((t, i) => [t, i]));
  assertEquals(
    bertWordPieces("The nuclei are sparsely distributed.", vocab),
    "the nuclei are sparse ##ly distributed . eof xxx eof xxx eof xxx eof xxx".split(" "),
  );
  // The reference counts words on the whole description and appends the padding at its end, so
  // a short first line followed by more lines is embedded unpadded.
  assertEquals(
    bertWordPieces("The nuclei are sparsely distributed.\nleft lung", vocab),
    "the nuclei are sparse ##ly distributed .".split(" "),
  );
  const long = bertWordPieces("one two ".repeat(20) + "unilateral", vocab);
  assertEquals(long.length, BERT_MAX_SEQ_LENGTH - 2);
});

Deno.test("tiny BERT weights and ONNX bytes are a pure function of the options", () => {
  const a = tinyBertOnnx(tinyBertWeights({ seed: 3, hidden: 8, heads: 2, layers: 1 }));
  const b = tinyBertOnnx(tinyBertWeights({ seed: 3, hidden: 8, heads: 2, layers: 1 }));
  const c = tinyBertOnnx(tinyBertWeights({ seed: 4, hidden: 8, heads: 2, layers: 1 }));
  assert(a.length === b.length && a.every((v, i) => v === b[i]), "same seed, same bytes");
  assert(!(a.length === c.length && a.every((v, i) => v === c[i])), "another seed changes bytes");
});

// ---- the encoder on the tiny BERT ----

Deno.test({
  name: "bert encoder on a tiny BERT through @huggingface/transformers",
  // ONNX Runtime's native addon keeps thread pools and handles for the life of the process.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const root = await Deno.makeTempDir({ prefix: "lvit_bert_" });
    const dir = `${root}/tiny`;
    const w = await writeTinyBert(dir, { seed: SEED, hidden: HIDDEN, layers: 2, heads: 2 });
    const enc = await BertTextEncoder.open(dir, { tokens: 10 });
    try {
      await t.step("config, id and vocabulary", () => {
        assertEquals(enc.dim, HIDDEN);
        assertEquals(enc.tokens, 10);
        assert(/^bert-wordavg-v1:sha256=[0-9a-f]{64}:maxseq=25:words=10$/.test(enc.id), enc.id);
        assertEquals(enc.vocab.file, `${dir}/tokenizer.json`);
      });

      await t.step("our tokeniser agrees with the library's on tokenizer.json", async () => {
        const lib = await importTransformers();
        const tok = await lib.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
        for (
          const text of [
            "The nuclei are sparsely distributed.",
            "Unilateral pulmonary infection, one infected area, middle lower left lung.",
            "Bilateral spreading (dense) regions;\t3 lobes? ALL! Über-café naïve \u00ad x\u0001y",
          ]
        ) {
          // The tokeniser alone: no read_text padding and no 23-piece cut, which the library's
          // tokenizer does not know of.
          const ours = basicTokenize(text).flatMap((word) => wordPiece(word, enc.vocab.ids))
            .map((p) => enc.vocab.ids.get(p)!);
          const theirs = (tok(text).input_ids.tolist() as bigint[][])[0].map(Number);
          assertEquals(theirs, [2, ...ours, 3]);
        }
        // The one intended difference: words of 101..200 characters are [UNK] for HF's tokenizer
        // (limit 100) but split into pieces by the reference's gluonnlp tokenizer (limit 200).
        const long = "q".repeat(150);
        assertEquals((tok(long).input_ids.tolist() as bigint[][])[0].map(Number), [2, 1, 3]);
        assertEquals(wordPiece(long, enc.vocab.ids), ["q", ...Array(149).fill("##q")]);
      });

      await t.step("hidden states match a float64 reference forward", async () => {
        // The ONNX graph runs in float32; over 2 post-LN layers of width 32 with O(1) values the
        // rounding error is ~1e-6 (seen: < 2e-6). 1e-4 is far below any real bug (a wrong mask,
        // scale, GELU or LayerNorm moves values by > 1e-2) and far above float32 noise.
        const vocab = enc.vocab.ids;
        for (const text of ["The nuclei are sparsely distributed.", "left lung"]) {
          const pieces = bertWordPieces(text, vocab);
          const ids = [2, ...pieces.map((p) => vocab.get(p)!), 3];
          const got = await enc.hiddenStates(pieces);
          const want = tinyBertForward(w, ids);
          const d = maxAbsDiff(got, want);
          assert(d < 1e-4, `hidden states differ by ${d}`);
        }
      });

      await t.step("word features match the float64 reference pipeline", async () => {
        for (
          const text of [
            "The nuclei are sparsely distributed.",
            "Unilateral pulmonary infection, one infected area, middle lower left lung.",
          ]
        ) {
          const got = await enc.encode(text);
          assertEquals(got.length, 10 * HIDDEN);
          const d = maxAbsDiff(got, referenceFeatures(w, text, 10));
          assert(d < 1e-4, `features differ by ${d}`);
        }
      });

      await t.step("a word's vector is the mean of its pieces' hidden states", async () => {
        const text = "The nuclei are sparsely distributed.";
        const pieces = bertWordPieces(text, enc.vocab.ids);
        assertEquals(pieces.slice(3, 5), ["sparse", "##ly"]);
        const h = await enc.hiddenStates(pieces);
        const got = await enc.encode(text);
        // Row 0 of h is [CLS]: piece i sits at row i + 1.
        const mean = Float32Array.from(
          { length: HIDDEN },
          (_, d) => (h[4 * HIDDEN + d] + h[5 * HIDDEN + d]) / 2,
        );
        assert(bitsEqual(row(got, 3), mean), "sparsely = mean(sparse, ##ly)");
        assert(bitsEqual(row(got, 4), row(h, 6)), "distributed is one piece: its own row");
      });

      await t.step("read_text padding and zero rows", async () => {
        // 5 words < 9: four " EOF XXX" are appended, so the padded text itself encodes alike.
        const a = await enc.encode("The nuclei are sparsely distributed.");
        const b = await enc.encode(
          "The nuclei are sparsely distributed. EOF XXX EOF XXX EOF XXX EOF XXX",
        );
        assert(bitsEqual(a, b), "padding is the reference's");
        // the nuclei are sparsely distributed . eof xxx eof xxx | eof xxx eof xxx: 14 words.
        const wide = await BertTextEncoder.open(dir, { tokens: 20 });
        try {
          const x = await wide.encode("The nuclei are sparsely distributed.");
          assertEquals(nonZeroRows(x), 14);
          assert(x.subarray(14 * HIDDEN).every((v) => v === 0), "rows after the words are zero");
          assert(bitsEqual(x.subarray(0, 10 * HIDDEN), a), "first 10 rows = the N=10 features");
          // Only the first line is embedded (after padding, which counts the whole text).
          const firstLine = await wide.encode("the nuclei are all small cells in one lung\nleft");
          assertEquals(nonZeroRows(firstLine), 9);
        } finally {
          await wide.close();
        }
      });

      await t.step("at most 23 wordpieces reach BERT", async () => {
        // 11 x "one two" = 22 one-piece words, then "sparsely" = sparse ##ly: its ##ly is the
        // 24th piece and is cut before BERT runs, so whatever follows cannot matter.
        const head = "one two ".repeat(11);
        const wide = await BertTextEncoder.open(dir, { tokens: 30 });
        try {
          const a = await wide.encode(head + "sparsely distributed");
          const b = await wide.encode(head + "sparse");
          const c = await wide.encode(head + "sparse lung lung lung");
          assertEquals(bertWordPieces(head + "sparsely distributed", wide.vocab.ids).length, 23);
          assert(bitsEqual(a, b) && bitsEqual(a, c), "pieces past the 23rd change nothing");
          assertEquals(nonZeroRows(a), 23);
          const d = maxAbsDiff(a, referenceFeatures(w, head + "sparse", 30));
          assert(d < 1e-4, `truncated features differ from the reference by ${d}`);
        } finally {
          await wide.close();
        }
      });

      await t.step("the N-word cut", async () => {
        const text = "Unilateral pulmonary infection, one infected area, middle lower left lung.";
        const ten = await enc.encode(text);
        const three = await BertTextEncoder.open(dir, { tokens: 3 });
        try {
          assert(three.id !== enc.id, "the word count is part of the id");
          const x = await three.encode(text);
          assertEquals(x.length, 3 * HIDDEN);
          assert(bitsEqual(x, ten.subarray(0, 3 * HIDDEN)), "first 3 rows of the 10");
        } finally {
          await three.close();
        }
        // "left" is the 11th word (unilateral pulmonary infection , one infected area , middle
        // lower | left): the reference's example loses it to the cut and it survives only through
        // the context of the words kept.
        const same = await enc.encode(text.replace("left", "right"));
        assert(bitsEqual(row(same, 9), row(ten, 9)) === false, "context still differs");
      });

      await t.step("the same text gives the same bits, also from a second session", async () => {
        const text = "Bilateral spreading regions, all lobes.";
        const a = await enc.encode(text);
        const b = await enc.encode(text);
        assert(bitsEqual(a, b), "twice in one session");
        const again = await BertTextEncoder.open(dir);
        try {
          assertEquals(again.id, enc.id);
          assert(bitsEqual(a, await again.encode(text)), "in a second session");
        } finally {
          await again.close();
        }
      });

      await t.step("vocab.txt alone gives the same features", async () => {
        const dir2 = `${root}/vocab_only`;
        await writeTinyBert(dir2, { seed: SEED, hidden: HIDDEN, tokenizerJson: false });
        const v = await BertTextEncoder.open(dir2);
        try {
          assertEquals(v.vocab.file, `${dir2}/vocab.txt`);
          const text = "Unilateral pulmonary infection, one infected area.";
          assert(bitsEqual(await v.encode(text), await enc.encode(text)), "same features");
        } finally {
          await v.close();
        }
      });

      await t.step("facade: openTextEncoder and encodeTexts with the disk cache", async () => {
        const cfg = { encoder: "bert" as const, model_dir: dir, tokens: 10, dim: HIDDEN, seed: 0 };
        const bert = await openTextEncoder(cfg);
        try {
          assertEquals(bert.id, enc.id);
          let calls = 0;
          const counting: TextEncoder = {
            ...bert,
            encode: (s) => {
              calls++;
              return bert.encode(s);
            },
          };
          const texts = ["left lung", "The nuclei are sparsely distributed.", "left lung"];
          const progress: [number, number][] = [];
          const cache = `${root}/cache`;
          const first = await encodeTexts(counting, texts, cache, (d, n) => progress.push([d, n]));
          assertEquals(calls, 2);
          assertEquals(progress, [[1, 2], [2, 2]]);
          assert(first[0] === first[2], "equal texts share one array");
          assert(bitsEqual(first[1], await enc.encode(texts[1])), "features are the encoder's");
          const second = await encodeTexts(counting, texts, cache);
          assertEquals(calls, 2); // all read back from disk
          for (let i = 0; i < 3; i++) assert(bitsEqual(first[i], second[i]), `cached text ${i}`);
          const uncached = await encodeTexts(counting, texts.slice(0, 1), null);
          assertEquals(calls, 3);
          assert(bitsEqual(uncached[0], first[0]), "no-cache path");
        } finally {
          await bert.close?.();
        }
        await expectDataError(
          "dim mismatch",
          () => openTextEncoder({ ...cfg, dim: 768 }),
          `${dir}/config.json`,
          "hidden_size is 32",
          "text.dim is 768",
        );
        await expectRejection(
          "model_dir null",
          InputError,
          () => openTextEncoder({ ...cfg, model_dir: null }),
          "text.model_dir",
        );
      });

      await t.step("another model gives another id", async () => {
        const dir3 = `${root}/other`;
        await writeTinyBert(dir3, { seed: SEED + 1, hidden: HIDDEN });
        const other = await BertTextEncoder.open(dir3);
        try {
          assert(other.id !== enc.id, "the model hash is part of the id");
        } finally {
          await other.close();
        }
      });

      await t.step(
        "broken model folders are DataErrors naming the folder and the files",
        async () => {
          const expected = ["config.json", "tokenizer.json", "vocab.txt", "onnx/model.onnx"];
          const missing = `${root}/does_not_exist`;
          await expectDataError(
            "missing folder",
            () => BertTextEncoder.open(missing),
            missing,
            "no such folder",
            ...expected,
          );

          const noOnnx = `${root}/no_onnx`;
          await writeTinyBert(noOnnx, { seed: SEED, hidden: HIDDEN });
          await Deno.remove(`${noOnnx}/onnx/model.onnx`);
          await expectDataError(
            "missing model.onnx",
            () => BertTextEncoder.open(noOnnx),
            noOnnx,
            "onnx/model.onnx is missing",
            ...expected,
          );

          const garbageConfig = `${root}/garbage_config`;
          await writeTinyBert(garbageConfig, { seed: SEED, hidden: HIDDEN });
          await Deno.writeTextFile(`${garbageConfig}/config.json`, "{ not json");
          await expectDataError(
            "garbage config.json",
            () => BertTextEncoder.open(garbageConfig),
            garbageConfig,
            "config.json: not valid JSON",
            ...expected,
          );

          const noVocab = `${root}/no_vocab`;
          await writeTinyBert(noVocab, { seed: SEED, hidden: HIDDEN, tokenizerJson: false });
          await Deno.remove(`${noVocab}/vocab.txt`);
          await expectDataError(
            "no vocabulary",
            () => BertTextEncoder.open(noVocab),
            noVocab,
            "neither tokenizer.json nor vocab.txt",
          );

          const notBert = `${root}/not_bert`;
          await writeTinyBert(notBert, { seed: SEED, hidden: HIDDEN });
          const c = JSON.parse(await Deno.readTextFile(`${notBert}/config.json`));
          await Deno.writeTextFile(
            `${notBert}/config.json`,
            JSON.stringify({ ...c, model_type: "gpt2" }),
          );
          await expectDataError("not bert", () => BertTextEncoder.open(notBert), notBert, '"gpt2"');

          // The library's own failure, wrapped: a model.onnx that is not an ONNX model.
          const garbageOnnx = `${root}/garbage_onnx`;
          await writeTinyBert(garbageOnnx, { seed: SEED, hidden: HIDDEN });
          await Deno.writeFile(`${garbageOnnx}/onnx/model.onnx`, new Uint8Array([1, 2, 3, 4, 5]));
          await expectDataError(
            "garbage model.onnx",
            () => BertTextEncoder.open(garbageOnnx),
            garbageOnnx,
            "could not load the model",
            ...expected,
          );

          // A model that loads but whose width disagrees with config.json.
          const wrongWidth = `${root}/wrong_width`;
          await writeTinyBert(wrongWidth, { seed: SEED, hidden: HIDDEN });
          const c2 = JSON.parse(await Deno.readTextFile(`${wrongWidth}/config.json`));
          await Deno.writeTextFile(
            `${wrongWidth}/config.json`,
            JSON.stringify({ ...c2, hidden_size: 48 }),
          );
          await expectDataError(
            "hidden size mismatch",
            () => BertTextEncoder.open(wrongWidth),
            wrongWidth,
            "[1, 2, 48]",
          );
        },
      );
    } finally {
      await enc.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("builtin facade wraps encodeBuiltin", async () => {
  const enc = await openTextEncoder({
    encoder: "builtin",
    model_dir: null,
    tokens: 10,
    dim: 16,
    seed: 3,
  });
  assert(enc.id.includes("tokens=10") && enc.id.includes("dim=16") && enc.id.includes("seed=3"));
  const text = "Unilateral pulmonary infection, one infected area.";
  assert(
    bitsEqual(await enc.encode(text), encodeBuiltin(text, { maxTokens: 10, dim: 16, seed: 3 })),
    "same vectors as encodeBuiltin",
  );
  const [a, b] = await encodeTexts(enc, [text, "left lung"], null);
  assertEquals(a.length, 160);
  assertEquals(b.length, 160);
});
