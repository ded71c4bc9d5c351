/**
 * The one error type of the data layer. Data files are untrusted input: whatever goes wrong while
 * reading them (missing file, truncated PNG, hostile xlsx) surfaces as a DataError naming the file
 * and the problem, so the CLI can print one paragraph instead of a library's stack trace.
 */
export class DataError extends Error {
  /** The file or folder the problem is about. */
  readonly path: string;

  /**
   * A problem with one file or folder; the message is `path: problem`.
   * @param path the file or folder concerned
   * @param problem what is wrong with it, in words
   */
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = "DataError";
    this.path = path;
  }
}

/** The message of anything thrown, for wrapping third-party failures into a DataError. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
