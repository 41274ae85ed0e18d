// The fallback engine: blocking pread/pwrite/fsync on threads the addon owns,
// never Node's threadpool, so a hung device cannot starve fs or dns work.
// One worker per in-flight I/O up to the queue depth: a stuck I/O holds only
// its own thread.
#include <errno.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "backend.h"

namespace mpw::io {
namespace {

struct Queued {
  Request req;
  int64_t submit_ns;
};

class ThreadBackend final : public Backend, public std::enable_shared_from_this<ThreadBackend> {
 public:
  ThreadBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink)
      : fd_(fd), depth_(depth), sink_(std::move(sink)) {
    // Tests of the path below: every thread start fails as pthread_create would at a limit.
    fault_thread_ = getenv("MPW_IO_FAULT_THREAD_CREATE") != nullptr;
  }

  ~ThreadBackend() override { close(fd_); }

  int Submit(const Request* r, size_t n) override {
    const int64_t now = MonotonicNs();
    std::vector<Completion> failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < n; i++) queue_.push_back({r[i], now});
      // Idle workers take what they can; start new ones for the rest.
      size_t want = queue_.size() > idle_ ? queue_.size() - idle_ : 0;
      while (want > 0 && threads_.size() < depth_) {
        // At a thread or memory limit std::thread throws; fewer workers then
        // share the queue, and with none at all the queued I/O fails.
        try {
          if (fault_thread_) throw std::system_error(EAGAIN, std::generic_category());
          threads_.emplace_back([self = shared_from_this()] { self->Work(); });
        } catch (const std::system_error& e) {
          thread_errno_ = e.code().value() > 0 ? e.code().value() : EAGAIN;
          break;
        } catch (const std::bad_alloc&) {
          thread_errno_ = ENOMEM;
          break;
        }
        want--;
      }
      if (threads_.empty()) {
        const int64_t done = MonotonicNs();
        for (const Queued& q : queue_) failed.push_back({q.req.slot, -thread_errno_, q.submit_ns, done, kSubmitFailed});
        queue_.clear();
      }
    }
    if (!failed.empty()) {
      sink_->Deliver(failed.data(), failed.size());
      return 0;
    }
    if (n == 1) cv_.notify_one(); else cv_.notify_all();
    return 0;
  }

  void Stop(bool join) override {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads) {
      if (join) t.join(); else t.detach();
    }
  }

 private:
  void Work() {
    BlockSignalsInThisThread();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      while (queue_.empty() && !stopping_) {
        idle_++;
        cv_.wait(lock);
        idle_--;
      }
      if (queue_.empty()) return;
      Queued q = queue_.front();
      queue_.pop_front();
      lock.unlock();
      Completion c{q.req.slot, Run(q.req), q.submit_ns, 0, 0};
      c.done_ns = MonotonicNs();
      sink_->Deliver(&c, 1);
      lock.lock();
    }
  }

  int32_t Run(const Request& r) {
    ssize_t n;
    do {
      switch (r.op) {
        case Op::kRead: n = pread(fd_, r.buf, r.len, static_cast<off_t>(r.offset)); break;
        case Op::kWrite: n = pwrite(fd_, r.buf, r.len, static_cast<off_t>(r.offset)); break;
        default: n = fsync(fd_); break;
      }
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : static_cast<int32_t>(n);
  }

  const int fd_;
  const unsigned depth_;
  const std::shared_ptr<Sink> sink_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
  bool fault_thread_ = false;
  int thread_errno_ = EAGAIN;
};

}  // namespace

std::shared_ptr<Backend> MakeThreadBackend(int fd, unsigned depth, std::shared_ptr<Sink> sink) {
  return std::make_shared<ThreadBackend>(fd, depth, std::move(sink));
}

}  // namespace mpw::io
