#include "aggregator/work_queue.h"

#include <utility>

namespace pc::aggregator {

namespace work_queue_internal {

void PoolQueue::Work() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu);
      while (!stop && tasks.empty()) {
        ++idle;
        wake.Wait(&mu);
        --idle;
      }
      if (tasks.empty()) return;  // stopping and drained
      task = std::move(tasks.front());
      tasks.pop_front();
    }
    task();
  }
}

void PoolQueue::Push(std::function<void()> task) {
  tasks.push_back(std::move(task));
  if (idle > 0) wake.Signal();
}

void PoolQueue::Stop() {
  stop = true;
  wake.SignalAll();
}

}  // namespace work_queue_internal

ThreadPool::ThreadPool(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { queue_.Work(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&queue_.mu);
    queue_.Stop();
  }
  for (auto& t : threads_) t.join();
}

void ThreadPool::Schedule(std::function<void()> task) {
  absl::MutexLock lock(&queue_.mu);
  queue_.Push(std::move(task));
}

ElasticPool::~ElasticPool() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&queue_.mu);
    queue_.Stop();
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

void ElasticPool::Schedule(std::function<void()> task) {
  absl::MutexLock lock(&queue_.mu);
  queue_.Push(std::move(task));
  // Each idle thread takes one queued task; a task beyond them gets a thread
  // of its own while there may be more.
  if (queue_.tasks.size() > queue_.idle && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { queue_.Work(); });
  }
}

void Strand::Post(std::function<void()> task) {
  bool start = false;
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
    if (!running_) running_ = start = true;
  }
  if (start) {
    pool_->Schedule([self = shared_from_this()] { self->Drain(); });
  }
}

void Strand::Drain() {
  // A bounded batch per turn, so one busy stream cannot hog a worker.
  for (int i = 0; i < 64; ++i) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      if (tasks_.empty()) {
        running_ = false;
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
  pool_->Schedule([self = shared_from_this()] { self->Drain(); });
}

}  // namespace pc::aggregator
