// Placeholder registration until the GEMM kernels land (owned by the GEMM work).
#include "register.h"
namespace lorakit {
void RegisterGemm(Napi::Env, Napi::Object) {}
}  // namespace lorakit
