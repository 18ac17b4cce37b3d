// The grouped LoRA product of the native addon (native/src/lora_grouped.cc), as the native
// backend's loraGrouped calls it.

export interface LoraGroupedAddon {
  /**
   * For each group g: h = f32(scales[g])·x[rows]·A_gᵀ, y[rows] += h·B_gᵀ, where the rows of
   * group g are rows[starts[g] .. starts[g+1]); each product is one call of the addon's GEMM.
   */
  loraGroupedNT(
    x: Float32Array,
    y: Float32Array,
    inF: number,
    outF: number,
    rows: Int32Array,
    starts: Int32Array,
    As: Float32Array[],
    Bs: Float32Array[],
    ranks: Int32Array,
    scales: Float64Array,
  ): void;
}
