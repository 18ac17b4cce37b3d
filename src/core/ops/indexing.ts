// Indexing: gather (embedding lookup, scatter-add backward), where, maskedFill.
import { f16ToF32 } from "../dtype.js";
import { backend } from "../engine.js";
import { DTypeError, fmtShape, IndexError, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { asFloat, empty, zeros } from "../tensor.js";
import type { T, TensorLike } from "./util.js";
import {
  broadcastShapes,
  commonFloat,
  floatData,
  maybeRecord,
  padShape,
  sumToShape,
  toTensor,
} from "./util.js";

function checkIndices(op: string, idx: Tensor, limit: number): Int32Array {
  if (idx.dtype !== "i32") throw new DTypeError(`${op}: indices must be an i32 tensor, got ${idx.dtype}`);
  const d = idx.data as Int32Array;
  for (let i = 0; i < d.length; i++)
    if (d[i] < 0 || d[i] >= limit)
      throw new IndexError(
        `${op}: index ${d[i]} at position ${i} is out of range for a table of ${limit} rows`,
      );
  return d;
}

/**
 * Rows of a table: out[..., :] = table[idx[...], :]. table: (V, C), idx: i32 of any shape,
 * out: (...idx.shape, C). The backward scatter-adds into the table's gradient.
 *
 * @example
 * const h = embedding(embedTokens, ids); // ids (B,T) → (B,T,C)
 */
export function embedding(table: Tensor, idx: Tensor): T {
  if (table.packedWeight) return packedEmbedding(table, idx);
  if (table.dtype === "bf16" || table.dtype === "f16") return halfEmbedding(table, idx);
  const t = asFloat(table, "embedding");
  if (t.rank !== 2)
    throw new ShapeError(`embedding: table must be 2-D (rows, channels), got ${fmtShape(t.shape)}`);
  const [V, C] = t.shape;
  const ids = checkIndices("embedding", idx, V);
  const out = empty([...idx.shape, C], t.dtype);
  backend().gather(floatData(t), ids, C, floatData(out));
  return maybeRecord(out, "embedding", [t], (dy) => {
    const dt = zeros(t.shape, t.dtype);
    backend().scatterAdd(floatData(dy), ids, C, floatData(dt));
    return [dt];
  });
}

/**
 * A frozen 16-bit table (a bf16/f16 checkpoint kept in its own dtype): the picked rows are
 * widened to f32; no gradient flows into the table.
 */
function halfEmbedding(table: Tensor, idx: Tensor): T {
  if (table.rank !== 2)
    throw new ShapeError(`embedding: table must be 2-D (rows, channels), got ${fmtShape(table.shape)}`);
  if (table.requiresGrad)
    throw new DTypeError(
      `embedding: a ${table.dtype} table cannot be trained (16-bit storage is for frozen weights); load it as f32`,
    );
  const [V, C] = table.shape;
  const ids = checkIndices("embedding", idx, V);
  const src = table.data as Uint16Array;
  const out = empty([...idx.shape, C], "f32");
  const dst = out.data;
  if (table.dtype === "bf16") {
    // bf16 is the top half of an f32: widening is a 16-bit shift.
    const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let i = 0; i < ids.length; i++) {
      const row = ids[i] * C;
      const o = i * C;
      for (let c = 0; c < C; c++) bits[o + c] = src[row + c] << 16;
    }
  } else
    for (let i = 0; i < ids.length; i++) {
      const row = ids[i] * C;
      for (let c = 0; c < C; c++) dst[i * C + c] = f16ToF32(src[row + c]);
    }
  return out;
}

/**
 * A frozen table that is also a packed output layer (tied embeddings): its rows are read from
 * the packed form (widened to f32, as the other paths give them), which stays packed.
 */
function packedEmbedding(table: Tensor, idx: Tensor): T {
  const p = table.packedWeight!;
  const ids = checkIndices("embedding", idx, p.rows);
  const out = empty([...idx.shape, p.cols], "f32");
  p.gatherRows(ids, out.data);
  return out;
}

/** Alias of `embedding`: rows of a 2-D table picked by i32 indices. */
export const gather = embedding;

function toMask(op: string, cond: Tensor): Tensor {
  if (cond.dtype === "u8") return cond;
  if (cond.dtype === "f32" || cond.dtype === "f64" || cond.dtype === "i32") {
    const src = cond.data as ArrayLike<number>;
    const m = empty(cond.shape, "u8");
    const md = m.data;
    for (let i = 0; i < src.length; i++) md[i] = src[i] !== 0 ? 1 : 0;
    return m;
  }
  throw new DTypeError(`${op}: the condition must be u8 (or a number tensor), got ${cond.dtype}`);
}

function expandMask(mask: Tensor, shape: readonly number[]): Uint8Array {
  const src = mask.data as Uint8Array;
  if (mask.size === shape.reduce((a, b) => a * b, 1)) return src;
  const f = empty(mask.shape, "f32");
  const fd = f.data;
  for (let i = 0; i < src.length; i++) fd[i] = src[i];
  const full = empty(shape, "f32");
  backend().broadcastTo(fd, padShape(mask.shape, shape.length), full.data, shape);
  const out = new Uint8Array(full.size);
  const d = full.data;
  for (let i = 0; i < out.length; i++) out[i] = d[i] !== 0 ? 1 : 0;
  return out;
}

function expandFloat(x: T, shape: readonly number[]): T {
  if (x.size === shape.reduce((a, b) => a * b, 1) && x.rank === shape.length) return x;
  const out = empty(shape, x.dtype);
  backend().broadcastTo(floatData(x), padShape(x.shape, shape.length), floatData(out), shape);
  return out;
}

/** cond ? a : b element-wise, with broadcasting of all three. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): T {
  const dtype =
    typeof a !== "number"
      ? asFloat(a, "where").dtype
      : typeof b !== "number"
        ? asFloat(b, "where").dtype
        : "f32";
  const ta = toTensor(a, dtype);
  const tb = toTensor(b, dtype);
  commonFloat("where", ta, tb);
  const m = toMask("where", cond);
  const shape = broadcastShapes("where", broadcastShapes("where", m.shape, ta.shape), tb.shape);
  const mask = expandMask(m, shape);
  const out = empty(shape, dtype);
  backend().where(mask, floatData(expandFloat(ta, shape)), floatData(expandFloat(tb, shape)), floatData(out));
  return maybeRecord(out, "where", [ta, tb], (dy, needs) => {
    const z = zeros(shape, dtype);
    const res: (T | null)[] = [null, null];
    if (needs[0]) {
      const g = empty(shape, dtype);
      backend().where(mask, floatData(dy), floatData(z), floatData(g));
      res[0] = sumToShape(g, ta.shape);
    }
    if (needs[1]) {
      const g = empty(shape, dtype);
      backend().where(mask, floatData(z), floatData(dy), floatData(g));
      res[1] = sumToShape(g, tb.shape);
    }
    return res;
  });
}

/** x with `value` where mask is set (mask broadcasts to x). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): T {
  return where(mask, value, x);
}

/**
 * The inverse of picking rows: out (N, F) is zero except out[idx[i], :] = src[i, :]
 * (repeated indices add up). Backward gathers the rows again.
 */
export function scatterRows(src: Tensor, idx: Tensor, N: number): T {
  const s = asFloat(src, "scatterRows");
  if (s.rank !== 2)
    throw new ShapeError(`scatterRows: src must be 2-D (rows, features), got ${fmtShape(s.shape)}`);
  const F = s.shape[1];
  const ids = checkIndices("scatterRows", idx, N);
  if (ids.length !== s.shape[0])
    throw new ShapeError(`scatterRows: ${ids.length} indices for ${s.shape[0]} rows of ${fmtShape(s.shape)}`);
  const out = zeros([N, F], s.dtype);
  backend().scatterAdd(floatData(s), ids, F, floatData(out));
  return maybeRecord(out, "scatterRows", [s], (dy) => {
    const ds = empty(s.shape, s.dtype);
    backend().gather(floatData(dy), ids, F, floatData(ds));
    return [ds];
  });
}
