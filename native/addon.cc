// Module entry point. Each native facility registers its exports here; the
// layer stays thin: ioctls, I/O, stamps. Every decision is made in TypeScript.
#include <napi.h>

#include <linux/dm-ioctl.h>
#include <malloc.h>

#include "dm_control.h"
#include "io_engine.h"
#include "unix_socket.h"

namespace {

// The dm ioctl interface version the addon was compiled against
// (include/uapi/linux/dm-ioctl.h: DM_VERSION_MAJOR/MINOR/PATCHLEVEL).
Napi::Value CompiledDmVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object v = Napi::Object::New(env);
  v.Set("major", Napi::Number::New(env, DM_VERSION_MAJOR));
  v.Set("minor", Napi::Number::New(env, DM_VERSION_MINOR));
  v.Set("patch", Napi::Number::New(env, DM_VERSION_PATCHLEVEL));
  return v;
}

// Bytes the C allocator has handed out and not had back (glibc's mallinfo2:
// arena chunks in use plus mmapped chunks). Unlike RSS it does not count what
// the allocator keeps cached after a free, so a leak test can read it exactly.
Napi::Value MallocInUse(const Napi::CallbackInfo& info) {
  struct mallinfo2 m = mallinfo2();
  return Napi::Number::New(info.Env(), static_cast<double>(m.uordblks + m.hblkhd));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("compiledDmVersion", Napi::Function::New(env, CompiledDmVersion, "compiledDmVersion"));
  exports.Set("mallocInUse", Napi::Function::New(env, MallocInUse, "mallocInUse"));
  mpw::InitDmControl(env, exports);
  InitIoEngine(env, exports);
  mpw::InitUnixSocket(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(mpath_watchdog, Init)
