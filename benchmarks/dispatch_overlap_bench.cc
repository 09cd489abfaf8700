// Does pipelining the MoE all-to-all with expert compute pay here? Times
// one MoE layer's forward exchange on an EP group of all ranks:
//   serial:    Dispatch -> Experts::Forward (SwiGLU GEMMs) -> Combine
//   pipelined: PipelinedExperts with C chunks (parallel/pipelined_experts.h)
// plus the two parts alone (dispatch + combine without compute; compute
// without exchange) so that the ideal overlap, max(comm, compute), can be
// compared with what the pipeline achieves. Every token picks top_k
// distinct experts uniformly (balanced load).
// Validates first: the pipelined output equals the serial one within f32
// GEMM rounding (rows are independent; only the GEMM blocking differs).
// Times: the slowest rank's time per call (a layer waits for its EP group),
// median of `rounds` rounds of `iters` calls, variants interleaved.
//   mpirun -np 2 build/benchmarks/dispatch_overlap_bench [--tokens 2048]
//       [--d_model 512] [--ffn 1024] [--experts_per_rank 2] [--top_k 2]
//       [--iters 3] [--rounds 7] [--chunks 2,4]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "moe/core/rng.h"
#include "moe/layers/experts.h"
#include "moe/ops/ops.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/pipelined_experts.h"
#include "parallel/runtime.h"

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Args {
  int64_t tokens = 2048, d_model = 512, ffn = 1024;
  int experts_per_rank = 2, top_k = 2, iters = 3, rounds = 7;
  std::vector<int> chunks = {2, 4};
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    int64_t n = 0;
    if (k == "--chunks") {
      a.chunks.clear();
      for (absl::string_view c : absl::StrSplit(v, ',')) {
        int x = 0;
        if (absl::SimpleAtoi(c, &x) && x >= 1) a.chunks.push_back(x);
      }
      continue;
    }
    if (!absl::SimpleAtoi(v, &n) || n < 1) {
      std::fprintf(stderr, "bad value %s for %s\n", v.c_str(), k.c_str());
      std::exit(2);
    }
    if (k == "--tokens") a.tokens = n;
    else if (k == "--d_model") a.d_model = n;
    else if (k == "--ffn") a.ffn = n;
    else if (k == "--experts_per_rank") a.experts_per_rank = static_cast<int>(n);
    else if (k == "--top_k") a.top_k = static_cast<int>(n);
    else if (k == "--iters") a.iters = static_cast<int>(n);
    else if (k == "--rounds") a.rounds = static_cast<int>(n);
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); std::exit(2); }
  }
  return a;
}

double MaxOverRanks(sb::Communicator& world, double mine) {
  sb::Tensor t = sb::Tensor::FromVector(std::vector<double>{mine}, {1});
  sb::Tensor all = sb::Tensor::Zeros({world.size()}, sb::DType::kF64);
  world.AllGather(t, all);
  const std::vector<double> v = all.ToDoubles();
  return *std::max_element(v.begin(), v.end());
}

// Times every variant in interleaved rounds (the machine may be shared:
// drifting load then biases no variant): per round and variant the slowest
// rank's mean time per call; returns the median over `rounds` per variant.
std::vector<double> TimeInterleaved(sb::Communicator& world, int iters, int rounds,
                                    const std::vector<std::function<void()>>& variants) {
  for (const auto& call : variants) call();  // warm-up (buffers grow)
  std::vector<std::vector<double>> times(variants.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t v = 0; v < variants.size(); ++v) {
      world.Barrier();
      const double t0 = Now();
      for (int i = 0; i < iters; ++i) variants[v]();
      times[v].push_back(MaxOverRanks(world, (Now() - t0) / iters));
    }
  }
  std::vector<double> medians;
  for (std::vector<double>& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  auto runtime = sb::Runtime::Start();
  if (!runtime.ok()) return 1;
  sb::Runtime& rt = **runtime;
  sb::Communicator& world = rt.world();
  const int W = world.size(), r = world.rank(), L = args.experts_per_rank, E = L * W;
  const int64_t D = args.d_model, F = args.ffn;
  if (args.top_k > E) {
    std::fprintf(stderr, "top_k %d > %d experts\n", args.top_k, E);
    return 2;
  }
  // Routing: each token's top_k distinct experts, uniform; rows grouped by expert.
  std::vector<int64_t> counts(E, 0);
  uint64_t x = 0x9E3779B97F4A7C15ULL ^ static_cast<uint64_t>(r);
  for (int64_t t = 0; t < args.tokens; ++t) {
    std::vector<int> picked;
    while (static_cast<int>(picked.size()) < args.top_k) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const int e = static_cast<int>((x >> 33) % E);
      if (std::find(picked.begin(), picked.end(), e) == picked.end()) picked.push_back(e);
    }
    for (int e : picked) ++counts[e];
  }
  sb::AllToAllDispatcher dispatcher(world, E);
  const sb::DispatchPlan plan = dispatcher.Plan(counts);
  sb::Tensor src = sb::Tensor::Empty({plan.total_send, D});
  float* s = src.data<float>();
  for (int64_t i = 0; i < src.numel(); ++i) s[i] = static_cast<float>(sb::NormalAt(100 + r, i));
  sb::Experts experts("bench.experts.", L, int64_t{r} * L, D, F, sb::DType::kF32, sb::Device::kCpu);
  for (sb::Parameter* p : {&experts.w1, &experts.w3, &experts.w2}) sb::InitNormal(*p, 5, 0.05);
  auto run_experts = [&](const sb::Tensor& in, const std::vector<int64_t>& rows,
                         const sb::Tensor& out) { sb::ops::Copy(experts.Forward(in, rows), out); };

  sb::Tensor local = sb::Tensor::Empty({plan.total_recv, D});
  sb::Tensor y_local = sb::Tensor::Empty({plan.total_recv, D});
  sb::Tensor serial_out = sb::Tensor::Zeros({plan.total_send, D});
  auto serial = [&] {
    dispatcher.Dispatch(plan, src, local);
    run_experts(local, plan.rows_per_local_expert, y_local);
    dispatcher.Combine(plan, y_local, serial_out);
  };
  auto comm_only = [&] {
    dispatcher.Dispatch(plan, src, local);
    dispatcher.Combine(plan, local, serial_out);
  };
  auto compute_only = [&] { run_experts(local, plan.rows_per_local_expert, y_local); };

  // Validate: pipelined == serial within f32 GEMM rounding.
  serial();
  const std::vector<double> expected = serial_out.ToDoubles();
  double scale = 0;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  sb::PipelinedExperts pipelined(world, E);
  sb::Tensor piped_out = sb::Tensor::Zeros({plan.total_send, D});
  double worst = 0;
  for (int c : args.chunks) {
    pipelined.Run(plan, src, c, run_experts, piped_out);
    const std::vector<double> got = piped_out.ToDoubles();
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - expected[i]));
  }
  // f32 dot products of length F (and D) in another blocking: |err| <~ sqrt(F) eps * scale.
  const double tol = 8 * std::sqrt(double(F + D)) * 1.2e-7 * (scale + 1e-30);
  const double worst_all = MaxOverRanks(world, worst);
  if (rt.is_chief()) {
    std::printf("# MoE forward exchange, %d ranks (EP = world), %lld tokens/rank, top-%d of %d "
                "experts, d_model %lld, expert ffn %lld, f32; rows sent per rank %lld\n",
                W, (long long)args.tokens, args.top_k, E, (long long)D, (long long)F,
                (long long)plan.total_send);
    std::printf("# validation: max |pipelined - serial| = %.3g (tolerance %.3g): %s\n", worst_all,
                tol, worst_all <= tol ? "ok" : "MISMATCH");
  }
  if (!(worst_all <= tol)) return 1;

  std::vector<std::function<void()>> variants = {serial, comm_only, compute_only};
  for (int c : args.chunks) {
    variants.push_back([&, c] { pipelined.Run(plan, src, c, run_experts, piped_out); });
  }
  const std::vector<double> t = TimeInterleaved(world, args.iters, args.rounds, variants);
  if (rt.is_chief()) {
    const double t_serial = t[0], t_comm = t[1], t_compute = t[2];
    std::printf("# median of %d interleaved rounds of %d calls; slowest rank\n", args.rounds,
                args.iters);
    std::printf("%-26s %10s %10s\n", "variant", "ms/call", "vs serial");
    std::printf("%-26s %10.2f %10.3f\n", "serial", t_serial * 1e3, 1.0);
    std::printf("%-26s %10.2f %10s\n", "  dispatch+combine only", t_comm * 1e3, "-");
    std::printf("%-26s %10.2f %10s\n", "  experts only", t_compute * 1e3, "-");
    std::printf("%-26s %10.2f %10.3f\n", "ideal overlap (max)", std::max(t_comm, t_compute) * 1e3,
                std::max(t_comm, t_compute) / t_serial);
    for (size_t i = 0; i < args.chunks.size(); ++i) {
      const std::string name = "pipelined, " + std::to_string(args.chunks[i]) + " chunks";
      std::printf("%-26s %10.2f %10.3f\n", name.c_str(), t[3 + i] * 1e3, t[3 + i] / t_serial);
    }
  }
  return 0;
}
