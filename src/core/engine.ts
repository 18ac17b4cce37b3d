// Engine state: the active kernel backend and whether ops record a graph.
// Backends are chosen explicitly; importing lorakit changes nothing.
import { refBackend } from "../kernels/ref/index.js";
import type { Backend } from "./backend.js";

let active: Backend = refBackend;

/** The backend kernels run on. Starts as the TypeScript reference backend. */
export function backend(): Backend {
  return active;
}

/** Makes `b` the backend for every op from now on; returns the previous one. */
export function setBackend(b: Backend): Backend {
  const prev = active;
  active = b;
  return prev;
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Set while `probeGrad` runs: did an op skip recording a node that it would have recorded
 * with grad on? Activation checkpointing needs this because the parameters a checkpointed
 * function reaches (LoRA A/B, trainable biases) are not among its inputs.
 */
let probe: { reached: boolean } | null = null;

/** Runs fn without recording a graph (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  const prevProbe = probe;
  gradEnabled = false;
  // A deliberate noGrad inside a probed function would not record even with grad on.
  probe = null;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
    probe = prevProbe;
  }
}

/** Runs fn with graph recording on (torch.enable_grad), e.g. inside backward(), which runs under noGrad. */
export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * Runs fn without recording a graph and reports whether it would have recorded one, i.e.
 * whether some op met an input that requires grad.
 */
export function probeGrad<T>(fn: () => T): { result: T; reached: boolean } {
  const prev = gradEnabled;
  const prevProbe = probe;
  const mine = { reached: false };
  gradEnabled = false;
  probe = mine;
  try {
    const result = fn();
    return { result, reached: mine.reached };
  } finally {
    gradEnabled = prev;
    probe = prevProbe;
    if (prevProbe && mine.reached) prevProbe.reached = true;
  }
}

/**
 * True while `probeGrad` runs fn: grad is off only to see what fn reaches (activation
 * checkpointing's first forward inside a training step), not for inference.
 */
export function isProbingGrad(): boolean {
  return probe !== null;
}

/** Called by ops that did not record a node although an input requires grad (grad is off). */
export function noteUnrecorded(): void {
  if (probe) probe.reached = true;
}

let weightPacking = true;

/**
 * Whether inference packs frozen linear weights into the backend's kernel layout on first
 * use (on by default; the backend must offer packWeight). Off: every product reads the
 * row-major weight, as before; weights already packed stay packed. Packing never changes a
 * result bit. Returns the previous value.
 */
export function setWeightPacking(on: boolean): boolean {
  const prev = weightPacking;
  weightPacking = on;
  return prev;
}

export function isWeightPackingEnabled(): boolean {
  return weightPacking;
}
