// All-to-all-v bus bandwidth of the MPI communicator, nccl-tests style
// (alltoall_perf): every rank sends size/n bytes to every rank (itself
// included), f32 rows of 1 KiB. Definitions (nccl-tests PERFORMANCE.md):
//   size   = bytes of one rank's send buffer
//   time   = mean over ranks of the mean time of one call, in the median
//            of 3 repetitions of `iters` calls (the machine may be shared)
//   algBw  = size / time
//   busBw  = algBw * (n - 1) / n   (the share that crosses between ranks)
// Validates the received values before timing each size (crafted inputs,
// exact), and prints a baseline measured in the same run: one rank's
// memcpy of the same size (the shared-memory ceiling on one node).
// --ranks_per_node G > 0 also times the hierarchical all-to-all
// (parallel/hierarchical_all_to_all.h) over nodes of G consecutive ranks,
// interleaved with the flat one, and validates it the same way.
//   mpirun -np 4 build/benchmarks/alltoallv_bench [--min_bytes 4096]
//       [--max_bytes 67108864] [--factor 4] [--bytes_per_rep 268435456]
//       [--ranks_per_node G]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "moe/ops/ops.h"
#include "parallel/hierarchical_all_to_all.h"
#include "parallel/runtime.h"

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kRowFloats = 256;  // 1 KiB rows

struct Args {
  int64_t min_bytes = 4096, max_bytes = 64 << 20, factor = 4;
  double bytes_per_rep = 1 << 28;  // iterations per repetition = this / size (5..1000)
  int ranks_per_node = 0;          // > 0: also the hierarchical all-to-all
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--min_bytes") a.min_bytes = static_cast<int64_t>(v);
    else if (k == "--max_bytes") a.max_bytes = static_cast<int64_t>(v);
    else if (k == "--factor") a.factor = static_cast<int64_t>(v);
    else if (k == "--bytes_per_rep") a.bytes_per_rep = v;
    else if (k == "--ranks_per_node") a.ranks_per_node = static_cast<int>(v);
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); std::exit(2); }
  }
  return a;
}

// Value of element i of the block that `from` sends to `to` (exact in f32).
float Code(int from, int to, int64_t i) { return float((from * 64 + to) * 4096 + i % 4096); }

}  // namespace

int main(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  auto runtime = sb::Runtime::Start();
  if (!runtime.ok()) return 1;
  sb::Runtime& rt = **runtime;
  sb::Communicator& world = rt.world();
  const int n = world.size(), rank = world.rank();
  std::unique_ptr<sb::HierarchicalCommunicator> hier;
  if (args.ranks_per_node > 0) {
    auto h = sb::HierarchicalCommunicator::Create(world, args.ranks_per_node);
    if (!h.ok()) {
      if (rt.is_chief()) std::fprintf(stderr, "%s\n", std::string(h.status().message()).c_str());
      return 2;
    }
    hier = std::move(*h);
  }
  if (rt.is_chief()) {
    std::printf("# all-to-all-v over MPI, %d ranks on %d host(s); f32 rows of %lld bytes\n", n,
                rt.info().world_size / rt.info().local_size, (long long)(kRowFloats * 4));
    if (hier) {
      std::printf("# hier: hierarchical all-to-all over %d nodes x %d ranks (busBw by the same "
                  "definition)\n", hier->nodes(), hier->ranks_per_node());
    }
    std::printf("# %12s %10s %10s %10s %10s %8s %14s%s\n", "size(B)", "time(us)", "algBw(GB/s)",
                "busBw(GB/s)", "iters", "#wrong", "memcpy(GB/s)",
                hier ? "  hier(us) hier_busBw" : "");
  }
  for (int64_t size = args.min_bytes; size <= args.max_bytes; size *= args.factor) {
    // Rows per peer: at least one.
    const int64_t rows_per_peer = std::max<int64_t>(1, size / (4 * kRowFloats * n));
    const int64_t rows = rows_per_peer * n, bytes = rows * kRowFloats * 4;
    sb::Tensor send = sb::Tensor::Empty({rows, kRowFloats});
    sb::Tensor recv = sb::Tensor::Zeros({rows, kRowFloats});
    const int64_t block = rows_per_peer * kRowFloats;
    float* s = send.data<float>();
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < block; ++i) s[p * block + i] = Code(rank, p, i);
    const std::vector<int64_t> counts(n, rows_per_peer);

    // Validate first (flat, and hierarchical when asked).
    std::vector<sb::Communicator*> comms = {&world};
    if (hier) comms.push_back(hier.get());
    int64_t wrong = 0;
    for (sb::Communicator* comm : comms) {
      sb::ops::Fill(recv, 0.0);
      comm->AllToAllV(send, counts, recv, counts);
      const float* r = recv.data<float>();
      for (int p = 0; p < n; ++p)
        for (int64_t i = 0; i < block; ++i) wrong += r[p * block + i] != Code(p, rank, i);
    }

    const int iters =
        static_cast<int>(std::max(5.0, std::min(1000.0, args.bytes_per_rep / double(bytes))));
    // Repetitions interleave the variants (the machine may be shared).
    std::vector<std::vector<double>> reps(comms.size());
    for (int rep = 0; rep < 3; ++rep) {
      for (size_t c = 0; c < comms.size(); ++c) {
        world.Barrier();
        const double t0 = Now();
        for (int it = 0; it < iters; ++it) comms[c]->AllToAllV(send, counts, recv, counts);
        reps[c].push_back(sb::AllReduceSum(world, {(Now() - t0) / iters})[0] / n);
      }
    }
    for (auto& r : reps) std::sort(r.begin(), r.end());
    const double time = reps[0][1];
    const double hier_time = hier ? reps[1][1] : 0;
    const std::vector<double> totals = sb::AllReduceSum(world, {double(wrong)});

    // Baseline: this rank alone copying the same bytes (others wait).
    double memcpy_bw = 0;
    if (rt.is_chief()) {
      std::vector<char> a(bytes, 1), b(bytes);
      const int copies = std::max(3, static_cast<int>(2e8 / bytes));
      const double c0 = Now();
      for (int i = 0; i < copies; ++i) {
        a[i % bytes] = static_cast<char>(i);
        std::memcpy(b.data(), a.data(), bytes);
      }
      memcpy_bw = bytes / ((Now() - c0) / copies) / 1e9;
    }
    world.Barrier();
    if (rt.is_chief()) {
      const double alg = bytes / time / 1e9;
      std::printf("  %12lld %10.1f %10.3f %10.3f %10d %8lld %14.2f", (long long)bytes, time * 1e6,
                  alg, alg * (n - 1) / n, iters, (long long)totals[0], memcpy_bw);
      if (hier) {
        std::printf(" %9.1f %11.3f", hier_time * 1e6, bytes / hier_time / 1e9 * (n - 1) / n);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  return 0;
}
