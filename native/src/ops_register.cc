// Placeholder registration until the element-wise/fused kernels land (owned by the ops work).
#include "register.h"
namespace lorakit {
void RegisterOps(Napi::Env, Napi::Object) {}
}  // namespace lorakit
