// The environment of a PyTorch peer process (bench/py/*.py): its best settings on this
// machine (ARCHITECTURE.md) — OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, glibc's mmap/trim
// thresholds raised, OpenMP threads as asked — for its process only. PyTorch from Debian
// needs libopenblas0-pthread (apt); on the generic BLAS it multiplies at ~4 GFLOP/s.

export function torchPeerEnv(threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MALLOC_MMAP_THRESHOLD_: "4294967296",
    MALLOC_TRIM_THRESHOLD_: "4294967296",
    OMP_NUM_THREADS: String(threads),
  };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}
