// The io_uring engine. One ring thread the addon owns does all the ring's
// work: the main thread only queues requests (a lock-free single-producer
// queue) and, when the ring thread sleeps, wakes it through an eventfd that the
// ring itself is reading. The ring thread submits, waits and reaps, so the
// kernel's submission and completion work (for a loop or dm device, most of
// the cost of an I/O) runs on it and not on the event loop's thread. With
// SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+) completion work runs only when the
// ring thread asks for events: no interrupts of a busy thread.
// Stamps: submit just before the io_uring_enter that hands the SQE to the
// kernel, done when the CQE is reaped on the ring thread: JS event-loop lag
// inflates neither.
// Only liburing's public calls touch the ring: its struct fields (sq.array,
// sq.khead, ...) are private and change between versions. liburing 2.6+ sets
// IORING_SETUP_NO_SQARRAY on kernels that have it (6.6+, io_uring/io_uring.c
// io_allocate_scq_urings), and then sq.array is NULL. What the engine prepped
// and the kernel has not yet consumed is kept in its own record (Sq below),
// measured against io_uring_sq_ready().
#ifdef MPW_HAVE_LIBURING

#include <errno.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <future>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "backend.h"

namespace mpw::io {
namespace {

// user_data of the eventfd read that wakes the ring thread.
constexpr uint64_t kWakeTag = ~0ULL;
// user_data of an I/O SQE that io_uring_enter refused and the engine turned
// into a NOP (FailPending): its CQE, if it ever comes, belongs to no slot.
constexpr uint64_t kVoidTag = ~0ULL - 1;
constexpr unsigned kReapBatch = 256;
// Transient io_uring_enter errors are retried; after this many in a row the
// queued I/Os are failed with the errno.
constexpr int kMaxRetries = 1000;

unsigned RingEntries(unsigned depth) {
  unsigned n = 1;
  while (n < depth + 1) n <<= 1;  // +1: room for the wake-up read
  return n;
}

bool Transient(int err) { return err == EINTR || err == EAGAIN || err == EBUSY || err == ETIME; }

// The SQEs prepped and not yet consumed by the kernel, oldest first. The
// kernel consumes the SQ in order, so after each io_uring_enter the last
// io_uring_sq_ready() entries are the ones still unconsumed. An SQE stays
// ours to rewrite until consumed: liburing hands out its slot again only
// after the kernel's head has passed it.
class Sq {
 public:
  void Reserve(unsigned entries) { items_.assign(entries, Item{}); }
  void Push(io_uring_sqe* sqe, uint64_t tag) {
    items_[(head_ + size_) % items_.size()] = {sqe, tag};
    size_++;
    if (tag < kVoidTag) io_++;
  }
  // Drops what the kernel consumed: all but the newest `unconsumed`.
  void Consumed(unsigned unconsumed) {
    while (size_ > unconsumed) {
      if (items_[head_].tag < kVoidTag) io_--;
      head_ = (head_ + 1) % items_.size();
      size_--;
    }
  }
  // Whether an I/O (not the wake-up read, not a voided SQE) awaits the kernel.
  bool IoPending() const { return io_ > 0; }
  // How many I/O SQEs await the kernel.
  unsigned PendingIo() const { return io_; }
  // Calls f(sqe, tag) for each unconsumed I/O SQE, then marks it void.
  template <typename F>
  void VoidIo(F f) {
    for (unsigned i = 0; i < size_; i++) {
      Item& it = items_[(head_ + i) % items_.size()];
      if (it.tag >= kVoidTag) continue;
      f(it.sqe, it.tag);
      it.tag = kVoidTag;
      io_--;
    }
  }

 private:
  struct Item {
    io_uring_sqe* sqe;
    uint64_t tag;
  };
  std::vector<Item> items_;
  unsigned head_ = 0;
  unsigned size_ = 0;
  unsigned io_ = 0;
};

class UringBackend final : public Backend, public std::enable_shared_from_this<UringBackend> {
 public:
  UringBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink)
      : fd_(fd), depth_(depth), sink_(std::move(sink)), queue_(depth), submit_ns_(depth, 0) {}

  ~UringBackend() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);
    if (efd_ >= 0) close(efd_);
    if (fd_ >= 0) close(fd_);
  }

  // Init failed: hand fd back to the caller instead of closing it.
  void DisownFd() { fd_ = -1; }

  // Returns 0 or -errno with *syscall set. The ring is created on the ring
  // thread, which SINGLE_ISSUER makes its only submitter.
  int Init(const char** syscall) {
    efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0) return *syscall = "eventfd", -errno;
    if (const char* f = getenv("MPW_IO_FAULT_SUBMIT")) ParseFault(f);
    std::promise<int> ready;
    std::future<int> result = ready.get_future();
    // At a thread or memory limit std::thread throws: a typed error, not std::terminate.
    try {
      if (getenv("MPW_IO_FAULT_THREAD_CREATE") != nullptr) throw std::system_error(EAGAIN, std::generic_category());
      thread_ = std::thread([self = shared_from_this(), &ready] { self->Run(&ready); });
    } catch (const std::system_error& e) {
      *syscall = "pthread_create";
      return e.code().value() > 0 ? -e.code().value() : -EAGAIN;
    } catch (const std::bad_alloc&) {
      *syscall = "pthread_create";
      return -ENOMEM;
    }
    int r = result.get();
    if (r < 0) {
      thread_.join();
      *syscall = "io_uring_setup";
    }
    return r;
  }

  // Main thread. The engine never has more than depth I/Os queued or in
  // flight, so the queue cannot overflow.
  int Submit(const Request* r, size_t n) override {
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < n; i++) queue_[(tail + i) % depth_] = r[i];
    tail_.store(tail + n, std::memory_order_seq_cst);
    WakeIfSleeping();
    return 0;
  }

  unsigned SetupFlags() const override { return setup_flags_.load(std::memory_order_acquire); }

  void Stop(bool join) override {
    stopping_.store(true, std::memory_order_seq_cst);
    Wake();
    if (join) thread_.join(); else thread_.detach();
  }

 private:
  // "errno[,count]": the next count (default 1) io_uring_enter calls that
  // would submit I/O fail with errno instead (tests of the error path).
  void ParseFault(const char* spec) {
    char* end = nullptr;
    long e = strtol(spec, &end, 10);
    long c = (end != nullptr && *end == ',') ? strtol(end + 1, nullptr, 10) : 1;
    if (e > 0 && c > 0) {
      fault_errno_ = static_cast<int>(e);
      fault_count_ = static_cast<int>(c);
    }
  }

  void WakeIfSleeping() {
    // Pairs with the ring thread's store of sleeping_ then load of tail_:
    // either it sees the new tail, or we see it asleep.
    if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst)) Wake();
  }

  void Wake() {
    const uint64_t one = 1;
    ssize_t w;
    do w = write(efd_, &one, sizeof one); while (w < 0 && errno == EINTR);
  }

  int Setup() {
    const unsigned entries = RingEntries(depth_);
    // Newest first: 6.1+, then 5.19+, then anything.
    const unsigned flags[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int r = -EINVAL;
    io_uring_params p{};
    for (unsigned f : flags) {
      p = io_uring_params{};
      p.flags = f;
      r = io_uring_queue_init_params(entries, &ring_, &p);
      if (r != -EINVAL) break;
    }
    if (r != 0) return r;
    ring_ok_ = true;
    // p.flags now holds what the ring was set up with, NO_SQARRAY included
    // when liburing added it; sq_entries is the SQ's real size.
    setup_flags_.store(p.flags, std::memory_order_release);
    sq_.Reserve(p.sq_entries);
    return 0;
  }

  void Run(std::promise<int>* ready) {
    BlockSignalsInThisThread();
    int r = Setup();
    ready->set_value(r);  // Init() may return, and ready die, from here on
    if (r < 0) return;
    Loop();
  }

  // Moves queued requests into SQEs; returns how many.
  size_t Take() {
    const uint64_t tail = tail_.load(std::memory_order_acquire);
    size_t n = 0;
    while (head_ != tail) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      // The SQ is full only while voided NOPs (FailPending) still hold slots
      // until the next enter hands them over; the rest waits for that round.
      if (sqe == nullptr) break;
      const Request& r = queue_[head_ % depth_];
      switch (r.op) {
        case Op::kRead: io_uring_prep_read(sqe, fd_, r.buf, r.len, r.offset); break;
        case Op::kWrite: io_uring_prep_write(sqe, fd_, r.buf, r.len, r.offset); break;
        default: io_uring_prep_fsync(sqe, fd_, 0); break;
      }
      io_uring_sqe_set_data64(sqe, r.slot);
      sq_.Push(sqe, r.slot);
      fresh_.push_back(r.slot);
      head_++;
      n++;
    }
    return n;
  }

  void ArmWake() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return;
    io_uring_prep_read(sqe, efd_, &wake_buf_, sizeof wake_buf_, 0);
    io_uring_sqe_set_data64(sqe, kWakeTag);
    sq_.Push(sqe, kWakeTag);
    wake_armed_ = true;
  }

  // io_uring_enter failed for good: the I/O SQEs the kernel did not consume
  // become NOPs (so they can never run after their slots are reused) and
  // their I/Os complete with -err and the submit-failed flag. The wake-up
  // read stays queued: it is harmless and the next enter hands it over.
  void FailPending(int err, int64_t now) {
    failed_.clear();
    sq_.VoidIo([&](io_uring_sqe* sqe, uint64_t tag) {
      // liburing 2.9's prep helpers leave fields such as flags and rw_flags
      // (a NOP's nop_flags from 6.10) to get_sqe's clearing: clear them here.
      memset(sqe, 0, sizeof *sqe);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, kVoidTag);
      const auto slot = static_cast<uint32_t>(tag);
      failed_.push_back({slot, -err, submit_ns_[slot], now, kSubmitFailed});
    });
    inflight_ -= static_cast<unsigned>(failed_.size());
    if (!failed_.empty()) sink_->Deliver(failed_.data(), failed_.size());
  }

  bool IoPending() const { return sq_.IoPending(); }

  // Stamps what Take() prepped, hands the SQ to the kernel and runs
  // completion work; waits for one CQE if `wait`. Returns false when the ring
  // can no longer wait.
  bool Enter(bool wait) {
    const int64_t now = MonotonicNs();
    for (uint32_t slot : fresh_) submit_ns_[slot] = now;
    inflight_ += static_cast<unsigned>(fresh_.size());
    fresh_.clear();
    int r;
    if (fault_count_ > 0 && IoPending()) {
      fault_count_--;
      r = -fault_errno_;
    } else {
      r = wait ? io_uring_submit_and_wait(&ring_, 1) : io_uring_submit_and_get_events(&ring_);
      sq_.Consumed(io_uring_sq_ready(&ring_));
    }
    if (r >= 0) {
      retries_ = 0;
      return true;
    }
    if (!IoPending()) return Transient(-r);  // only waiting failed
    if (Transient(-r) && ++retries_ < kMaxRetries) {
      // Nothing of ours is in the kernel, so no completion can free it: back off.
      if (inflight_ == sq_.PendingIo()) usleep(100);
      return true;
    }
    retries_ = 0;
    FailPending(-r, MonotonicNs());
    return true;
  }

  void Reap() {
    io_uring_cqe* cqes[kReapBatch];
    for (;;) {
      const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kReapBatch);
      if (n == 0) return;
      const int64_t done = MonotonicNs();
      batch_.clear();
      for (unsigned i = 0; i < n; i++) {
        const uint64_t tag = io_uring_cqe_get_data64(cqes[i]);
        if (tag == kWakeTag) {
          wake_armed_ = false;
          continue;
        }
        if (tag == kVoidTag) continue;
        const auto slot = static_cast<uint32_t>(tag);
        batch_.push_back({slot, cqes[i]->res, submit_ns_[slot], done, 0});
      }
      io_uring_cq_advance(&ring_, n);
      inflight_ -= static_cast<unsigned>(batch_.size());
      if (!batch_.empty()) sink_->Deliver(batch_.data(), batch_.size());
      if (n < kReapBatch) return;
    }
  }

  bool QueueEmpty() const { return tail_.load(std::memory_order_seq_cst) == head_; }

  // Each round: queue what the main thread sent, then either reap what is
  // already there, or submit and sleep in the same io_uring_enter until a CQE
  // (an I/O, or the eventfd read the main thread completes to wake us).
  void Loop() {
    fresh_.reserve(depth_);
    batch_.reserve(kReapBatch);
    failed_.reserve(depth_ + 1);
    for (;;) {
      if (!wake_armed_) ArmWake();
      Take();
      bool ok = true;
      if (io_uring_cq_ready(&ring_) > 0) {
        if (IoPending()) ok = Enter(false);
      } else {
        if (stopping_.load(std::memory_order_seq_cst) && inflight_ == 0 && QueueEmpty() && !IoPending()) return;
        sleeping_.store(true, std::memory_order_seq_cst);
        Take();  // what came before the main thread could see us asleep
        ok = Enter(true);
        sleeping_.store(false, std::memory_order_relaxed);
      }
      Reap();
      if (!ok) {
        // The ring can no longer wait: what is in flight stays pinned for
        // good. Later requests still get their error.
        Broken();
        return;
      }
    }
  }

  // The ring is unusable: fail each later request with EBADFD until Stop.
  void Broken() {
    for (;;) {
      uint64_t v;
      if (read(efd_, &v, sizeof v) < 0 && errno == EAGAIN) usleep(1000);
      failed_.clear();
      const int64_t now = MonotonicNs();
      while (head_ != tail_.load(std::memory_order_acquire)) {
        failed_.push_back({queue_[head_ % depth_].slot, -EBADFD, now, now, kSubmitFailed});
        head_++;
      }
      if (!failed_.empty()) sink_->Deliver(failed_.data(), failed_.size());
      if (stopping_.load(std::memory_order_seq_cst) && QueueEmpty()) return;
    }
  }

  int fd_;
  const unsigned depth_;
  const std::shared_ptr<Sink> sink_;
  int efd_ = -1;
  io_uring ring_{};
  bool ring_ok_ = false;
  std::thread thread_;
  // Main thread to ring thread.
  std::vector<Request> queue_;
  std::atomic<uint64_t> tail_{0};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stopping_{false};
  // Ring thread only.
  uint64_t head_ = 0;
  std::vector<int64_t> submit_ns_;
  std::vector<uint32_t> fresh_;  // slots prepped since the last enter
  std::vector<Completion> batch_;
  std::vector<Completion> failed_;
  unsigned inflight_ = 0;
  uint64_t wake_buf_ = 0;
  bool wake_armed_ = false;  // an eventfd read is prepped or in the kernel
  Sq sq_;
  std::atomic<unsigned> setup_flags_{0};
  int retries_ = 0;
  int fault_errno_ = 0;
  int fault_count_ = 0;
};

}  // namespace

std::shared_ptr<Backend> MakeUringBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink, int* err,
                                          const char** syscall) {
  auto b = std::make_shared<UringBackend>(fd, depth, std::move(sink));
  int r = b->Init(syscall);
  if (r < 0) {
    // The caller keeps fd: it may still open the thread engine on it.
    *err = -r;
    b->DisownFd();
    return nullptr;
  }
  return b;
}

}  // namespace mpw::io

#endif  // MPW_HAVE_LIBURING
