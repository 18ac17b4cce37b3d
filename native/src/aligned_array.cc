// alignedArray(kind, n): a zero-filled typed array of n elements whose data starts on a
// 64-byte boundary ("f32" → Float32Array, "u16" → Uint16Array, "u8" → Uint8Array), a view
// at an offset into a slightly larger ArrayBuffer. For buffers the kernels read in place with
// full-width vector loads (prepacked weight panels, NF4 codes and scales): a typed array
// JavaScript allocates lies 16 bytes past a page boundary once it is large, so every 64-byte
// load of it spans two cache lines, which Intel's cores serve at half the rate (the prefill
// products on f32 panels read in place ran at 61 % of the FMA peak, on aligned bf16 copies
// at 70 %, on an Intel Xeon).
#include <napi.h>

#include <cstdint>
#include <string>

#include "register.h"

namespace lorakit {
namespace {

constexpr size_t kAlign = 64;

template <class T>
Napi::Value Aligned(Napi::Env env, size_t n) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, n * sizeof(T) + kAlign);
  const uintptr_t p = reinterpret_cast<uintptr_t>(ab.Data());
  // The allocator's alignment (at least 8 bytes) is a multiple of sizeof(T), so is the offset.
  const size_t offset = (kAlign - (p & (kAlign - 1))) & (kAlign - 1);
  return Napi::TypedArrayOf<T>::New(env, n, ab, offset);
}

Napi::Value AlignedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "alignedArray(kind, n): kind \"f32\", \"u16\" or \"u8\", n an element count")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  const double nd = info[1].As<Napi::Number>().DoubleValue();
  if (!(nd >= 0) || nd != static_cast<double>(static_cast<int64_t>(nd)) || nd > 9007199254740991.0) {
    Napi::RangeError::New(env, "alignedArray: n must be a non-negative integer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t n = static_cast<size_t>(nd);
  if (kind == "f32") return Aligned<float>(env, n);
  if (kind == "u16") return Aligned<uint16_t>(env, n);
  if (kind == "u8") return Aligned<uint8_t>(env, n);
  Napi::TypeError::New(env, "alignedArray: kind must be \"f32\", \"u16\" or \"u8\", got \"" + kind + "\"")
      .ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace

void RegisterAlignedArray(Napi::Env env, Napi::Object exports) {
  exports.Set("alignedArray", Napi::Function::New(env, AlignedArray, "alignedArray"));
}

}  // namespace lorakit
