import { LorakitError } from "../core/errors.js";

/** A tokenizer could not be trained, loaded or used (bad files, unsupported parts, bad ids). */
export class TokenizerError extends LorakitError {}
