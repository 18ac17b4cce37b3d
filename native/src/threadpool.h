// A small std::thread pool (no libgomp). Threads = LORAKIT_THREADS or the hardware
// concurrency; set_threads() changes it at run time.
#pragma once
#include <cstdint>
#include <functional>

namespace lorakit {

int num_threads();
void set_threads(int n);

// Calls fn(begin, end) over [0, n) split into at most num_threads() contiguous chunks of
// at least `grain` items; runs inline when one chunk suffices. Blocks until all are done.
// Not re-entrant: fn must not call parallel_for itself.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Wakes workers that went to sleep, with no work: they spin again for a while. A kernel that
// spends tens of µs on the calling thread before its parallel_for (reading its arguments)
// calls this first, so the wake-up overlaps that work instead of following it.
void wake_pool();

}  // namespace lorakit
