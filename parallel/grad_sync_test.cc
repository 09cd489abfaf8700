// Gradient buckets and their overlap schedule, on the host without MPI: a
// recording communicator stands for the world and the EDP group (every
// replica is assumed to hold the same gradient, so a sum over n replicas is
// n times the local value, applied when the collective is waited for).
// Checks: bucket layout (reverse parameter order, size limit, dtype and
// group boundaries), each bucket starting right after backward finishes its
// last tensor and never before an earlier bucket, late or missing reports,
// and equal results with and without overlap.
#include "parallel/grad_sync.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moe/ops/ops.h"

namespace sb {
namespace {

struct Log {
  std::vector<std::string> events;  // "start <group> <numel>", "wait <group>", "sync <group>"
};

class RecordingCommunicator : public Communicator {
 public:
  RecordingCommunicator(std::string name, int size, int ep, Log* log)
      : name_(std::move(name)), size_(size), ep_(ep), log_(log) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  void AllReduceSum(const Tensor& buf) override {
    log_->events.push_back("sync " + name_);
    ops::Scale(buf, size_);
  }
  std::unique_ptr<PendingCollective> AllReduceSumAsync(const Tensor& buf) override {
    log_->events.push_back("start " + name_ + " " + std::to_string(buf.numel()));
    return std::make_unique<Pending>(this, buf);
  }
  void AllToAllV(const Tensor&, const std::vector<int64_t>&, const Tensor&,
                 const std::vector<int64_t>&) override {
    FAIL() << "unexpected AllToAllV";
  }
  void AllGather(const Tensor&, const Tensor&) override { FAIL() << "unexpected AllGather"; }
  void AllGatherV(const Tensor&, const Tensor&, const std::vector<int64_t>&) override {
    FAIL() << "unexpected AllGatherV";
  }
  void ReduceScatterSum(const Tensor&, const Tensor&) override { FAIL() << "unexpected"; }
  void Broadcast(const Tensor&, int) override { FAIL() << "unexpected Broadcast"; }
  void Barrier() override {}
  // ProcessGrid splits the world into "ep" (ep members) and "edp" (size / ep).
  std::unique_ptr<Communicator> Split(int, int, const std::string& name) override {
    const int size = name == "ep" ? ep_ : size_ / ep_;
    return std::make_unique<RecordingCommunicator>(name, size, 1, log_);
  }

 private:
  class Pending : public PendingCollective {
   public:
    Pending(RecordingCommunicator* c, Tensor buf) : c_(c), buf_(std::move(buf)) {}
    ~Pending() override { Wait(); }
    void Wait() override {
      if (done_) return;
      done_ = true;
      c_->log_->events.push_back("wait " + c_->name_);
      ops::Scale(buf_, c_->size_);
    }
    bool Poll() override { return done_; }

   private:
    RecordingCommunicator* c_;
    Tensor buf_;
    bool done_ = false;
  };
  std::string name_;
  int size_, ep_;
  Log* log_;
};

// A small "model": replicated tensors and expert stacks, grads = index-coded.
struct Params {
  std::vector<Parameter> storage;
  std::vector<Parameter*> list;
  Params() {
    const std::vector<std::pair<int64_t, bool>> shapes = {
        {6, false}, {4, false}, {8, true}, {3, false}, {5, true}, {2, false}, {7, false}, {4, true}};
    storage.reserve(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      storage.push_back(MakeParameter("p" + std::to_string(i),
                                      shapes[i].second ? ParamKind::kExpert : ParamKind::kWeight,
                                      {shapes[i].first}, DType::kF64, Device::kCpu));
    }
    for (Parameter& p : storage) list.push_back(&p);
    Reset();
  }
  void Reset() {
    for (size_t i = 0; i < storage.size(); ++i) {
      double* g = storage[i].grad.data<double>();
      for (int64_t k = 0; k < storage[i].grad.numel(); ++k) g[k] = i * 100.0 + k;
    }
  }
};

// World 4, ep 2: replicated tensors summed over 4 ranks, expert stacks over 2.
struct Fixture {
  Log log;
  RecordingCommunicator world{"world", 4, 2, &log};
  std::unique_ptr<ProcessGrid> grid;
  Params params;
  Fixture() { grid = std::move(*ProcessGrid::Create(world, 2)); }
};

void ExpectSummed(const Params& params) {
  for (size_t i = 0; i < params.storage.size(); ++i) {
    const double n = params.storage[i].is_expert() ? 2 : 4;
    const std::vector<double> g = params.storage[i].grad.ToDoubles();
    for (size_t k = 0; k < g.size(); ++k) ASSERT_EQ(g[k], n * (i * 100.0 + k)) << "p" << i;
  }
}

// Limit 10 doubles. Reverse order p7 .. p0 fills one open bucket per group:
//   world: {p6, p5} (9; p3 would make 12) | {p3, p1} (7) | {p0} (6)
//   edp:   {p7, p4} (9; p2 would make 17) | {p2} (8)
// numbered as they close: 0 = {p6, p5}, 1 = {p7, p4}, 2 = {p3, p1}, then at
// the end 3 = {p0} (world first), 4 = {p2}.
constexpr int64_t kBucketBytes = 10 * 8;
const std::vector<std::string> kStartsInOrder = {"start world 9", "start edp 9", "start world 7",
                                                 "start world 6", "start edp 8"};
const std::vector<std::string> kWaitsInOrder = {"wait world", "wait edp", "wait world",
                                                "wait world", "wait edp"};

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(GradSync, BucketsInReverseOrderBySizeAndGroup) {
  Fixture f;
  GradSync sync(f.params.list, *f.grid, kBucketBytes);
  const std::vector<int> expected = {3, 2, 4, 2, 1, 0, 0, 1};  // bucket of p0 .. p7
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(sync.BucketOf(f.params.list[i]), expected[i]) << "p" << i;
  EXPECT_EQ(sync.num_buckets(), 5);
  sync.Sync();
  ExpectSummed(f.params);
  EXPECT_EQ(f.log.events, (std::vector<std::string>{"sync world", "sync edp", "sync world",
                                                    "sync world", "sync edp"}));
}

TEST(GradSync, OverlapStartsEachBucketWhenItsLastTensorIsReady) {
  Fixture f;
  GradSync sync(f.params.list, *f.grid, kBucketBytes);
  sync.BeginOverlap();
  // Backward finishes p7 first, p0 last (one report per tensor). Bucket 0
  // starts at p5, bucket 1 at p4, bucket 2 at p1; bucket 4 is complete at p2
  // but waits for bucket 3 (p0).
  std::vector<size_t> started;
  for (int i = 7; i >= 0; --i) {
    sync.GradientsReady({f.params.list[i]});
    started.push_back(f.log.events.size());
  }
  EXPECT_EQ(started, (std::vector<size_t>{0, 0, 1, 2, 2, 2, 3, 5}))
      << ::testing::PrintToString(f.log.events);
  EXPECT_EQ(sync.started_early(), 5);
  sync.Sync();
  ExpectSummed(f.params);
  EXPECT_EQ(f.log.events, Concat(kStartsInOrder, kWaitsInOrder));
}

TEST(GradSync, OverlapKeepsBucketOrderWhateverTheReportOrder) {
  Fixture f;
  GradSync sync(f.params.list, *f.grid, kBucketBytes);
  sync.BeginOverlap();
  sync.GradientsReady({f.params.list[0]});  // bucket 3 complete, 0-2 not: nothing starts
  EXPECT_TRUE(f.log.events.empty());
  sync.GradientsReady({f.params.list[6], f.params.list[5]});  // bucket 0 starts
  EXPECT_EQ(f.log.events, (std::vector<std::string>{"start world 9"}));
  sync.GradientsReady({f.params.list[1], f.params.list[2], f.params.list[3]});
  EXPECT_EQ(f.log.events.size(), 1u) << "buckets 2-4 are complete but bucket 1 is not";
  EXPECT_EQ(sync.started_early(), 1);
  // p7 and p4 are never reported: Sync starts buckets 1-4 in order.
  sync.Sync();
  EXPECT_EQ(f.log.events, Concat(kStartsInOrder, kWaitsInOrder));
  ExpectSummed(f.params);
}

TEST(GradSync, OverlapEqualsBlockingAndIgnoresReportsOutsideOverlap) {
  Fixture a, b;
  GradSync blocking(a.params.list, *a.grid, kBucketBytes);
  GradSync overlapped(b.params.list, *b.grid, kBucketBytes);
  for (int step = 0; step < 2; ++step) {
    a.params.Reset();
    b.params.Reset();
    const size_t before = b.log.events.size();
    overlapped.GradientsReady(b.params.list);  // an earlier micro-batch: ignored
    EXPECT_EQ(b.log.events.size(), before);
    overlapped.BeginOverlap();
    for (int i = 7; i >= 1; i -= 2) {
      overlapped.GradientsReady({b.params.list[i], b.params.list[i - 1]});
    }
    overlapped.Sync();
    blocking.Sync();
    for (size_t i = 0; i < a.params.storage.size(); ++i)
      EXPECT_EQ(a.params.storage[i].grad.ToDoubles(), b.params.storage[i].grad.ToDoubles());
    ExpectSummed(b.params);
  }
}

TEST(GradSync, GroupsOfOneNeedNoBucket) {
  Log log;
  RecordingCommunicator world("world", 2, 2, &log);  // ep = world: EDP groups of one
  auto grid = std::move(*ProcessGrid::Create(world, 2));
  Params params;
  GradSync sync(params.list, *grid, 1 << 20);
  EXPECT_EQ(sync.num_buckets(), 1);
  for (Parameter* p : params.list) EXPECT_EQ(sync.BucketOf(p) < 0, p->is_expert()) << p->name;
}

}  // namespace
}  // namespace sb
