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

/** Runs fn without recording a graph (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}
