// alignOffset(buffer): the bytes from the start of an ArrayBuffer's data to the first 64-byte
// boundary in it (0..63). src/kernels/native/aligned.ts allocates a buffer 64 bytes longer
// than it needs and views it from there, for the arrays the kernels read in place with
// full-width vector loads (prepacked weight panels, NF4 codes and scales): a large typed array
// that JavaScript allocates starts 16 bytes past a page boundary, so every 64-byte load of it
// spans two cache lines, which Intel's cores serve at half the rate (the prefill products on
// f32 panels read in place ran at 61 % of the FMA peak, on aligned copies at 70 %, on an
// Intel Xeon). The buffer is allocated in JavaScript, not here, so an allocation that fails
// throws a RangeError as `new ArrayBuffer` does (napi_create_arraybuffer aborts the process).
#include <napi.h>

#include <cstdint>

#include "register.h"

namespace lorakit {
namespace {

constexpr uintptr_t kAlign = 64;

Napi::Value AlignOffset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    Napi::TypeError::New(env, "alignOffset(buffer): buffer must be an ArrayBuffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uintptr_t p = reinterpret_cast<uintptr_t>(info[0].As<Napi::ArrayBuffer>().Data());
  return Napi::Number::New(env, static_cast<double>((kAlign - (p & (kAlign - 1))) & (kAlign - 1)));
}

}  // namespace

void RegisterAlignedArray(Napi::Env env, Napi::Object exports) {
  exports.Set("alignOffset", Napi::Function::New(env, AlignOffset, "alignOffset"));
}

}  // namespace lorakit
