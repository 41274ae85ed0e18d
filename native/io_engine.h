// The O_DIRECT asynchronous I/O engine (class IoEngine, allocAligned,
// ioUringCompiledIn). Registered from addon.cc.
#pragma once

#include <napi.h>

void InitIoEngine(Napi::Env env, Napi::Object exports);
