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
//   mpirun -np 4 build/benchmarks/alltoallv_bench [--min_bytes 4096]
//       [--max_bytes 67108864] [--factor 4] [--bytes_per_rep 268435456]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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
  if (rt.is_chief()) {
    std::printf("# all-to-all-v over MPI, %d ranks on %d host(s); f32 rows of %lld bytes\n", n,
                rt.info().world_size / rt.info().local_size, (long long)(kRowFloats * 4));
    std::printf("# %12s %10s %10s %10s %10s %8s %14s\n", "size(B)", "time(us)", "algBw(GB/s)",
                "busBw(GB/s)", "iters", "#wrong", "memcpy(GB/s)");
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

    // Validate first.
    world.AllToAllV(send, counts, recv, counts);
    int64_t wrong = 0;
    const float* r = recv.data<float>();
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < block; ++i) wrong += r[p * block + i] != Code(p, rank, i);

    const int iters =
        static_cast<int>(std::max(5.0, std::min(1000.0, args.bytes_per_rep / double(bytes))));
    std::vector<double> reps;
    for (int rep = 0; rep < 3; ++rep) {
      world.Barrier();
      const double t0 = Now();
      for (int it = 0; it < iters; ++it) world.AllToAllV(send, counts, recv, counts);
      reps.push_back(sb::AllReduceSum(world, {(Now() - t0) / iters})[0] / n);
    }
    std::sort(reps.begin(), reps.end());
    const double time = reps[1];
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
      std::printf("  %12lld %10.1f %10.3f %10.3f %10d %8lld %14.2f\n", (long long)bytes, time * 1e6,
                  alg, alg * (n - 1) / n, iters, (long long)totals[0], memcpy_bw);
      std::fflush(stdout);
    }
  }
  return 0;
}
