// Device-mapper control: one promise-returning function per dm ioctl on
// /dev/mapper/control, plus an event watcher (DM_DEV_ARM_POLL + poll) hooked
// into libuv. Thin by design: it fills and reads struct dm_ioctl and nothing more.
#ifndef MPW_NATIVE_DM_CONTROL_H_
#define MPW_NATIVE_DM_CONTROL_H_

#include <napi.h>

namespace mpw {

// Adds the dm* functions and the DmEventWatcher class to `exports`.
void InitDmControl(Napi::Env env, Napi::Object exports);

}  // namespace mpw

#endif  // MPW_NATIVE_DM_CONTROL_H_
