// A seeded, serialisable random generator (xoshiro128**, seeded through SplitMix32),
// with the initialisers lorakit needs. Its state can be saved in a checkpoint and
// restored so a resumed run draws the same numbers.
import type { FloatDType } from "./dtype.js";
import { ShapeError } from "./errors.js";
import type { Shape } from "./tensor.js";
import { empty, type Tensor } from "./tensor.js";

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A generator's state as getState() returns it. */
export type RngState = { s: number[]; spare: number | null };

/**
 * Open draw captures (innermost last): each maps every Rng drawn from while it is open to
 * its state before that first draw. Activation checkpointing replays those states when it
 * recomputes, so dropout draws the same masks without callers listing the generators.
 */
const captures: Map<Rng, RngState>[] = [];

function noteDraw(rng: Rng): void {
  for (const c of captures) if (!c.has(rng)) c.set(rng, rng.getState());
}

/**
 * Runs fn and returns, for every Rng it drew from, the state before its first draw
 * (generators created inside fn included; they are simply never drawn again).
 */
export function captureRngDraws<T>(fn: () => T): { result: T; drawn: Map<Rng, RngState> } {
  const drawn = new Map<Rng, RngState>();
  captures.push(drawn);
  try {
    return { result: fn(), drawn };
  } finally {
    captures.pop();
  }
}

export class Rng {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed = 0) {
    const sm = splitmix32(seed);
    for (let i = 0; i < 4; i++) this.s[i] = sm();
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    if (captures.length) noteDraw(this);
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Standard normal (Box–Muller, the second value kept for the next call). */
  normal(): number {
    if (captures.length) noteDraw(this); // taking the spare changes the state too
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** A fresh 32-bit seed (for dropout masks and child generators). */
  nextSeed(): number {
    return this.nextU32() | 0;
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<X>(xs: X[]): X[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }

  getState(): RngState {
    return { s: Array.from(this.s), spare: this.spare };
  }

  setState(state: RngState): void {
    if (state.s.length !== 4) throw new ShapeError("Rng.setState: expected 4 state words");
    this.s.set(state.s);
    this.spare = state.spare;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** U(low, high) samples. */
export function randUniform(
  rng: Rng,
  shape: Shape,
  low = 0,
  high = 1,
  dtype: FloatDType = "f32",
): Tensor<FloatDType> {
  const t = empty(shape, dtype);
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] = low + (high - low) * rng.uniform();
  return t;
}

/** N(mean, std²) samples. */
export function randNormal(
  rng: Rng,
  shape: Shape,
  mean = 0,
  std = 1,
  dtype: FloatDType = "f32",
): Tensor<FloatDType> {
  const t = empty(shape, dtype);
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] = mean + std * rng.normal();
  return t;
}

/**
 * PyTorch's `kaiming_uniform_(w, a)` for a weight (out, in): fan_in = in,
 * gain = √(2/(1+a²)), bound = gain·√(3/fan_in). With a = √5 (nn.Linear's and PEFT's
 * lora_A default) the bound is 1/√fan_in.
 */
export function kaimingUniform(
  rng: Rng,
  shape: Shape,
  a = Math.sqrt(5),
  dtype: FloatDType = "f32",
): Tensor<FloatDType> {
  if (shape.length < 2)
    throw new ShapeError(`kaimingUniform: needs a weight of rank ≥ 2, got [${shape.join(", ")}]`);
  let fanIn = shape[1];
  for (let i = 2; i < shape.length; i++) fanIn *= shape[i];
  const gain = Math.sqrt(2 / (1 + a * a));
  const bound = gain * Math.sqrt(3 / fanIn);
  return randUniform(rng, shape, -bound, bound, dtype);
}
