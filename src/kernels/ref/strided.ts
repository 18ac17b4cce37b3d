// Walking several arrays that share one iteration shape but have their own strides
// (broadcasting, reduction, permutation). Dims of size 1 are dropped and neighbours that
// are contiguous in every operand are merged, so the innermost loop is as long as it can
// be; the odometer then steps row by row, never element by element.

/** Row-major strides of `shape` as seen from `outShape` (0 where a size-1 dim broadcasts). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  if (shape.length !== outShape.length) {
    throw new RangeError(
      `broadcast: shapes [${shape}] and [${outShape}] must have equal rank (core pads them first)`,
    );
  }
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === outShape[i]) st[i] = s;
    else if (shape[i] === 1) st[i] = 0;
    else throw new RangeError(`broadcast: shape [${shape}] cannot broadcast to [${outShape}]`);
    s *= shape[i];
  }
  return st;
}

/** Row-major contiguous strides of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Row iterator over `shape` for operands with the given strides. After construction,
 * `inner` is the innermost run length, `innerStride[k]` operand k's stride along it,
 * `rows` the number of runs, and `off[k]` operand k's offset of the current run; call
 * `next()` to move to the following run.
 */
export class RowIter {
  readonly inner: number;
  readonly innerStride: number[];
  readonly rows: number;
  readonly off: number[];
  private readonly shape: number[];
  private readonly strides: number[][];
  private readonly idx: number[];

  constructor(shape: readonly number[], strides: readonly (readonly number[])[]) {
    const ops = strides.length;
    const sh: number[] = [];
    const st: number[][] = strides.map(() => []);
    for (let i = 0; i < shape.length; i++) {
      const size = shape[i];
      if (size === 1) continue;
      const last = sh.length - 1;
      let merge = last >= 0;
      for (let k = 0; k < ops && merge; k++) merge = st[k][last] === strides[k][i] * size;
      if (merge) {
        sh[last] *= size;
        for (let k = 0; k < ops; k++) st[k][last] = strides[k][i];
      } else {
        sh.push(size);
        for (let k = 0; k < ops; k++) st[k].push(strides[k][i]);
      }
    }
    if (sh.length === 0) {
      sh.push(1);
      for (let k = 0; k < ops; k++) st[k].push(0);
    }
    const r = sh.length;
    this.inner = sh[r - 1];
    this.innerStride = st.map((s) => s[r - 1]);
    let rows = 1;
    for (let i = 0; i < r - 1; i++) rows *= sh[i];
    this.rows = numel(shape) === 0 ? 0 : rows;
    this.shape = sh.slice(0, r - 1);
    this.strides = st.map((s) => s.slice(0, r - 1));
    this.idx = new Array<number>(r - 1).fill(0);
    this.off = new Array<number>(ops).fill(0);
  }

  next(): void {
    const { shape, strides, idx, off } = this;
    const ops = off.length;
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]++;
      for (let k = 0; k < ops; k++) off[k] += strides[k][d];
      if (idx[d] < shape[d]) return;
      for (let k = 0; k < ops; k++) off[k] -= strides[k][d] * shape[d];
      idx[d] = 0;
    }
  }
}
