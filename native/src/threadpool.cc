// A small std::thread pool (no libgomp). The caller runs chunk 0 itself; workers spin
// briefly on an atomic ticket before sleeping on a condition variable, so back-to-back
// kernels (a training step issues hundreds) do not pay a futex wake-up each.
#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

// A prebuilt binary (binding.gyp's lorakit_prebuilt=1, made by scripts/prebuild.mjs) must
// load on the libstdc++ of older distributions too (RHEL 9 and Amazon Linux 2023 ship GCC
// 11's, Debian 11 GCC 10's). GCC 12 gave std::condition_variable::wait(unique_lock<mutex>&)
// a new symbol version, GLIBCXX_3.4.30, the only one that lifts this addon past
// GLIBCXX_3.4.22; bind to the GLIBCXX_3.4.11 version that every libstdc++ since GCC 4.4
// exports (GCC 12's included), the function a GCC 11 build calls. Source builds link
// against the machine's own libstdc++ and need nothing of the kind.
#if defined(LORAKIT_PREBUILT) && defined(__ELF__) && defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 12
__asm__(
    ".symver _ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE,"
    "_ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE@GLIBCXX_3.4.11");
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LORAKIT_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define LORAKIT_PAUSE() __asm__ __volatile__("yield")
#else
#define LORAKIT_PAUSE() std::this_thread::yield()
#endif

namespace lorakit {
namespace {

using Clock = std::chrono::steady_clock;
// How long an idle worker (or a waiting caller) spins before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(60);

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    if (n < 1) n = 1;
    if (n > 1024) n = 1024;
    stop();
    quit_.store(false);
    // A worker must start from the generation current now, not from whatever it reads
    // when it first runs (a task published in between would be missed).
    const uint64_t seen = ticket_.load() >> 16;
    for (int i = 0; i < n - 1; i++) workers_.emplace_back([this, i, seen] { loop(i + 1, seen); });
  }

  // Another thread (a second JS worker thread) is inside run(): the caller then runs its
  // work inline instead of mixing two jobs in one pool.
  bool try_begin() { return !busy_.exchange(true, std::memory_order_acquire); }
  void end() { busy_.store(false, std::memory_order_release); }

  // A generation with no tasks: sleeping workers wake, find nothing for them, and spin for
  // kSpin before they sleep again; spinning ones just move on to it.
  void wake() {
    pending_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen_++;
      ticket_.store(gen_ << 16, std::memory_order_release);
    }
    cv_.notify_all();
  }

  // Runs task(t) for t in [0, nt) with t = 0 on the caller.
  void run(int nt, const std::function<void(int)>& task) {
    pending_.store(nt - 1, std::memory_order_relaxed);
    task_.store(&task, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen_++;
      ticket_.store((gen_ << 16) | static_cast<uint64_t>(nt), std::memory_order_release);
    }
    cv_.notify_all();
    task(0);
    if (pending_.load(std::memory_order_acquire) == 0) return;
    const auto until = Clock::now() + kSpin;
    for (int i = 0; pending_.load(std::memory_order_acquire) != 0; i++) {
      LORAKIT_PAUSE();
      if ((i & 63) == 63 && Clock::now() > until) {
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        break;
      }
    }
  }

 private:
  void loop(int id, uint64_t seen) {
    for (;;) {
      uint64_t t = ticket_.load(std::memory_order_acquire);
      if ((t >> 16) == seen) {
        const auto until = Clock::now() + kSpin;
        for (int i = 0;; i++) {
          if (quit_.load(std::memory_order_relaxed)) return;
          t = ticket_.load(std::memory_order_acquire);
          if ((t >> 16) != seen) break;
          LORAKIT_PAUSE();
          if ((i & 63) == 63 && Clock::now() > until) {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] {
              return quit_.load() || (ticket_.load(std::memory_order_acquire) >> 16) != seen;
            });
            if (quit_.load()) return;
            t = ticket_.load(std::memory_order_acquire);
            break;
          }
        }
      }
      seen = t >> 16;
      const int nt = static_cast<int>(t & 0xFFFF);
      if (id < nt) {
        // The caller cannot publish another task before this one is counted down, so
        // task_ still belongs to ticket t here.
        (*task_.load(std::memory_order_acquire))(id);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lk(mu_);
          done_cv_.notify_one();
        }
      }
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<const std::function<void(int)>*> task_{nullptr};
  std::atomic<uint64_t> ticket_{0};  // (generation << 16) | number of tasks
  std::atomic<int> pending_{0};
  std::atomic<bool> quit_{false};
  std::atomic<bool> busy_{false};
  uint64_t gen_ = 0;
};

int default_threads() {
  if (const char* s = std::getenv("LORAKIT_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void wake_pool() {
  Pool& p = pool();
  if (p.size() <= 1 || !p.try_begin()) return;
  p.wake();
  p.end();
}

void set_threads(int n) { pool().resize(n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t chunks = (n + grain - 1) / grain;
  int nt = static_cast<int>(std::min<int64_t>(chunks, num_threads()));
  Pool& p = pool();
  if (nt <= 1 || !p.try_begin()) {
    fn(0, n);
    return;
  }
  p.run(nt, [&](int t) {
    int64_t b = n * t / nt, e = n * (t + 1) / nt;
    if (b < e) fn(b, e);
  });
  p.end();
}

}  // namespace lorakit
