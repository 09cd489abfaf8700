// The all-to-all token dispatcher over MPI, with the world as one
// expert-parallel group (ep = world size):
//  * Dispatch lays rows out local-expert-major with exact, crafted values,
//    and Combine returns every row to where it came from (identity experts);
//  * Combine is the transpose of Dispatch (<Dispatch x, y> = <x, Combine y>
//    over all ranks), which is what the MoE backward relies on;
//  * an MoE layer gives the same output, input gradient, router statistics
//    and gradients at EP = world as at EP = 1, with capacity dropping and
//    dropless, jitter on (f64, tolerance from the magnitudes).
// Run by ctest through mpirun.
#include <gtest/gtest.h>

#include <cmath>

#include "moe/core/rng.h"
#include "moe/layers/moe_layer.h"
#include "moe/ops/ops.h"
#include "optim/test_util.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/pipelined_experts.h"
#include "tests/testing/crafted_rows.h"
#include "tests/testing/mpi_test_main.h"

namespace sb {
namespace {

using optim_test::AllClose;

Communicator& World() { return testing::TestRuntime().world(); }

int64_t Rows(int rank, int expert) { return (rank + 3 * expert) % 4; }  // includes zeros
double Code(int rank, int expert, int64_t k, int col) {
  return ((rank * 64.0 + expert) * 16 + k) * 8 + col;
}

TEST(AllToAllDispatcher, DispatchLayoutAndCombineIdentity) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), D = 5;
  for (int L : {1, 2, 3}) {
    const int E = L * W;
    AllToAllDispatcher d(c, E);
    std::vector<int64_t> counts(E);
    std::vector<double> src_values;
    for (int e = 0; e < E; ++e) {
      counts[e] = Rows(r, e);
      for (int64_t k = 0; k < counts[e]; ++k)
        for (int col = 0; col < D; ++col) src_values.push_back(Code(r, e, k, col));
    }
    const DispatchPlan plan = d.Plan(counts);
    for (int s = 0; s < W; ++s)
      for (int l = 0; l < L; ++l) ASSERT_EQ(plan.recv_rows[s * L + l], Rows(s, r * L + l));
    Tensor src = Tensor::FromVector(src_values, {plan.total_send, D});
    Tensor dst = Tensor::Zeros({plan.total_recv, D}, DType::kF64);
    d.Dispatch(plan, src, dst);
    // Local-expert-major: expert l's rows from source 0, then 1, ...
    const std::vector<double> got = dst.ToDoubles();
    size_t i = 0;
    for (int l = 0; l < L; ++l) {
      int64_t rows = 0;
      for (int s = 0; s < W; ++s)
        for (int64_t k = 0; k < Rows(s, r * L + l); ++k, ++rows)
          for (int col = 0; col < D; ++col, ++i)
            ASSERT_EQ(got[i], Code(s, r * L + l, k, col)) << "L " << L << " expert " << l;
      EXPECT_EQ(plan.rows_per_local_expert[l], rows);
    }
    Tensor back = Tensor::Zeros({plan.total_send, D}, DType::kF64);
    d.Combine(plan, dst, back);
    EXPECT_EQ(back.ToDoubles(), src_values) << "L " << L;
  }
}

Tensor Random(const Shape& shape, uint64_t key, DType dtype = DType::kF64) {
  Tensor t = Tensor::Empty(shape, DType::kF64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = NormalAt(key, i);
  if (dtype == DType::kF64) return t;
  Tensor out = Tensor::Empty(shape, dtype);
  ops::Convert(t, out);
  return out;
}

// {sum a_i b_i, sum |a_i b_i|}
std::vector<double> Dot(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.ToDoubles(), y = b.ToDoubles();
  double s = 0, abs = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    s += x[i] * y[i];
    abs += std::fabs(x[i] * y[i]);
  }
  return {s, abs};
}

constexpr double kEps = 2.220446049250313e-16;  // f64 machine epsilon

// Tolerance for f64 values computed in another order: a few hundred ulps of
// the largest magnitude (the sums here have tens of terms).
double Tol(const std::vector<double>& expected) {
  double scale = 0;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  return 256 * kEps * (scale + 1e-300);
}

TEST(AllToAllDispatcher, CombineIsTheTransposeOfDispatch) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), L = 2, E = L * W, D = 4;
  AllToAllDispatcher d(c, E);
  std::vector<int64_t> counts(E);
  for (int e = 0; e < E; ++e) counts[e] = Rows(r, e) + 1;
  const DispatchPlan plan = d.Plan(counts);
  Tensor x = Random({plan.total_send, D}, 100 + r), y = Random({plan.total_recv, D}, 200 + r);
  Tensor dx = Tensor::Zeros({plan.total_recv, D}, DType::kF64);
  Tensor cy = Tensor::Zeros({plan.total_send, D}, DType::kF64);
  d.Dispatch(plan, x, dx);
  d.Combine(plan, y, cy);
  const std::vector<double> a = Dot(dx, y), b = Dot(x, cy);
  const std::vector<double> dots = AllReduceSum(c, {a[0], b[0], a[1], double(x.numel())});
  // The same products summed in another order: |error| <= n eps sum |terms|.
  EXPECT_NEAR(dots[0], dots[1], 2 * dots[3] * kEps * dots[2]);
  EXPECT_GT(dots[2], 0.0);
}

// Rows [first, first + rows) of src (a view).
Tensor Slice(const Tensor& src, int64_t first, int64_t rows) { return src.Rows(first, first + rows); }

void ExpectMoeLayoutInvariant(double capacity_factor) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), L = 2, E = L * W;
  const int64_t T = 12, D = 8, F = 6;
  RouterOptions o;
  o.num_experts = E;
  o.top_k = 2;
  o.capacity_factor_train = capacity_factor;
  o.min_capacity = 1;
  o.jitter_eps = 0.1;
  o.aux_loss_coef = 0.3;
  o.z_loss_coef = 0.2;
  LocalDispatcher local;
  AllToAllDispatcher a2a(c, E);
  MoeLayer reference("model.layers.0.block_sparse_moe.", 0, D, F, o, &local, DType::kF64, Device::kCpu);
  MoeLayer sharded("model.layers.0.block_sparse_moe.", 0, D, F, o, &a2a, DType::kF64, Device::kCpu);
  // Init keyed by (seed, name, global expert id): same router, same experts.
  for (MoeLayer* m : {&reference, &sharded})
    for (Parameter* p : m->Parameters()) InitNormal(*p, 7, 0.5);

  const StepContext ctx{true, 11, 3, r};
  Tensor x = Random({T, D}, 300 + r), dy = Random({T, D}, 400 + r);
  const Tensor y_ref = reference.Forward(x, ctx);
  const Tensor y = sharded.Forward(x, ctx);
  EXPECT_EQ(sharded.stats().kept, reference.stats().kept);
  EXPECT_DOUBLE_EQ(sharded.stats().aux_loss, reference.stats().aux_loss);
  EXPECT_DOUBLE_EQ(sharded.stats().z_loss, reference.stats().z_loss);
  if (capacity_factor > 0) {
    EXPECT_GT(reference.stats().dropped_fraction, 0.0) << "the capacity should drop choices";
  }
  const std::vector<double> yr = y_ref.ToDoubles();
  EXPECT_TRUE(AllClose(yr, y.ToDoubles(), Tol(yr))) << "output";

  const Tensor dx_ref = reference.Backward(dy, 0.5);
  const Tensor dx = sharded.Backward(dy, 0.5);
  const std::vector<double> dxr = dx_ref.ToDoubles();
  EXPECT_TRUE(AllClose(dxr, dx.ToDoubles(), Tol(dxr))) << "input gradient";
  // Router: replicated, gradient from this rank's tokens in both.
  const std::vector<double> gr = reference.router().weight.grad.ToDoubles();
  EXPECT_TRUE(AllClose(gr, sharded.router().weight.grad.ToDoubles(), Tol(gr))) << "router gradient";
  // Experts: the shard's gradient sums every rank's tokens; the reference's
  // summed over the world must match it on this rank's slice.
  const std::vector<Parameter*> ref_params = reference.Parameters(), params = sharded.Parameters();
  for (size_t i = 1; i < params.size(); ++i) {
    Tensor total = Tensor::Empty(ref_params[i]->grad.shape(), DType::kF64);
    ops::Copy(ref_params[i]->grad, total);
    c.AllReduceSum(total);
    const std::vector<double> expected = Slice(total, r * L, L).ToDoubles();
    EXPECT_TRUE(AllClose(expected, params[i]->grad.ToDoubles(), Tol(expected))) << params[i]->name;
  }
}

// Pipelined chunks (dispatch of chunk c+1 in flight while chunk c computes)
// give exactly the unchunked Dispatch -> experts -> Combine, for chunk
// counts that leave some chunks of some blocks empty. The "experts" scale
// each row by its global expert id + 1, row by row, so equality is exact.
TEST(PipelinedExperts, EqualsUnchunkedDispatchComputeCombine) {
  Communicator& c = World();
  const int W = c.size(), r = c.rank(), D = 3;
  for (int L : {1, 2}) {
    const int E = L * W;
    // 0..4 rows per expert: fewer rows than chunks in places.
    const testing::CraftedExchange input =
        testing::CraftPerExpert(E, r, D, [](int rank, int e) { return (rank + 3 * e) % 5; });
    const std::vector<int64_t>& counts = input.send_rows;
    const std::vector<double>& values = input.values;
    auto scale_by_expert = [&](const Tensor& x, const std::vector<int64_t>& rows_per_local,
                               const Tensor& y) {
      ops::Copy(x, y);
      int64_t at = 0;
      for (int l = 0; l < L; ++l) {
        if (rows_per_local[l] > 0) ops::Scale(y.Rows(at, at + rows_per_local[l]), r * L + l + 1);
        at += rows_per_local[l];
      }
    };
    AllToAllDispatcher d(c, E);
    const DispatchPlan plan = d.Plan(counts);
    Tensor src = Tensor::FromVector(values, {plan.total_send, D});
    Tensor local = Tensor::Zeros({plan.total_recv, D}, DType::kF64);
    Tensor y_local = Tensor::Zeros({plan.total_recv, D}, DType::kF64);
    Tensor expected = Tensor::Zeros({plan.total_send, D}, DType::kF64);
    d.Dispatch(plan, src, local);
    scale_by_expert(local, plan.rows_per_local_expert, y_local);
    d.Combine(plan, y_local, expected);
    // Every row came back scaled by its own expert's id + 1.
    const std::vector<double> e_values = expected.ToDoubles();
    for (int64_t row = 0, e = 0, k = 0; row < plan.total_send; ++row, ++k) {
      while (k >= counts[e]) {
        k = 0;
        ++e;
      }
      ASSERT_EQ(e_values[row * D], testing::CraftedCode(r, e, k, 0) * (e + 1)) << "row " << row;
    }
    PipelinedExperts pipelined(c, E);
    for (int chunks : {1, 2, 3, 5}) {
      Tensor got = Tensor::Zeros({plan.total_send, D}, DType::kF64);
      pipelined.Run(plan, src, chunks, scale_by_expert, got);
      ASSERT_EQ(got.ToDoubles(), e_values) << "L " << L << ", " << chunks << " chunks";
    }
  }
}

TEST(MoeLayerLayout, EpWorldMatchesEpOneWithCapacityDrops) { ExpectMoeLayoutInvariant(1.0); }
TEST(MoeLayerLayout, EpWorldMatchesEpOneDropless) { ExpectMoeLayoutInvariant(0.0); }

}  // namespace
}  // namespace sb
