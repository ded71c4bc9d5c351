/**
 * Training that produced non-finite numbers (issue 15): a NaN or infinite loss, or weights that
 * are no longer finite. Not bad input and not a bug in the program, but a failed run: the CLIs
 * print the message alone (no stack trace) and exit 1; nothing non-finite was saved.
 */
export class DivergedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DivergedError";
  }
}
