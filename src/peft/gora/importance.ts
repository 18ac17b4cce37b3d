// GoRA's per-layer importance from the accumulated gradient G of a frozen weight W
// (official code: hhnqqq/MyTransformers common/lora_modules/gora.py, compute_importance).

/**
 * - "union_frobenius_norm": ‖W⊙G‖_F — the reference code's default (--gora-importance-type).
 * - "union_mean": mean |W⊙G| — what the paper's scripts pass.
 * - "grad_frobenius_norm": ‖G‖_F; "grad_mean": mean |G|.
 */
export type GoraImportanceType = "union_frobenius_norm" | "union_mean" | "grad_frobenius_norm" | "grad_mean";

export const GORA_IMPORTANCE_TYPES: readonly GoraImportanceType[] = [
  "union_frobenius_norm",
  "union_mean",
  "grad_frobenius_norm",
  "grad_mean",
];

/** Importance of one layer; W and G are (out, in) row-major, G the mean gradient over the batches. */
export function goraImportance(
  W: ArrayLike<number>,
  G: ArrayLike<number>,
  type: GoraImportanceType = "union_frobenius_norm",
): number {
  if (W.length !== G.length)
    throw new Error(`goraImportance: W has ${W.length} elements but G has ${G.length}`);
  const n = W.length;
  let sq = 0;
  let abs = 0;
  const union = type === "union_frobenius_norm" || type === "union_mean";
  for (let i = 0; i < n; i++) {
    const v = union ? W[i] * G[i] : G[i];
    sq += v * v;
    abs += Math.abs(v);
  }
  switch (type) {
    case "union_frobenius_norm":
    case "grad_frobenius_norm":
      return Math.sqrt(sq);
    case "union_mean":
    case "grad_mean":
      return n === 0 ? 0 : abs / n;
    default:
      throw new Error(`goraImportance: unknown type ${JSON.stringify(type satisfies never)}`);
  }
}
