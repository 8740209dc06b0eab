// A small fixed pool of worker threads, and Strands on it: a Strand runs the
// tasks posted to it one at a time, in order, on some pool thread. Each ingest
// stream has its own Strand, so durable writes (fdatasync) and token reviews
// happen off gRPC's reactions, in order per stream, in parallel across streams.
//
// Thread-safe. Destroying the pool runs the tasks already queued, then joins.
#ifndef AGGREGATOR_WORK_QUEUE_H_
#define AGGREGATOR_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pc::aggregator {

namespace work_queue_internal {

// The tasks a pool's threads take and the loop they run: ThreadPool's and
// ElasticPool's, which differ only in when they start threads.
struct PoolQueue {
  // Runs queued tasks until `stop` is set and the queue is drained.
  void Work();

  // Puts a task on the queue and wakes a waiting thread, if any.
  void Push(std::function<void()> task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Sets `stop` and wakes every waiting thread.
  void Stop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  absl::Mutex mu;
  // Signalled once per task while threads wait. Not Mutex::Await: abseil
  // evaluates a waiter's condition on unlocks of `mu`, so a worker taking
  // the last task evaluated every other idle worker's, once per chunk.
  absl::CondVar wake;
  std::deque<std::function<void()>> tasks ABSL_GUARDED_BY(mu);
  // Threads waiting in Work: whether ElasticPool needs another one.
  size_t idle ABSL_GUARDED_BY(mu) = 0;
  bool stop ABSL_GUARDED_BY(mu) = false;
};

}  // namespace work_queue_internal

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  void Schedule(std::function<void()> task);

 private:
  work_queue_internal::PoolQueue queue_;
  std::vector<std::thread> threads_;
};

// Runs each task on a thread of its own, up to max_threads at once (more
// wait for a thread to be free), for tasks that may block for seconds (a
// replica waiting out a silent Lease holder) and so must not take the fixed
// pool's threads. Threads are started as needed and kept.
class ElasticPool {
 public:
  explicit ElasticPool(int max_threads) : max_threads_(max_threads) {}
  ~ElasticPool();
  void Schedule(std::function<void()> task);

 private:
  const size_t max_threads_;
  work_queue_internal::PoolQueue queue_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(queue_.mu);
};

class Strand : public std::enable_shared_from_this<Strand> {
 public:
  explicit Strand(ThreadPool* pool) : pool_(pool) {}
  void Post(std::function<void()> task);

 private:
  void Drain();

  ThreadPool* pool_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_WORK_QUEUE_H_
