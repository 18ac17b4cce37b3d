#include <napi.h>

#include "register.h"
#include "threadpool.h"

namespace {

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), lorakit::num_threads());
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  lorakit::set_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  lorakit::RegisterGemm(env, exports);
  lorakit::RegisterOps(env, exports);
  lorakit::RegisterNf4(env, exports);
  lorakit::RegisterLoraGrouped(env, exports);
  lorakit::RegisterBandwidth(env, exports);
  lorakit::RegisterPrepack(env, exports);
  lorakit::RegisterAlignedArray(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(lorakit_native, Init)
