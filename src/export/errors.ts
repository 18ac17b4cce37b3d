import { LorakitError } from "../core/errors.js";

/**
 * A model, tokenizer or adapter that the target format cannot express (an architecture
 * llama.cpp does not run, a tokenizer type it has no pre-tokenizer for, a DoRA adapter as a
 * GGUF LoRA, ...). The message names the thing, the reason and, where there is one, the fix.
 */
export class ExportError extends LorakitError {}
