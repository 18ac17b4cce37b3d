/** Errors that name the operation, show the values, and say the fix. */
export class LorakitError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A tensor operation got inputs it cannot work on (shapes, dtypes, indices). */
export class ShapeError extends LorakitError {}
export class DTypeError extends LorakitError {}
export class IndexError extends LorakitError {}
/** A tensor was used after `dispose()` (or after the `tidy` scope that owned it ended). */
export class DisposedError extends LorakitError {}
export class BackendError extends LorakitError {}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
