// IoEngine: the JS face of one O_DIRECT file descriptor. It owns slots (one per
// I/O in flight, each pinning its buffer with a napi_ref until the kernel is
// done), batches submissions, and hands completions to JS in batches through
// one thread-safe function call writing into two shared typed arrays.
// No policy here: validation of offsets and lengths, queueing beyond the
// depth, errors and timeouts are the TypeScript side's job.
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../io_engine.h"
#include "backend.h"

namespace mpw::io {
namespace {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + " " + path + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set("path", Napi::String::New(env, path));
  return e;
}

struct Geometry {
  uint32_t block = 512;      // offset and length alignment
  uint32_t mem_align = 512;  // buffer address alignment
  uint64_t size = 0;
  bool is_block = false;
};

// Returns 0 or a positive errno with *syscall naming the call that failed.
int ReadGeometry(int fd, Geometry* g, const char** syscall) {
  struct stat st;
  if (fstat(fd, &st) != 0) return *syscall = "fstat", errno;
  if (S_ISBLK(st.st_mode)) {
    int lbs = 0;
    if (ioctl(fd, BLKSSZGET, &lbs) != 0) return *syscall = "BLKSSZGET", errno;
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) return *syscall = "BLKGETSIZE64", errno;
    g->block = g->mem_align = static_cast<uint32_t>(lbs);
    g->size = bytes;
    g->is_block = true;
    return 0;
  }
  if (!S_ISREG(st.st_mode)) return *syscall = "fstat", ENOTBLK;
  g->size = static_cast<uint64_t>(st.st_size);
  g->block = g->mem_align = static_cast<uint32_t>(st.st_blksize);
#ifdef STATX_DIOALIGN
  // Linux 6.1+ reports what O_DIRECT on this file really needs (fs/stat.c).
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
      sx.stx_dio_offset_align != 0) {
    g->block = sx.stx_dio_offset_align;
    g->mem_align = sx.stx_dio_mem_align;
  }
#endif
  return 0;
}

// Set in a completion's info slot word when io_uring_enter refused the I/O
// (lib/io/direct-device.ts: SUBMIT_FAILED). Slots are < 65536.
constexpr uint32_t kInfoSubmitFailed = 1u << 30;

// The hand-off between backend threads and the main thread. Its N-API handles
// are raw and released explicitly on the main thread (ReleaseJs), because the
// last owner of a Core may be a backend thread.
class Core final : public Sink {
 public:
  explicit Core(unsigned depth) : refs(depth, nullptr), busy(depth, 0) {
    pending_.reserve(depth);
    work_.reserve(depth);
  }

  void Deliver(const Completion* c, size_t n) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!tsfn_open) return;
    pending_.insert(pending_.end(), c, c + n);
    if (scheduled_) return;
    scheduled_ = true;
    napi_call_threadsafe_function(tsfn, nullptr, napi_tsfn_nonblocking);
  }

  // Main thread: move every completion so far into the shared arrays, unpin
  // the buffers, then one JS call for the lot.
  void Dispatch(napi_env env, napi_value cb) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      work_.swap(pending_);
      scheduled_ = false;
    }
    const size_t n = work_.size();
    if (n == 0) return;
    for (size_t i = 0; i < n; i++) {
      const Completion& c = work_[i];
      info[2 * i] = static_cast<int32_t>(c.slot | ((c.flags & kSubmitFailed) ? kInfoSubmitFailed : 0));
      info[2 * i + 1] = c.res;
      stamps[2 * i] = c.submit_ns;
      stamps[2 * i + 1] = c.done_ns;
      if (refs[c.slot] != nullptr) napi_delete_reference(env, refs[c.slot]);
      refs[c.slot] = nullptr;
      busy[c.slot] = 0;
    }
    work_.clear();
    inflight -= static_cast<uint32_t>(n);
    if (inflight == 0 && refd) {
      napi_unref_threadsafe_function(env, tsfn);
      refd = false;
    }
    napi_value argv[1], recv, result;
    napi_create_uint32(env, static_cast<uint32_t>(n), &argv[0]);
    napi_get_global(env, &recv);
    // make_callback, not call_function: promise reactions run right after.
    if (napi_make_callback(env, async, recv, cb, 1, argv, &result) == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }

  void ReleaseJs(napi_env env) {
    for (auto& r : refs) {
      if (r != nullptr) napi_delete_reference(env, r);
      r = nullptr;
    }
    if (info_ref != nullptr) napi_delete_reference(env, info_ref);
    if (stamps_ref != nullptr) napi_delete_reference(env, stamps_ref);
    if (async != nullptr) napi_async_destroy(env, async);
    info_ref = stamps_ref = nullptr;
    async = nullptr;
  }

  void CloseTsfn() {
    std::lock_guard<std::mutex> lock(mu_);
    tsfn_open = false;
  }

  // Guarded by mu_ on the Deliver path; written on the main thread.
  bool tsfn_open = false;
  napi_threadsafe_function tsfn = nullptr;
  // Main thread only.
  bool env_alive = true;
  bool refd = false;
  bool may_ref = true;
  uint32_t inflight = 0;
  std::vector<napi_ref> refs;
  std::vector<uint8_t> busy;
  int32_t* info = nullptr;   // [slot | kInfoSubmitFailed?, res] per completion
  int64_t* stamps = nullptr; // [submit_ns, done_ns] per completion
  napi_ref info_ref = nullptr;
  napi_ref stamps_ref = nullptr;
  napi_async_context async = nullptr;

 private:
  std::mutex mu_;
  std::vector<Completion> pending_;
  std::vector<Completion> work_;
  bool scheduled_ = false;
};

using CoreHolder = std::shared_ptr<Core>;

void CallJs(napi_env env, napi_value cb, void* context, void*) {
  if (env == nullptr) return;
  (*static_cast<CoreHolder*>(context))->Dispatch(env, cb);
}

void FinalizeTsfn(napi_env, void* data, void*) { delete static_cast<CoreHolder*>(data); }

// Runs before the env's finalizers (hooks run in reverse order of
// registration, and the env's own hook predates ours): after it no backend
// thread touches the TSFN, which Node is about to delete.
void OnEnvCleanup(void* arg) {
  Core* core = static_cast<Core*>(arg);
  core->CloseTsfn();
  core->env_alive = false;
}

void Check(Napi::Env env, napi_status s, const char* what) {
  if (s != napi_ok) throw Napi::Error::New(env, std::string(what) + " failed");
}

class IoEngine final : public Napi::ObjectWrap<IoEngine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IoEngine",
                       {
                           InstanceMethod<&IoEngine::Prep>("prep"),
                           InstanceMethod<&IoEngine::Submit>("submit"),
                           InstanceMethod<&IoEngine::Close>("close"),
                           InstanceMethod<&IoEngine::Unref>("unref"),
                           InstanceAccessor<&IoEngine::Kind>("kind"),
                           InstanceAccessor<&IoEngine::Block>("logicalBlockSize"),
                           InstanceAccessor<&IoEngine::MemAlign>("memoryAlignment"),
                           InstanceAccessor<&IoEngine::Size>("size"),
                           InstanceAccessor<&IoEngine::IsBlock>("isBlockDevice"),
                           InstanceAccessor<&IoEngine::RingFlags>("ringFlags"),
                       });
  }

  // new IoEngine(path, kind, depth, readOnly, onComplete, info: Int32Array,
  //              stamps: BigInt64Array)
  explicit IoEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IoEngine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 7 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber() ||
        !info[3].IsBoolean() || !info[4].IsFunction() || !info[5].IsTypedArray() || !info[6].IsTypedArray()) {
      throw Napi::TypeError::New(env, "IoEngine(path, kind, depth, readOnly, onComplete, info, stamps)");
    }
    const std::string path = info[0].As<Napi::String>();
    kind_ = info[1].As<Napi::String>().Utf8Value();
    const int64_t depth = info[2].As<Napi::Number>().Int64Value();
    const bool read_only = info[3].As<Napi::Boolean>();
    auto ta_info = info[5].As<Napi::TypedArray>();
    auto ta_stamps = info[6].As<Napi::TypedArray>();
    if (depth < 1 || depth > 65536) throw Napi::RangeError::New(env, "depth must be 1..65536");
    if (kind_ != "io_uring" && kind_ != "threads") throw Napi::TypeError::New(env, "kind: io_uring or threads");
    if (ta_info.TypedArrayType() != napi_int32_array || ta_info.ElementLength() < 2 * size_t(depth) ||
        ta_stamps.TypedArrayType() != napi_bigint64_array || ta_stamps.ElementLength() < 2 * size_t(depth)) {
      throw Napi::TypeError::New(env, "info: Int32Array(2*depth), stamps: BigInt64Array(2*depth)");
    }
    depth_ = static_cast<unsigned>(depth);

    int fd = open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
    if (fd < 0) throw ErrnoError(env, errno, "open", path);
    const char* syscall = nullptr;
    if (int err = ReadGeometry(fd, &geo_, &syscall)) {
      close(fd);
      throw ErrnoError(env, err, syscall, path);
    }

    core_ = std::make_shared<Core>(depth_);
    if (kind_ == "io_uring") {
#ifdef MPW_HAVE_LIBURING
      int err = 0;
      backend_ = MakeUringBackend(fd, depth_, core_, &err, &syscall);
      if (!backend_) {
        close(fd);
        throw ErrnoError(env, err, syscall, path);
      }
#else
      close(fd);
      throw ErrnoError(env, ENOSYS, "io_uring_setup", path + " (addon built without liburing)");
#endif
    } else {
      backend_ = MakeThreadBackend(fd, depth_, core_);
    }
    ring_flags_ = backend_->SetupFlags();

    core_->info = static_cast<int32_t*>(ta_info.ArrayBuffer().Data()) + ta_info.ByteOffset() / 4;
    core_->stamps = reinterpret_cast<int64_t*>(static_cast<uint8_t*>(ta_stamps.ArrayBuffer().Data()) +
                                               ta_stamps.ByteOffset());
    try {
      Check(env, napi_create_reference(env, ta_info, 1, &core_->info_ref), "napi_create_reference");
      Check(env, napi_create_reference(env, ta_stamps, 1, &core_->stamps_ref), "napi_create_reference");
      Check(env, napi_async_init(env, info.This(), Napi::String::New(env, "mpw:io"), &core_->async),
            "napi_async_init");
      auto* holder = new CoreHolder(core_);
      napi_status s = napi_create_threadsafe_function(env, info[4], nullptr, Napi::String::New(env, "mpw:io"), 0,
                                                      1, holder, FinalizeTsfn, holder, CallJs, &core_->tsfn);
      if (s != napi_ok) delete holder;
      Check(env, s, "napi_create_threadsafe_function");
    } catch (...) {
      backend_->Stop(true);
      backend_.reset();
      core_->ReleaseJs(env);
      throw;
    }
    // Like a socket: the loop is kept alive only while I/O is in flight.
    napi_unref_threadsafe_function(env, core_->tsfn);
    core_->tsfn_open = true;
    napi_add_env_cleanup_hook(env, OnEnvCleanup, core_.get());
    batch_.reserve(depth_);
  }

  ~IoEngine() override { Shutdown(Env()); }

 private:
  // prep(op, slot, buf | null, offset): 0 queued, 1 buffer address unaligned
  // (nothing queued). Misuse (bad slot, closed) throws.
  Napi::Value Prep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "engine closed");
    const uint32_t op = info[0].As<Napi::Number>().Uint32Value();
    const uint32_t slot = info[1].As<Napi::Number>().Uint32Value();
    if (op > 2 || slot >= depth_ || core_->busy[slot]) throw Napi::RangeError::New(env, "bad op or slot");
    Request r{0, nullptr, 0, slot, static_cast<Op>(op)};
    if (op != static_cast<uint32_t>(Op::kFlush)) {
      if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw Napi::TypeError::New(env, "buffer must be a Uint8Array");
      }
      auto buf = info[2].As<Napi::Uint8Array>();
      r.buf = buf.Data();
      r.len = static_cast<uint32_t>(buf.ByteLength());
      r.offset = static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value());
      if (reinterpret_cast<uintptr_t>(r.buf) % geo_.mem_align != 0) return Napi::Number::New(env, 1);
      Check(env, napi_create_reference(env, buf, 1, &core_->refs[slot]), "napi_create_reference");
    }
    core_->busy[slot] = 1;
    batch_.push_back(r);
    if (core_->inflight++ == 0 && core_->may_ref && !core_->refd) {
      napi_ref_threadsafe_function(env, core_->tsfn);
      core_->refd = true;
    }
    return Napi::Number::New(env, 0);
  }

  // Hands everything prepped since the last call to the backend; the kernel's
  // refusals come back as completions.
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (batch_.empty() || closed_) return Napi::Number::New(env, 0);
    backend_->Submit(batch_.data(), batch_.size());
    const size_t n = batch_.size();
    batch_.clear();
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // Only with nothing in flight (the caller drains first); frees everything.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (core_->inflight != 0) throw ErrnoError(info.Env(), EBUSY, "close", "I/O in flight");
    Shutdown(info.Env());
    return info.Env().Undefined();
  }

  // Lets the process exit although I/O is in flight (the caller gave up on it).
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    core_->may_ref = false;
    if (core_->refd && !closed_) napi_unref_threadsafe_function(info.Env(), core_->tsfn);
    core_->refd = false;
    return info.Env().Undefined();
  }

  void Shutdown(napi_env env) {
    if (closed_) return;
    closed_ = true;
    const bool drained = core_->inflight == 0;
    // With I/O still in flight (only at env teardown: the TSFN holds the
    // callback, which holds this object) the threads are detached and keep
    // the fd and ring open until the kernel completes; its buffers' refs are
    // never deleted.
    backend_->Stop(drained);
    backend_.reset();
    if (!core_->env_alive) return;
    core_->CloseTsfn();
    napi_release_threadsafe_function(core_->tsfn, napi_tsfn_release);
    napi_remove_env_cleanup_hook(env, OnEnvCleanup, core_.get());
    if (drained) core_->ReleaseJs(env);
  }

  Napi::Value Kind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kind_); }
  Napi::Value Block(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), geo_.block); }
  Napi::Value MemAlign(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), geo_.mem_align); }
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(geo_.size));
  }
  Napi::Value IsBlock(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), geo_.is_block); }
  Napi::Value RingFlags(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ring_flags_); }

  std::shared_ptr<Core> core_;
  std::shared_ptr<Backend> backend_;
  std::vector<Request> batch_;
  Geometry geo_;
  std::string kind_;
  unsigned depth_ = 0;
  unsigned ring_flags_ = 0;
  bool closed_ = false;
};

// allocAligned(bytes, align): zeroed native memory, freed when the Buffer is
// collected, counted in process.memoryUsage().external.
Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = info[0].As<Napi::Number>().Int64Value();
  const int64_t align = info[1].As<Napi::Number>().Int64Value();
  if (bytes <= 0 || align < static_cast<int64_t>(sizeof(void*)) || (align & (align - 1)) != 0) {
    throw Napi::RangeError::New(env, "allocAligned(bytes > 0, align: power of two)");
  }
  void* p = nullptr;
  if (int err = posix_memalign(&p, static_cast<size_t>(align), static_cast<size_t>(bytes))) {
    throw ErrnoError(env, err, "posix_memalign", "");
  }
  memset(p, 0, static_cast<size_t>(bytes));
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::Buffer<uint8_t>::New(
      env, static_cast<uint8_t*>(p), static_cast<size_t>(bytes),
      [](Napi::Env env, uint8_t* data, int64_t* size) {
        Napi::MemoryManagement::AdjustExternalMemory(env, -*size);
        free(data);
        delete size;
      },
      new int64_t(bytes));
}

}  // namespace
}  // namespace mpw::io

void InitIoEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("IoEngine", mpw::io::IoEngine::Define(env));
  exports.Set("allocAligned", Napi::Function::New(env, mpw::io::AllocAligned, "allocAligned"));
#ifdef MPW_HAVE_LIBURING
  exports.Set("ioUringCompiledIn", Napi::Boolean::New(env, true));
  exports.Set("liburingVersion", Napi::String::New(env, MPW_LIBURING_VERSION));
#else
  exports.Set("ioUringCompiledIn", Napi::Boolean::New(env, false));
#endif
}
