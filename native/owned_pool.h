// A pool of threads the addon owns, for calls that may block in the kernel
// (a DM_DEV_SUSPEND flushing to a hung path, a DM_DEV_WAIT). It grows instead of
// queueing: a job is handed to an idle thread or gets a new one, so a blocked
// job never delays another, and Node's own threadpool is never touched.
#ifndef MPW_NATIVE_OWNED_POOL_H_
#define MPW_NATIVE_OWNED_POOL_H_

#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>

namespace mpw {

class OwnedPool {
 public:
  // Process-wide; deliberately never destroyed so that no idle thread can wake
  // on a destroyed condition variable during exit.
  static OwnedPool& Instance() {
    static OwnedPool* pool = new OwnedPool();
    return *pool;
  }

  // Runs `job` on a pool thread. Returns false (job not taken) when no thread
  // could be started.
  bool Submit(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
    // Every queued job needs its own idle thread; otherwise start one.
    if (jobs_.size() <= idle_) {
      cv_.notify_one();
      return true;
    }
    try {
      std::thread(&OwnedPool::Worker, this).detach();
    } catch (const std::system_error&) {
      jobs_.pop_back();
      return false;
    }
    return true;
  }

 private:
  OwnedPool() = default;

  void Worker() {
    // Signals belong to Node's main thread; a signal landing here would also
    // turn a DM_DEV_WAIT into -ERESTARTSYS (drivers/md/dm-ioctl.c dev_wait).
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      bool got = cv_.wait_for(lock, kIdleExit, [this] { return !jobs_.empty(); });
      --idle_;
      if (!got) return;
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  static constexpr std::chrono::seconds kIdleExit{30};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t idle_ = 0;
};

}  // namespace mpw

#endif  // MPW_NATIVE_OWNED_POOL_H_
