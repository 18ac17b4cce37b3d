// Registers every element-wise / reduction / fused kernel (ops_*.cc) on the addon.
#include "ops_common.h"
#include "register.h"

namespace lorakit {

namespace {
Napi::Value OpsIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), ops::isa_name()); }

// setOpsIsa("avx512" | "avx2" | "portable" | anything else = best available): forces the
// kernel table (never above what the CPU has), for tests and benchmarks; returns the
// level now in use. "emu16" picks the test-only 16-lane emulation (any CPU runs it).
Napi::Value SetOpsIsa(const Napi::CallbackInfo& info) {
  std::string s = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  return Napi::String::New(info.Env(), ops::set_isa(s.c_str()));
}
}  // namespace

void RegisterOps(Napi::Env env, Napi::Object exports) {
  ops::RegisterElementwise(env, exports);
  ops::RegisterReduce(env, exports);
  ops::RegisterLayout(env, exports);
  ops::RegisterNN(env, exports);
  ops::RegisterAttention(env, exports);
  ops::RegisterOptim(env, exports);
  exports.Set("opsIsa", Napi::Function::New(env, OpsIsa, "opsIsa"));
  exports.Set("setOpsIsa", Napi::Function::New(env, SetOpsIsa, "setOpsIsa"));
}

}  // namespace lorakit
