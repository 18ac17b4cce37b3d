// Each kernel family registers its exports here; addon.cc calls them all.
#pragma once
#include <napi.h>

namespace lorakit {
void RegisterGemm(Napi::Env env, Napi::Object exports);  // gemm.cc
void RegisterOps(Napi::Env env, Napi::Object exports);   // ops_*.cc (ops_register.cc)
void RegisterNf4(Napi::Env env, Napi::Object exports);   // nf4_gemm.cc
void RegisterLoraGrouped(Napi::Env env, Napi::Object exports);  // lora_grouped.cc
void RegisterBandwidth(Napi::Env env, Napi::Object exports);    // bandwidth.cc
void RegisterPrepack(Napi::Env env, Napi::Object exports);      // prepack.cc
void RegisterAlignedArray(Napi::Env env, Napi::Object exports);  // aligned_array.cc
}  // namespace lorakit
