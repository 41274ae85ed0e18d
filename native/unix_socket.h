#pragma once
#include <napi.h>

namespace mpw {
// connectUnixAbstract(name): a connected, non-blocking SOCK_STREAM fd.
void InitUnixSocket(Napi::Env env, Napi::Object exports);
}  // namespace mpw
