// Several "ranks" in one test process: threads that meet at an AND-barrier
// (what CheckpointTopology::all_ok is over MPI), and a token dispatcher that
// only reports an expert-parallel rank, so that models holding one expert
// shard can be built (and saved, loaded, compared) without MPI.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "moe/core/check.h"
#include "moe/layers/token_dispatcher.h"

namespace sb::testing {

// A reusable barrier over `size` threads that also ANDs a flag.
class FakeCollective {
 public:
  explicit FakeCollective(int size) : size_(size) {}
  bool AllOk(bool ok) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t generation = generation_;
    all_ = all_ && ok;
    if (++arrived_ == size_) {
      result_ = all_;
      all_ = true;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return result_;
    }
    // result_ stays valid until every member has arrived at the next call.
    cv_.wait(lock, [&] { return generation_ != generation; });
    return result_;
  }

 private:
  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  bool all_ = true, result_ = true;
};

// Runs body(rank) on `size` threads and joins them.
inline void RunRanks(int size, const std::function<void(int rank)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(body, r);
  for (std::thread& t : threads) t.join();
}

// Construction only reads ep_size and ep_rank (local experts
// [rank * E / size, (rank + 1) * E / size)); a forward pass would need a
// real all-to-all and stops the test.
class FakeEpDispatcher : public TokenDispatcher {
 public:
  FakeEpDispatcher(int size, int rank) : size_(size), rank_(rank) {}
  int ep_size() const override { return size_; }
  int ep_rank() const override { return rank_; }
  DispatchPlan Plan(const std::vector<int64_t>&) override {
    SB_CHECK(false) << "FakeEpDispatcher only serves construction";
    return {};
  }
  void Dispatch(const DispatchPlan&, const Tensor&, const Tensor&) override { SB_CHECK(false); }
  void Combine(const DispatchPlan&, const Tensor&, const Tensor&) override { SB_CHECK(false); }

 private:
  int size_, rank_;
};

}  // namespace sb::testing
