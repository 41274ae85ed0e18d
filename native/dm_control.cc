// Device-mapper ioctls on /dev/mapper/control, each run on a thread the addon
// owns (owned_pool.h) and settled on the JS thread through a per-call
// ThreadSafeFunction. Kernel facts cited from drivers/md/dm-ioctl.c (6.1).
#include "dm_control.h"

#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "owned_pool.h"

namespace mpw {
namespace {

constexpr const char* kControlPath = "/dev/mapper/control";
// Room for the struct plus results; doubled on DM_BUFFER_FULL_FLAG, like libdm.
constexpr size_t kInitialBuffer = 16 * 1024;
// The kernel refuses anything above DM_MAX_TARGETS * DM_MAX_TARGET_PARAMS; a
// reply this large is a runaway, not a table.
constexpr size_t kMaxBuffer = 64 * 1024 * 1024;
// The data area starts right after the 8-byte-aligned struct, which is where the
// kernel puts results (get_result_buffer) and where libdm puts its payload.
constexpr size_t kDataStart = (sizeof(struct dm_ioctl) + 7) & ~size_t{7};

size_t Align8(size_t v) { return (v + 7) & ~size_t{7}; }

// ---------------------------------------------------------------------------
// The control fd.
//
// One fd shared by every call: ctl_ioctl() takes no per-file lock and keeps no
// per-file state except dm_file.global_event_nr, which only DM_DEV_ARM_POLL and
// poll() use, so concurrent ioctls on one fd are as safe as on many. Sharing
// saves an open/close per call and cannot leak. Watchers (below) open their own
// fd precisely because of that per-file event number. Opened lazily so the addon
// loads on hosts without device-mapper; a failed open is retried next call.
int ControlFd(int* err) {
  static std::mutex mu;
  static int fd = -1;
  std::lock_guard<std::mutex> lock(mu);
  if (fd < 0) {
    fd = open(kControlPath, O_RDWR | O_CLOEXEC);
    if (fd < 0) *err = errno;
  }
  return fd;
}

// ---------------------------------------------------------------------------
// One ioctl call: plain data in, a buffer out. No JS values, so it can run on
// any thread.

struct Call {
  const char* syscall = "";  // ioctl name for errors
  unsigned long request = 0;
  std::string name;
  std::string uuid;
  uint32_t flags = 0;
  uint32_t event_nr = 0;
  uint32_t target_count = 0;
  std::vector<char> payload;    // placed in the data area
  bool payload_at_tail = false;  // see TargetMsg
  bool grow_on_full = true;
  size_t size = kInitialBuffer;

  // Results.
  int err = 0;                 // positive errno, 0 on success
  std::vector<uint64_t> buf;   // uint64_t for the struct's 8-byte alignment

  const struct dm_ioctl* Header() const { return reinterpret_cast<const struct dm_ioctl*>(buf.data()); }
  const char* Bytes() const { return reinterpret_cast<const char*>(buf.data()); }
  size_t BufSize() const { return buf.size() * sizeof(uint64_t); }

  void Run() {
    int fd = ControlFd(&err);
    if (fd < 0) return;
    size_t need = Align8(kDataStart + payload.size());
    if (size < need) size = need;
    for (;;) {
      size = Align8(size);
      buf.assign(size / sizeof(uint64_t), 0);
      auto* io = reinterpret_cast<struct dm_ioctl*>(buf.data());
      // check_version() needs only the major to match and our minor not to exceed
      // the kernel's; nothing depends on the caller's minor, so ask for 4.0.0.
      io->version[0] = DM_VERSION_MAJOR;
      io->data_size = static_cast<uint32_t>(size);
      io->data_start = static_cast<uint32_t>(kDataStart);
      io->flags = flags;
      io->event_nr = event_nr;
      io->target_count = target_count;
      std::memcpy(io->name, name.data(), std::min(name.size(), sizeof(io->name) - 1));
      std::memcpy(io->uuid, uuid.data(), std::min(uuid.size(), sizeof(io->uuid) - 1));
      if (!payload.empty()) {
        size_t at = payload_at_tail ? ((size - payload.size()) & ~size_t{7}) : kDataStart;
        io->data_start = static_cast<uint32_t>(at);
        std::memcpy(reinterpret_cast<char*>(buf.data()) + at, payload.data(), payload.size());
      }
      if (ioctl(fd, request, io) < 0) {
        err = errno;
        buf.clear();
        buf.shrink_to_fit();
        return;
      }
      if (!(io->flags & DM_BUFFER_FULL_FLAG) || !grow_on_full) return;
      if (size >= kMaxBuffer) {
        err = ENOBUFS;
        return;
      }
      size *= 2;
    }
  }
};

// ---------------------------------------------------------------------------
// Decoding replies into JS values (JS thread only). Every offset the kernel hands
// back is checked against the bytes it said it wrote.

// huge_encode_dev() in the kernel is new_encode_dev(): minor's low 8 bits, the
// major at bits 8-19, the rest of the minor from bit 20 (include/linux/kdev_t.h).
uint32_t DevMajor(uint64_t dev) { return static_cast<uint32_t>((dev & 0xfff00) >> 8); }
uint32_t DevMinor(uint64_t dev) { return static_cast<uint32_t>((dev & 0xff) | ((dev >> 12) & 0xfff00)); }

// Bytes of valid data the kernel reports (data_size), capped to our buffer.
size_t DataEnd(const Call& c) {
  size_t end = c.Header()->data_size;
  return end > c.BufSize() ? c.BufSize() : end;
}

// A NUL-terminated string at [off, end), or nullptr when it runs past end.
const char* StringAt(const Call& c, size_t off, size_t end, size_t* len) {
  if (off >= end) return nullptr;
  const char* s = c.Bytes() + off;
  const void* nul = std::memchr(s, '\0', end - off);
  if (!nul) return nullptr;
  *len = static_cast<const char*>(nul) - s;
  return s;
}

Napi::Object InfoObject(Napi::Env env, const Call& c) {
  const struct dm_ioctl* io = c.Header();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, io->name, strnlen(io->name, sizeof(io->name))));
  o.Set("uuid", Napi::String::New(env, io->uuid, strnlen(io->uuid, sizeof(io->uuid))));
  o.Set("major", Napi::Number::New(env, DevMajor(io->dev)));
  o.Set("minor", Napi::Number::New(env, DevMinor(io->dev)));
  o.Set("openCount", Napi::Number::New(env, io->open_count));
  o.Set("eventNr", Napi::Number::New(env, io->event_nr));
  o.Set("targetCount", Napi::Number::New(env, io->target_count));
  o.Set("flags", Napi::Number::New(env, io->flags));
  o.Set("readOnly", Napi::Boolean::New(env, io->flags & DM_READONLY_FLAG));
  o.Set("suspended", Napi::Boolean::New(env, io->flags & DM_SUSPEND_FLAG));
  o.Set("activeTable", Napi::Boolean::New(env, io->flags & DM_ACTIVE_PRESENT_FLAG));
  o.Set("inactiveTable", Napi::Boolean::New(env, io->flags & DM_INACTIVE_PRESENT_FLAG));
  o.Set("deferredRemove", Napi::Boolean::New(env, io->flags & DM_DEFERRED_REMOVE));
  o.Set("internalSuspend", Napi::Boolean::New(env, io->flags & DM_INTERNAL_SUSPEND_FLAG));
  Napi::Array v = Napi::Array::New(env, 3);
  for (uint32_t i = 0; i < 3; i++) v.Set(i, Napi::Number::New(env, io->version[i]));
  o.Set("version", v);
  return o;
}

Napi::Value DecodeInfo(Napi::Env env, const Call& c) { return InfoObject(env, c); }

Napi::Value DecodeVersion(Napi::Env env, const Call& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("major", Napi::Number::New(env, c.Header()->version[0]));
  o.Set("minor", Napi::Number::New(env, c.Header()->version[1]));
  o.Set("patch", Napi::Number::New(env, c.Header()->version[2]));
  return o;
}

// struct dm_name_list records (list_devices): dev, next (relative), name, then at
// the next 8-byte boundary event_nr and flags (ioctl >= 4.37), then the uuid when
// flags has DM_NAME_LIST_FLAG_HAS_UUID (>= 4.45, asked for with DM_UUID_FLAG).
Napi::Value DecodeList(Napi::Env env, const Call& c) {
  Napi::Array out = Napi::Array::New(env);
  const size_t end = DataEnd(c);
  const bool has_event_nr = c.Header()->version[1] >= 37;
  size_t off = c.Header()->data_start;
  const size_t name_off = offsetof(struct dm_name_list, name);
  uint32_t n = 0;
  while (off + name_off <= end) {
    const auto* nl = reinterpret_cast<const struct dm_name_list*>(c.Bytes() + off);
    if (nl->dev == 0) break;  // "Flags no data": the list is empty
    size_t len = 0;
    const char* name = StringAt(c, off + name_off, end, &len);
    if (!name) break;
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", Napi::String::New(env, name, len));
    d.Set("major", Napi::Number::New(env, DevMajor(nl->dev)));
    d.Set("minor", Napi::Number::New(env, DevMinor(nl->dev)));
    size_t extra = Align8(off + name_off + len + 1);
    if (has_event_nr && extra + 8 <= end) {
      uint32_t ev[2];
      std::memcpy(ev, c.Bytes() + extra, sizeof(ev));
      d.Set("eventNr", Napi::Number::New(env, ev[0]));
      if (ev[1] & DM_NAME_LIST_FLAG_HAS_UUID) {
        size_t ulen = 0;
        const char* uuid = StringAt(c, extra + 8, end, &ulen);
        if (uuid) d.Set("uuid", Napi::String::New(env, uuid, ulen));
      } else if (ev[1] & DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID) {
        d.Set("uuid", Napi::String::New(env, ""));
      }
    }
    out.Set(n++, d);
    if (nl->next == 0) break;
    off += nl->next;
  }
  return out;
}

// struct dm_target_versions records (list_versions): next is relative.
Napi::Value DecodeVersions(Napi::Env env, const Call& c) {
  Napi::Array out = Napi::Array::New(env);
  const size_t end = DataEnd(c);
  size_t off = c.Header()->data_start;
  const size_t name_off = offsetof(struct dm_target_versions, name);
  uint32_t n = 0;
  while (off + name_off <= end) {
    const auto* tv = reinterpret_cast<const struct dm_target_versions*>(c.Bytes() + off);
    size_t len = 0;
    const char* name = StringAt(c, off + name_off, end, &len);
    if (!name) break;
    Napi::Object t = Napi::Object::New(env);
    t.Set("name", Napi::String::New(env, name, len));
    t.Set("major", Napi::Number::New(env, tv->version[0]));
    t.Set("minor", Napi::Number::New(env, tv->version[1]));
    t.Set("patch", Napi::Number::New(env, tv->version[2]));
    out.Set(n++, t);
    if (tv->next == 0) break;
    off += tv->next;
  }
  return out;
}

// retrieve_status(): target_count specs; each spec's `next` is an offset from
// the start of the data area, and its string follows the spec.
Napi::Value DecodeTargets(Napi::Env env, const Call& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("info", InfoObject(env, c));
  Napi::Array out = Napi::Array::New(env);
  const size_t end = DataEnd(c);
  const size_t base = c.Header()->data_start;
  size_t off = base;
  for (uint32_t i = 0; i < c.Header()->target_count; i++) {
    if (off + sizeof(struct dm_target_spec) > end) break;
    const auto* spec = reinterpret_cast<const struct dm_target_spec*>(c.Bytes() + off);
    size_t len = 0;
    const char* params = StringAt(c, off + sizeof(struct dm_target_spec), end, &len);
    if (!params) break;
    Napi::Object t = Napi::Object::New(env);
    t.Set("start", Napi::Number::New(env, static_cast<double>(spec->sector_start)));
    t.Set("length", Napi::Number::New(env, static_cast<double>(spec->length)));
    t.Set("type", Napi::String::New(env, spec->target_type, strnlen(spec->target_type, sizeof(spec->target_type))));
    t.Set("params", Napi::String::New(env, params, len));
    out.Set(i, t);
    if (base + spec->next <= off) break;
    off = base + spec->next;
  }
  o.Set("targets", out);
  return o;
}

// retrieve_deps(): struct dm_target_deps { count; padding; dev[] }.
Napi::Value DecodeDeps(Napi::Env env, const Call& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("info", InfoObject(env, c));
  Napi::Array out = Napi::Array::New(env);
  const size_t end = DataEnd(c);
  const size_t off = c.Header()->data_start;
  if (c.Header()->flags & DM_ACTIVE_PRESENT_FLAG && off + sizeof(struct dm_target_deps) <= end) {
    const auto* deps = reinterpret_cast<const struct dm_target_deps*>(c.Bytes() + off);
    for (uint32_t i = 0; i < deps->count; i++) {
      if (off + sizeof(struct dm_target_deps) + (i + 1) * sizeof(uint64_t) > end) break;
      Napi::Object d = Napi::Object::New(env);
      d.Set("major", Napi::Number::New(env, DevMajor(deps->dev[i])));
      d.Set("minor", Napi::Number::New(env, DevMinor(deps->dev[i])));
      out.Set(i, d);
    }
  }
  o.Set("deps", out);
  return o;
}

// target_message(): with DM_DATA_OUT_FLAG the reply string is at data_start.
Napi::Value DecodeMessage(Napi::Env env, const Call& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("info", InfoObject(env, c));
  if (c.Header()->flags & DM_DATA_OUT_FLAG) {
    size_t len = 0;
    const char* reply = StringAt(c, c.Header()->data_start, DataEnd(c), &len);
    if (reply) o.Set("reply", Napi::String::New(env, reply, len));
  }
  return o;
}

// ---------------------------------------------------------------------------
// Running a call off the JS thread and settling its promise.

using Decoder = Napi::Value (*)(Napi::Env, const Call&);

struct Job;
void SettleJob(Napi::Env env, Napi::Function, std::nullptr_t*, Job* job);
using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Job, SettleJob>;

struct Job {
  Job(Napi::Env env, Decoder d) : deferred(Napi::Promise::Deferred::New(env)), decode(d) {}
  Call call;
  Napi::Promise::Deferred deferred;
  Decoder decode;
  Tsfn tsfn;
  std::shared_ptr<bool> settled;  // set on the JS thread once settled (DEV_WAIT's cancel)
};

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

// On the JS thread. `env` is null when the environment is going away; the job is
// freed either way, so no path leaks it.
void SettleJob(Napi::Env env, Napi::Function, std::nullptr_t*, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (job->settled) *job->settled = true;
  if (env == nullptr) return;
  Napi::HandleScope scope(env);
  if (job->call.err != 0) {
    job->deferred.Reject(ErrnoError(env, job->call.err, job->call.syscall).Value());
    return;
  }
  try {
    job->deferred.Resolve(job->decode(env, job->call));
  } catch (const Napi::Error& e) {
    job->deferred.Reject(e.Value());
  }
}

// Starts `job` on an owned thread; returns its promise. `handle` receives the
// job's TSFN so a caller (DEV_WAIT) can unref it.
Napi::Promise Start(Napi::Env env, std::unique_ptr<Job> job, Tsfn* handle = nullptr) {
  Napi::Promise promise = job->deferred.Promise();
  job->tsfn = Tsfn::New(env, job->call.syscall, 0, 1);
  if (handle) *handle = job->tsfn;
  Job* raw = job.get();
  bool ok = OwnedPool::Instance().Submit([raw] {
    raw->call.Run();
    Tsfn tsfn = raw->tsfn;
    // Only fails when the environment is already closing; then nobody waits.
    if (tsfn.BlockingCall(raw) != napi_ok) delete raw;
    tsfn.Release();
  });
  if (!ok) {
    if (job->settled) *job->settled = true;
    job->tsfn.Release();
    job->deferred.Reject(ErrnoError(env, EAGAIN, job->call.syscall).Value());
    return promise;
  }
  job.release();  // the pool thread and then SettleJob own it now
  return promise;
}

// ---------------------------------------------------------------------------
// Argument helpers. TypeScript validates for the user; these only keep a wrong
// call from reaching the kernel with a truncated name.

std::string StringArg(const Napi::Value& v, const char* what, size_t max_len) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.size() > max_len || s.find('\0') != std::string::npos)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " is too long or has a NUL");
  return s;
}

// A device address: { name } or { uuid } (the kernel rejects both at once,
// validate_params()).
void DeviceArg(const Napi::Value& v, Call* c) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "device must be { name } or { uuid }");
  Napi::Object o = v.As<Napi::Object>();
  bool has_name = o.Has("name") && !o.Get("name").IsUndefined();
  bool has_uuid = o.Has("uuid") && !o.Get("uuid").IsUndefined();
  if (has_name == has_uuid) throw Napi::TypeError::New(v.Env(), "device must have exactly one of name, uuid");
  if (has_name) c->name = StringArg(o.Get("name"), "name", DM_NAME_LEN - 1);
  if (has_uuid) c->uuid = StringArg(o.Get("uuid"), "uuid", DM_UUID_LEN - 1);
  if (c->name.empty() && c->uuid.empty()) throw Napi::TypeError::New(v.Env(), "device name/uuid is empty");
}

bool BoolOpt(const Napi::Value& opts, const char* key) {
  if (!opts.IsObject()) return false;
  Napi::Value v = opts.As<Napi::Object>().Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

double NumberArg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be a non-negative safe integer");
  return d;
}

std::unique_ptr<Job> NewJob(Napi::Env env, const char* syscall, unsigned long request, Decoder d) {
  auto job = std::make_unique<Job>(env, d);
  job->call.syscall = syscall;
  job->call.request = request;
  return job;
}

// ---------------------------------------------------------------------------
// The exported functions, one per ioctl.

Napi::Value Version(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_VERSION", DM_VERSION, DecodeVersion);
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

Napi::Value ListDevices(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_LIST_DEVICES", DM_LIST_DEVICES, DecodeList);
  // Name and uuid stay empty: list_devices() treats them as prefix filters.
  job->call.flags = DM_UUID_FLAG;
  return Start(info.Env(), std::move(job));
}

Napi::Value ListVersions(const Napi::CallbackInfo& info) {
  return Start(info.Env(), NewJob(info.Env(), "DM_LIST_VERSIONS", DM_LIST_VERSIONS, DecodeVersions));
}

// dmDevCreate(name, uuid): the uuid may be '' (none).
Napi::Value DevCreate(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_DEV_CREATE", DM_DEV_CREATE, DecodeInfo);
  job->call.name = StringArg(info[0], "name", DM_NAME_LEN - 1);
  job->call.uuid = StringArg(info[1], "uuid", DM_UUID_LEN - 1);
  if (job->call.name.empty()) throw Napi::TypeError::New(info.Env(), "name is empty");
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

// dmTableLoad(device, targets[{start,length,type,params}], readOnly). Specs are
// laid out as populate_table() walks them: `next` relative to the current spec,
// each params string NUL-terminated and padded to 8 bytes.
Napi::Value TableLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = NewJob(env, "DM_TABLE_LOAD", DM_TABLE_LOAD, DecodeInfo);
  DeviceArg(info[0], &job->call);
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "targets must be an array");
  Napi::Array targets = info[1].As<Napi::Array>();
  std::vector<char>& p = job->call.payload;
  for (uint32_t i = 0; i < targets.Length(); i++) {
    Napi::Value tv = targets.Get(i);
    if (!tv.IsObject()) throw Napi::TypeError::New(env, "target must be an object");
    Napi::Object t = tv.As<Napi::Object>();
    std::string type = StringArg(t.Get("type"), "target type", DM_MAX_TYPE_NAME - 1);
    std::string params = StringArg(t.Get("params"), "target params", SIZE_MAX / 4);
    struct dm_target_spec spec;
    std::memset(&spec, 0, sizeof(spec));
    spec.sector_start = static_cast<uint64_t>(NumberArg(t.Get("start"), "start"));
    spec.length = static_cast<uint64_t>(NumberArg(t.Get("length"), "length"));
    std::memcpy(spec.target_type, type.data(), type.size());
    size_t rec = Align8(sizeof(spec) + params.size() + 1);
    spec.next = static_cast<uint32_t>(rec);
    size_t at = p.size();
    p.resize(at + rec, '\0');
    std::memcpy(p.data() + at, &spec, sizeof(spec));
    std::memcpy(p.data() + at + sizeof(spec), params.data(), params.size());
  }
  job->call.target_count = targets.Length();
  if (BoolOpt(info[2], "readOnly")) job->call.flags |= DM_READONLY_FLAG;
  job->call.size = 0;  // exactly the payload; the reply is only the header
  job->call.grow_on_full = false;
  return Start(env, std::move(job));
}

Napi::Value TableClear(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_TABLE_CLEAR", DM_TABLE_CLEAR, DecodeInfo);
  DeviceArg(info[0], &job->call);
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

// dmDevSuspend(device, {noflush, nolockfs}): do_suspend() in dm-ioctl.c.
Napi::Value DevSuspend(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_DEV_SUSPEND", DM_DEV_SUSPEND, DecodeInfo);
  DeviceArg(info[0], &job->call);
  job->call.flags = DM_SUSPEND_FLAG;
  if (BoolOpt(info[1], "noflush")) job->call.flags |= DM_NOFLUSH_FLAG;
  if (BoolOpt(info[1], "nolockfs")) job->call.flags |= DM_SKIP_LOCKFS_FLAG;
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

// Resume is DM_DEV_SUSPEND without DM_SUSPEND_FLAG (dev_suspend() -> do_resume()).
Napi::Value DevResume(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_DEV_SUSPEND", DM_DEV_SUSPEND, DecodeInfo);
  DeviceArg(info[0], &job->call);
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

Napi::Value DevRemove(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_DEV_REMOVE", DM_DEV_REMOVE, DecodeInfo);
  DeviceArg(info[0], &job->call);
  if (BoolOpt(info[1], "deferred")) job->call.flags |= DM_DEFERRED_REMOVE;
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

Napi::Value DevStatus(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_DEV_STATUS", DM_DEV_STATUS, DecodeInfo);
  DeviceArg(info[0], &job->call);
  job->call.size = kDataStart;
  return Start(info.Env(), std::move(job));
}

// dmTableStatus(device, {table, noflush, inactive}).
Napi::Value TableStatus(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_TABLE_STATUS", DM_TABLE_STATUS, DecodeTargets);
  DeviceArg(info[0], &job->call);
  if (BoolOpt(info[1], "table")) job->call.flags |= DM_STATUS_TABLE_FLAG;
  if (BoolOpt(info[1], "noflush")) job->call.flags |= DM_NOFLUSH_FLAG;
  if (BoolOpt(info[1], "inactive")) job->call.flags |= DM_QUERY_INACTIVE_TABLE_FLAG;
  return Start(info.Env(), std::move(job));
}

Napi::Value TableDeps(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_TABLE_DEPS", DM_TABLE_DEPS, DecodeDeps);
  DeviceArg(info[0], &job->call);
  if (BoolOpt(info[1], "inactive")) job->call.flags |= DM_QUERY_INACTIVE_TABLE_FLAG;
  return Start(info.Env(), std::move(job));
}

// dmTargetMsg(device, sector, message). target_message() computes the message
// address from our data_start before get_result_buffer() resets data_start to
// the struct's end and writes the reply there; so the message goes at the tail
// of the buffer, where a reply cannot overwrite it while the target still reads
// it. On DM_BUFFER_FULL_FLAG the message is sent again with more room, as libdm
// does: targets that reply (e.g. @stats_list) answer queries.
Napi::Value TargetMsg(const Napi::CallbackInfo& info) {
  auto job = NewJob(info.Env(), "DM_TARGET_MSG", DM_TARGET_MSG, DecodeMessage);
  DeviceArg(info[0], &job->call);
  uint64_t sector = static_cast<uint64_t>(NumberArg(info[1], "sector"));
  std::string msg = StringArg(info[2], "message", 1 << 20);
  std::vector<char>& p = job->call.payload;
  p.resize(Align8(sizeof(struct dm_target_msg) + msg.size() + 1), '\0');
  std::memcpy(p.data(), &sector, sizeof(sector));
  std::memcpy(p.data() + offsetof(struct dm_target_msg, message), msg.data(), msg.size());
  job->call.payload_at_tail = true;
  job->call.size = kInitialBuffer + p.size();
  return Start(info.Env(), std::move(job));
}

// dmDevWait(device, eventNr) -> { promise, cancel() }. dev_wait() sleeps until
// the device's event_nr differs from ours, then returns the header (we do not ask
// for its status: a retry for room would wait again). The ioctl cannot be
// interrupted without a signal, and signals are Node's, so cancel() only unrefs
// the call so the process may exit; the thread and its Job live on until the
// next event on that device or its removal (__hash_remove() raises an event),
// and the ignored promise then settles.
Napi::Value DevWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = NewJob(env, "DM_DEV_WAIT", DM_DEV_WAIT, DecodeInfo);
  DeviceArg(info[0], &job->call);
  job->call.event_nr = static_cast<uint32_t>(NumberArg(info[1], "eventNr"));
  job->call.size = kDataStart;
  job->call.grow_on_full = false;
  auto settled = std::make_shared<bool>(false);
  job->settled = settled;
  Tsfn tsfn;
  Napi::Promise promise = Start(env, std::move(job), &tsfn);
  Napi::Object out = Napi::Object::New(env);
  out.Set("promise", promise);
  // Until SettleJob runs, the TSFN is alive (its last call is still queued or
  // not yet made), so Unref is safe exactly while `settled` is false.
  auto cancelled = std::make_shared<bool>(false);
  out.Set("cancel", Napi::Function::New(env, [tsfn, settled, cancelled](const Napi::CallbackInfo& ci) mutable {
    if (*settled || *cancelled) return;
    *cancelled = true;
    tsfn.Unref(ci.Env());
  }, "cancel"));
  return out;
}

// ---------------------------------------------------------------------------
// Event watching: its own control fd, armed with DM_DEV_ARM_POLL, polled by a
// uv_poll_t on the JS thread's loop. dm_poll() reports POLLIN while the global
// event counter differs from the one armed on this file, so each wake-up re-arms
// at once (a cheap ioctl that only reads an atomic: dev_arm_poll()) before telling
// JS, which then lists devices and compares event_nr, as multipathd's dmevents.c.

class DmEventWatcher : public Napi::ObjectWrap<DmEventWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DmEventWatcher", {
      InstanceMethod<&DmEventWatcher::Arm>("arm"),
      InstanceMethod<&DmEventWatcher::Close>("close"),
    });
  }

  explicit DmEventWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DmEventWatcher>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "DmEventWatcher(onEvent)");
    int fd = open(kControlPath, O_RDWR | O_CLOEXEC);
    if (fd < 0) throw ErrnoError(env, errno, "open");
    int err = ArmFd(fd);
    if (err != 0) {
      close(fd);
      throw ErrnoError(env, err, "DM_DEV_ARM_POLL");
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      close(fd);
      throw Napi::Error::New(env, "no uv loop");
    }
    poll_ = new Poll();
    poll_->fd = fd;
    poll_->owner = this;
    int r = uv_poll_init(loop, &poll_->handle, fd);
    if (r != 0) {
      delete poll_;
      poll_ = nullptr;
      close(fd);
      throw Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(r));
    }
    r = uv_poll_start(&poll_->handle, UV_READABLE, OnReadable);
    if (r != 0) {
      Shutdown();  // the handle is initialised: uv_close frees it and the fd
      throw Napi::Error::New(env, std::string("uv_poll_start: ") + uv_strerror(r));
    }
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(env, "mpw:DmEventWatcher");
  }

  ~DmEventWatcher() override { Shutdown(); }

 private:
  struct Poll {
    uv_poll_t handle;
    int fd = -1;
    DmEventWatcher* owner = nullptr;
  };

  static int ArmFd(int fd) {
    alignas(8) struct dm_ioctl io;
    std::memset(&io, 0, sizeof(io));
    io.version[0] = DM_VERSION_MAJOR;
    io.data_size = sizeof(io);
    io.data_start = sizeof(io);
    return ioctl(fd, DM_DEV_ARM_POLL, &io) < 0 ? errno : 0;
  }

  static void OnReadable(uv_poll_t* handle, int status, int) {
    Poll* p = reinterpret_cast<Poll*>(handle);
    DmEventWatcher* self = p->owner;
    if (!self) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    int err = status < 0 ? -status : ArmFd(p->fd);
    // MakeCallback, not Call: from a raw libuv callback only MakeCallback runs
    // the microtask queue afterwards, so the promise reactions the callback
    // starts run now, not at some later unrelated callback. A throw from the
    // callback must not escape into libuv.
    try {
      napi_value arg = err != 0 ? ErrnoError(env, err, status < 0 ? "poll" : "DM_DEV_ARM_POLL").Value() : env.Null();
      self->callback_.MakeCallback(env.Global(), {arg}, *self->async_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  // Stops polling and frees the handle and fd once libuv is done with them.
  void Shutdown() {
    if (!poll_) return;
    poll_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_->handle), [](uv_handle_t* h) {
      Poll* p = reinterpret_cast<Poll*>(h);
      close(p->fd);
      delete p;
    });
    poll_ = nullptr;
    callback_.Reset();
    async_.reset();
  }

  Napi::Value Arm(const Napi::CallbackInfo& info) {
    if (!poll_) throw Napi::Error::New(info.Env(), "watcher is closed");
    int err = ArmFd(poll_->fd);
    if (err != 0) throw ErrnoError(info.Env(), err, "DM_DEV_ARM_POLL");
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Poll* poll_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

// mknodBlock(path, major, minor, mode): for devicePath() when devtmpfs gave no
// /dev/dm-N, as libdm's _add_dev_node() does without udev. Synchronous: a node
// in /dev is a metadata operation that does not wait on any device.
Napi::Value MknodBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info[0], "path", 4096);
  auto major = static_cast<unsigned>(NumberArg(info[1], "major"));
  auto minor = static_cast<unsigned>(NumberArg(info[2], "minor"));
  auto mode = static_cast<mode_t>(NumberArg(info[3], "mode"));
  if (mknod(path.c_str(), S_IFBLK | (mode & 07777), makedev(major, minor)) < 0) throw ErrnoError(env, errno, "mknod");
  return env.Undefined();
}

}  // namespace

void InitDmControl(Napi::Env env, Napi::Object exports) {
  exports.Set("dmVersion", Napi::Function::New(env, Version, "dmVersion"));
  exports.Set("dmListDevices", Napi::Function::New(env, ListDevices, "dmListDevices"));
  exports.Set("dmListVersions", Napi::Function::New(env, ListVersions, "dmListVersions"));
  exports.Set("dmDevCreate", Napi::Function::New(env, DevCreate, "dmDevCreate"));
  exports.Set("dmTableLoad", Napi::Function::New(env, TableLoad, "dmTableLoad"));
  exports.Set("dmTableClear", Napi::Function::New(env, TableClear, "dmTableClear"));
  exports.Set("dmDevSuspend", Napi::Function::New(env, DevSuspend, "dmDevSuspend"));
  exports.Set("dmDevResume", Napi::Function::New(env, DevResume, "dmDevResume"));
  exports.Set("dmDevRemove", Napi::Function::New(env, DevRemove, "dmDevRemove"));
  exports.Set("dmDevStatus", Napi::Function::New(env, DevStatus, "dmDevStatus"));
  exports.Set("dmTableStatus", Napi::Function::New(env, TableStatus, "dmTableStatus"));
  exports.Set("dmTableDeps", Napi::Function::New(env, TableDeps, "dmTableDeps"));
  exports.Set("dmTargetMsg", Napi::Function::New(env, TargetMsg, "dmTargetMsg"));
  exports.Set("dmDevWait", Napi::Function::New(env, DevWait, "dmDevWait"));
  exports.Set("DmEventWatcher", DmEventWatcher::Define(env));
  exports.Set("mknodBlock", Napi::Function::New(env, MknodBlock, "mknodBlock"));
}

}  // namespace mpw
