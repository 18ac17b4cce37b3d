import { LorakitError } from "../core/errors.js";

/** A PEFT configuration or adapter file that lorakit cannot use as given. */
export class PeftError extends LorakitError {}
