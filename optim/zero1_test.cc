// ZeRO-1 without MPI: replicas are threads that meet in an in-process
// all-gather. Sharded state must give bitwise the parameters of the
// unsharded optimizer on every replica (AdamW and Adafactor, which keeps
// per-tensor factored statistics), and owners must be balanced. The same
// property through MPI and the trainer: tests/mpi/layout_invariance_test.cc.
#include "optim/zero1.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "optim/test_util.h"

namespace sb {
namespace {

using optim_test::BitwiseEqual;
using optim_test::Normal;
using optim_test::SetValues;

TEST(AssignOwners, LargestFirstToLeastLoaded) {
  // Order 50, 20, 20, 10, 5: 50 -> 0; 20 -> 1; 20 -> 1; 10 -> 1 (40 < 50); 5 -> 0 (tie 50/50).
  EXPECT_EQ(AssignOwners({10, 50, 20, 20, 5}, 2), (std::vector<int>{1, 0, 1, 1, 0}));
  EXPECT_EQ(AssignOwners({7, 7, 7}, 1), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(AssignOwners({3}, 4), (std::vector<int>{0}));  // more replicas than tensors
}

// An all-gather-v among `size` threads.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), parts_(static_cast<size_t>(size)) {}
  ReplicaGroup Member(int rank) {
    ReplicaGroup g;
    g.size = size_;
    g.rank = rank;
    g.all_gather_v = [this, rank](const Tensor& send, const Tensor& recv,
                                  const std::vector<int64_t>& counts) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        parts_[rank] = send;
      }
      Barrier();
      int64_t offset = 0;
      for (int m = 0; m < size_; ++m) {
        EXPECT_EQ(parts_[m].numel(), counts[m]);
        if (counts[m] > 0) ops::Copy(parts_[m], recv.Rows(offset, offset + counts[m]));
        offset += counts[m];
      }
      Barrier();  // nobody reuses its send buffer before all have read it
    };
    return g;
  }

 private:
  void Barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }
  int size_;
  std::vector<Tensor> parts_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

// Every kind of parameter, f32, with deterministic values.
std::vector<Parameter> MakeParams() {
  std::vector<Parameter> ps;
  ps.push_back(MakeParameter("embed", ParamKind::kEmbedding, {16, 8}, DType::kF32, Device::kCpu));
  ps.push_back(MakeParameter("norm", ParamKind::kNorm, {8}, DType::kF32, Device::kCpu));
  ps.push_back(MakeParameter("w", ParamKind::kWeight, {12, 8}, DType::kF32, Device::kCpu));
  ps.push_back(MakeParameter("gate", ParamKind::kRouter, {4, 8}, DType::kF32, Device::kCpu));
  ps.push_back(MakeParameter("experts.{expert}.w1", ParamKind::kExpert, {2, 6, 8}, DType::kF32,
                             Device::kCpu));
  ps.push_back(MakeParameter("experts.{expert}.w2", ParamKind::kExpert, {2, 8, 6}, DType::kF32,
                             Device::kCpu));
  for (size_t i = 0; i < ps.size(); ++i) SetValues(ps[i].value, Normal(100 + i, ps[i].value.numel(), 0.5));
  return ps;
}

void SetGrads(std::vector<Parameter>& ps, int step) {
  for (size_t i = 0; i < ps.size(); ++i)
    SetValues(ps[i].grad, Normal(1000 * (step + 1) + i, ps[i].grad.numel(), 0.1));
}

std::vector<Parameter*> Pointers(std::vector<Parameter>& ps) {
  std::vector<Parameter*> out;
  for (Parameter& p : ps) out.push_back(&p);
  return out;
}

void ExpectShardedEqualsUnsharded(switchboard::OptimizerConfig::Name name, int replicas) {
  switchboard::OptimizerConfig config;
  config.set_name(name);
  config.set_adafactor_beta1(0.9);  // Adafactor with momentum state too
  const int steps = 3;
  std::vector<Parameter> reference = MakeParams();
  auto plain = MakeOptimizer(config, Pointers(reference));
  for (int s = 0; s < steps; ++s) {
    SetGrads(reference, s);
    plain->Step(1e-2);
  }

  ThreadGroup replicated(replicas), expert(replicas);
  std::vector<std::vector<Parameter>> copies(replicas);
  std::vector<int64_t> owned(replicas);
  std::vector<std::thread> threads;
  for (int r = 0; r < replicas; ++r) {
    copies[r] = MakeParams();
    threads.emplace_back([&, r] {
      // A small bucket so that the gather runs in several chunks.
      Zero1Optimizer zero(config, Pointers(copies[r]), replicated.Member(r), expert.Member(r),
                          /*gather_bucket_bytes=*/300);
      owned[r] = zero.owned_elements();
      for (int s = 0; s < steps; ++s) {
        SetGrads(copies[r], s);
        zero.Step(1e-2);
      }
      EXPECT_EQ(zero.step(), steps);
    });
  }
  for (std::thread& t : threads) t.join();
  int64_t total = 0, all = 0;
  for (int r = 0; r < replicas; ++r) total += owned[r];
  for (const Parameter& p : reference) all += p.value.numel();
  EXPECT_EQ(total, all) << "every parameter has exactly one owner";
  for (int r = 0; r < replicas; ++r) {
    EXPECT_GT(owned[r], 0) << "replica " << r << " owns nothing";
    for (size_t i = 0; i < reference.size(); ++i) {
      EXPECT_TRUE(BitwiseEqual(reference[i].value, copies[r][i].value))
          << "replica " << r << " " << reference[i].name;
    }
  }
}

TEST(Zero1, AdamWShardedEqualsUnsharded) {
  ExpectShardedEqualsUnsharded(switchboard::OptimizerConfig::ADAMW, 3);
}

TEST(Zero1, AdafactorShardedEqualsUnsharded) {
  ExpectShardedEqualsUnsharded(switchboard::OptimizerConfig::ADAFACTOR, 2);
}

TEST(Zero1, OneReplicaIsThePlainOptimizer) {
  ExpectShardedEqualsUnsharded(switchboard::OptimizerConfig::ADAMW, 1);
}

}  // namespace
}  // namespace sb
