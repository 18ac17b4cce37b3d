// Argument checks shared by the addon functions of the NF4 kernels: a typed array of one kind,
// a non-negative integer, and the JavaScript error (TypeError, or RangeError for a value out
// of range) that a failed check throws. Each returns false after throwing.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace lorakit {

inline bool fail(Napi::Env env, const std::string& msg, bool range = false) {
  if (range)
    Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
  else
    Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}

template <typename TA, typename Len>
bool get_arr(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, const char* fn, const char* name,
             TA*& ptr, Len& len) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != want)
    return fail(info.Env(), std::string(fn) + ": " + name + " has the wrong array type");
  auto t = info[i].As<Napi::TypedArray>();
  ptr = reinterpret_cast<TA*>(static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset());
  len = static_cast<Len>(t.ElementLength());
  return true;
}

inline bool get_int(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t& out) {
  if (!info[i].IsNumber()) return fail(info.Env(), std::string(fn) + ": " + name + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != static_cast<double>(static_cast<int64_t>(v)))
    return fail(info.Env(), std::string(fn) + ": " + name + " must be a non-negative integer", true);
  out = static_cast<int64_t>(v);
  return true;
}

}  // namespace lorakit
