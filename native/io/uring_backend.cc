// The io_uring engine. The main thread fills SQEs and submits a whole batch
// with one io_uring_enter; a reaper thread the addon owns waits for CQEs and
// stamps each batch the moment it is reaped, so JS event-loop lag never
// inflates a latency. The SQ is used only by the main thread and the CQ only
// by the reaper, which liburing allows (each ring side has a single user).
#ifdef MPW_HAVE_LIBURING

#include <errno.h>
#include <liburing.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "backend.h"

#ifndef MPW_SPIN_NS
#define MPW_SPIN_NS 30000
#endif
namespace mpw::io {
namespace {

// user_data of the NOP that wakes the reaper at Stop().
constexpr uint64_t kWakeTag = ~0ULL;
constexpr unsigned kReapBatch = 256;
constexpr int64_t kSpinNs = MPW_SPIN_NS;

unsigned RingEntries(unsigned depth) {
  unsigned n = 1;
  while (n < depth + 1) n <<= 1;  // +1: room for the wake-up NOP
  return n;
}

class UringBackend final : public Backend, public std::enable_shared_from_this<UringBackend> {
 public:
  UringBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink)
      : fd_(fd), sink_(std::move(sink)), submit_ns_(depth) {}

  ~UringBackend() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);
    if (fd_ >= 0) close(fd_);
  }

  // Init failed: hand fd back to the caller instead of closing it.
  void DisownFd() { fd_ = -1; }

  int Init(unsigned depth) {
    int r = io_uring_queue_init(RingEntries(depth), &ring_, 0);
    if (r < 0) return r;
    ring_ok_ = true;
    reaper_ = std::thread([self = shared_from_this()] { self->Reap(); });
    return 0;
  }

  int Submit(const Request* r, size_t n) override {
    const int64_t now = MonotonicNs();
    for (size_t i = 0; i < n; i++) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // Cannot happen: the engine never has more than depth I/Os in flight
      // and the ring has depth+1 entries, all flushed by the previous Submit.
      if (sqe == nullptr) return -EBUSY;
      switch (r[i].op) {
        case Op::kRead: io_uring_prep_read(sqe, fd_, r[i].buf, r[i].len, r[i].offset); break;
        case Op::kWrite: io_uring_prep_write(sqe, fd_, r[i].buf, r[i].len, r[i].offset); break;
        default: io_uring_prep_fsync(sqe, fd_, 0); break;
      }
      io_uring_sqe_set_data64(sqe, r[i].slot);
      submit_ns_[r[i].slot].store(now, std::memory_order_relaxed);
    }
    submitted_.fetch_add(n, std::memory_order_release);
    return Flush();
  }

  void Stop(bool join) override {
    stopping_.store(true, std::memory_order_release);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe != nullptr) {
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, kWakeTag);
      Flush();
    }
    if (join) reaper_.join(); else reaper_.detach();
  }

 private:
  int Flush() {
    // EINTR and EAGAIN leave the SQEs queued; retry a bounded number of times.
    for (int attempt = 0;; attempt++) {
      int r = io_uring_submit(&ring_);
      if (r >= 0) return 0;
      if ((r != -EINTR && r != -EAGAIN) || attempt > 1000) return r;
    }
  }

  void Reap() {
    BlockSignalsInThisThread();
    std::vector<Completion> batch;
    batch.reserve(kReapBatch);
    io_uring_cqe* cqes[kReapBatch];
    uint64_t reaped = 0;
    for (;;) {
      io_uring_cqe* first = nullptr;
      // At depth 0-1 a short spin before sleeping saves a wake-up per I/O;
      // deeper, completions come in batches and spinning only steals a core.
      const bool shallow = submitted_.load(std::memory_order_acquire) - reaped <= 1;
      for (int64_t until = shallow ? MonotonicNs() + kSpinNs : 0; first == nullptr && MonotonicNs() < until;) {
        if (io_uring_peek_cqe(&ring_, &first) != 0) first = nullptr;
      }
      int r = first != nullptr ? 0 : io_uring_wait_cqe(&ring_, &first);
      if (r == -EINTR || r == -EAGAIN) continue;
      if (r < 0) return;  // the ring is unusable; nothing can complete any more
      const int64_t done = MonotonicNs();
      unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kReapBatch);
      batch.clear();
      for (unsigned i = 0; i < n; i++) {
        uint64_t tag = io_uring_cqe_get_data64(cqes[i]);
        if (tag == kWakeTag) continue;
        auto slot = static_cast<uint32_t>(tag);
        batch.push_back({slot, cqes[i]->res, submit_ns_[slot].load(std::memory_order_relaxed), done});
      }
      io_uring_cq_advance(&ring_, n);
      reaped += batch.size();
      if (!batch.empty()) sink_->Deliver(batch.data(), batch.size());
      if (stopping_.load(std::memory_order_acquire) &&
          reaped == submitted_.load(std::memory_order_acquire)) {
        return;
      }
    }
  }

  int fd_;
  const std::shared_ptr<Sink> sink_;
  io_uring ring_{};
  bool ring_ok_ = false;
  std::thread reaper_;
  std::vector<std::atomic<int64_t>> submit_ns_;
  std::atomic<uint64_t> submitted_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace

std::shared_ptr<Backend> MakeUringBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink, int* err,
                                          const char** syscall) {
  auto b = std::make_shared<UringBackend>(fd, depth, std::move(sink));
  int r = b->Init(depth);
  if (r < 0) {
    // The caller keeps fd: it may still open the thread engine on it.
    *err = -r;
    *syscall = "io_uring_setup";
    b->DisownFd();
    return nullptr;
  }
  return b;
}

}  // namespace mpw::io

#endif  // MPW_HAVE_LIBURING
