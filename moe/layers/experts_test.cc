// Experts on several threads (whole experts side by side, each with
// single-threaded GEMMs) compute the same bits as on one thread: outputs,
// input gradients and every weight gradient, forward and backward, f32 and
// f64, with uneven and empty experts.
#include "moe/layers/experts.h"

#include <omp.h>

#include "gtest/gtest.h"
#include "moe/ops/ops.h"
#include "tests/testing/grad_check.h"

namespace sb {
namespace {

struct Outcome {
  std::vector<double> y, dx, grads;
};

Outcome RunExperts(DType dtype, int threads) {
  const std::vector<int64_t> rows = {5, 2, 0, 7, 3, 9, 1, 4};  // 31 rows, one expert empty
  const int64_t n = 31, d = 12, f = 20;
  Experts experts("model.layers.0.block_sparse_moe.experts.", 8, 0, d, f, dtype, Device::kCpu);
  uint64_t seed = 1;
  for (Parameter* p : {&experts.w1, &experts.w3, &experts.w2}) {
    ops::Copy(testing::RandomTensor(p->value.shape(), seed++, 0.3, dtype), p->value);
  }
  const Tensor x = testing::RandomTensor({n, d}, 11, 1.0, dtype);
  const Tensor dy = testing::RandomTensor({n, d}, 12, 1.0, dtype);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  Outcome out;
  out.y = experts.Forward(x, rows).ToDoubles();
  out.dx = experts.Backward(dy).ToDoubles();
  omp_set_num_threads(saved);
  for (Parameter* p : {&experts.w1, &experts.w3, &experts.w2}) {
    for (double g : p->grad.ToDoubles()) out.grads.push_back(g);
  }
  return out;
}

void ExpectBitwiseEqual(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i], b[i]) << what << " differs first at " << i;
  }
}

TEST(Experts, SameBitsOnOneAndSeveralThreads) {
  for (DType dtype : {DType::kF32, DType::kF64}) {
    const Outcome one = RunExperts(dtype, 1);
    for (int threads : {2, 3}) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + ", threads " + std::to_string(threads));
      const Outcome many = RunExperts(dtype, threads);
      ExpectBitwiseEqual(one.y, many.y, "y");
      ExpectBitwiseEqual(one.dx, many.dx, "dx");
      ExpectBitwiseEqual(one.grads, many.grads, "weight gradients");
    }
  }
}

}  // namespace
}  // namespace sb
