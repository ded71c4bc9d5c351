/**
 * Test-time text ablations for `deno task eval --text-ablation`: score a trained text-guided model
 * with texts that no longer belong to their images, to see how much its masks depend on them.
 * A model that ignores its text scores the same under every ablation; one that uses it loses
 * Dice when each image gets another image's text (`shift`) or none (`zeros`).
 */

/** The ablations: `shift` gives image i the text of image i+1 (the last gets the first's). */
export const TEXT_ABLATIONS = ["shift", "zeros"] as const;
/** One of {@link TEXT_ABLATIONS}. */
export type TextAblation = typeof TEXT_ABLATIONS[number];

/** Whether `s` names an ablation. */
export function isTextAblation(s: string): s is TextAblation {
  return (TEXT_ABLATIONS as readonly string[]).includes(s);
}

/**
 * The text features a split is scored with under `mode`: `shift` rotates the list by one (the
 * same arrays, reordered), `zeros` replaces every feature matrix by zeros of its size.
 */
export function ablateTexts(texts: readonly Float32Array[], mode: TextAblation): Float32Array[] {
  if (mode === "zeros") return texts.map((t) => new Float32Array(t.length));
  return texts.map((_, i) => texts[(i + 1) % texts.length]);
}

/** How many images get a text whose features differ from their own under `mode`. */
export function changedTexts(texts: readonly Float32Array[], mode: TextAblation): number {
  const after = ablateTexts(texts, mode);
  return texts.filter((t, i) => !sameValues(t, after[i])).length;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}
