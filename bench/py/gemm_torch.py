"""PyTorch peer for bench/gemm.ts: the same products, timed inside this process.

Started once by bench/gemm.ts with `--torch` (needs Debian's python3-torch and
libopenblas0-pthread); reads one request a line, `m n k transA transB reps`, multiplies fresh
random f32 operands with torch.mm into a preallocated output (the transposes are views, as
PyTorch hands them to the BLAS), and answers one JSON line: the wall seconds of each repetition
and the CPU seconds of this process over them (all threads). The first line it prints names the
PyTorch version and its thread count.
"""
import json
import sys
import time

import torch

threads = int(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)

operands = None
for line in sys.stdin:
    m, n, k, trans_a, trans_b, reps = (int(x) for x in line.split())
    key = (m, n, k, trans_a, trans_b)
    if operands is None or operands[0] != key:
        operands = None  # free the previous shape's operands first
        a = torch.rand(k, m) * 2 - 1 if trans_a else torch.rand(m, k) * 2 - 1
        b = torch.rand(n, k) * 2 - 1 if trans_b else torch.rand(k, n) * 2 - 1
        operands = (key, a.t() if trans_a else a, b.t() if trans_b else b, torch.empty(m, n))
    _, a, b, c = operands
    torch.mm(a, b, out=c)  # warm: the BLAS's buffers and threads
    seconds = []
    cpu0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        seconds.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}), flush=True)
