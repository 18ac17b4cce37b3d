// Prepacked NF4 weights (nf4_packed.cc): registered by RegisterNf4 (nf4_gemm.cc).
#pragma once
#include <napi.h>

namespace lorakit {

void RegisterNf4Packed(Napi::Env env, Napi::Object exports);

}  // namespace lorakit
