// The contract between the JS-facing engine and its two backends (io_uring
// and owned threads). Backends only move requests to the kernel and stamp them;
// slots, buffers and delivery to JS belong to the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mpw::io {

enum class Op : uint8_t { kRead = 0, kWrite = 1, kFlush = 2 };

struct Request {
  uint64_t offset;
  void* buf;
  uint32_t len;
  uint32_t slot;
  Op op;
};

// Completion::flags: the I/O never reached the kernel, io_uring_enter refused
// it with -res.
constexpr uint32_t kSubmitFailed = 1;

struct Completion {
  uint32_t slot;
  int32_t res;  // bytes transferred, or -errno
  int64_t submit_ns;
  int64_t done_ns;
  uint32_t flags;
};

// CLOCK_MONOTONIC in nanoseconds: the clock of process.hrtime.bigint().
int64_t MonotonicNs();

// Blocks every signal in the calling (owned) thread so signals reach Node's.
void BlockSignalsInThisThread();

// Receives completions on a backend thread. Thread safe.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void Deliver(const Completion* c, size_t n) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Main thread only. Hands n requests to the backend's threads, which stamp
  // them when they reach the kernel. Never fails: an I/O the kernel refuses
  // completes with -errno (and kSubmitFailed when io_uring_enter refused it).
  virtual int Submit(const Request* r, size_t n) = 0;
  // Main thread only. Asks the backend's threads to exit once nothing is in
  // flight. join=true waits for them (call only when nothing is in flight);
  // join=false detaches them: the last one out frees the backend and its fd.
  virtual void Stop(bool join) = 0;
  // The io_uring setup flags the ring was created with (0 for threads).
  virtual unsigned SetupFlags() const { return 0; }
};

// Owns fd from here on. Returns nullptr with *err (positive errno) and
// *syscall set when the kernel refuses io_uring (ENOSYS, EPERM, ...).
std::shared_ptr<Backend> MakeUringBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink,
                                          int* err, const char** syscall);
std::shared_ptr<Backend> MakeThreadBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink);

}  // namespace mpw::io
