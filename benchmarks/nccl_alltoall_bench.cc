// All-to-all bus bandwidth over NCCL (built with CUDA; one rank per GPU):
// Switchboard's NcclCommunicator::AllToAllV against NCCL driven directly the
// way nccl-tests' alltoall_perf does (ncclGroupStart, ncclSend + ncclRecv
// of size/n bytes to and from every rank, ncclGroupEnd), on the same buffers,
// interleaved in the same run. Definitions are nccl-tests' (PERFORMANCE.md):
//   size  = bytes of one rank's send buffer; time = mean over ranks of the
//           time of one call (host timer around `iters` calls, stream
//           synchronised before and after), median of 5 repetitions;
//   algBw = size / time;  busBw = algBw * (n - 1) / n.
// Validates each size first (crafted values, exact). The target:
// Switchboard's busBw >= 90% of the direct loop's at equal sizes.
//   mpirun -np 8 --map-by ppr:8:node build/benchmarks/nccl_alltoall_bench
//       [--min_bytes 1048576] [--max_bytes 1073741824] [--factor 4] [--dtype bf16|f32]
// This machine has no GPU: compiled, never run here (docs/parallel.md).
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "moe/ops/ops.h"
#include "parallel/backend.h"
#include "parallel/nccl_communicator.h"

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Args {
  int64_t min_bytes = 1 << 20, max_bytes = int64_t{1} << 30, factor = 4;
  std::string dtype = "bf16";
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--min_bytes") a.min_bytes = std::atoll(v.c_str());
    else if (k == "--max_bytes") a.max_bytes = std::atoll(v.c_str());
    else if (k == "--factor") a.factor = std::atoll(v.c_str());
    else if (k == "--dtype") a.dtype = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); std::exit(2); }
  }
  if (a.dtype != "bf16" && a.dtype != "f32") {
    std::fprintf(stderr, "--dtype bf16|f32\n");
    std::exit(2);
  }
  return a;
}

// Element i of the block `from` sends to `to`: small integers, exact in bf16.
float Code(int from, int to, int64_t i) { return float((from * 7 + to * 3 + i) % 64); }

}  // namespace

int main(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  auto runtime = sb::Runtime::Start();
  if (!runtime.ok()) return 1;
  sb::Runtime& rt = **runtime;
  absl::StatusOr<int> device = sb::BindLocalDevice(rt);
  if (!rt.AllOk(device.ok())) {
    std::fprintf(stderr, "nccl_alltoall_bench [rank %d]: %s\n", rt.rank(),
                 device.ok() ? "another rank has no GPU" : std::string(device.status().message()).c_str());
    return 2;
  }
  auto created = sb::NcclCommunicator::Create(rt.world(), *device, rt.watchdog());
  if (!rt.AllOk(created.ok())) return 2;
  sb::NcclCommunicator& nccl = **created;
  const int n = nccl.size(), rank = nccl.rank();
  const sb::DType dt = args.dtype == "bf16" ? sb::DType::kBF16 : sb::DType::kF32;
  const ncclDataType_t nccl_type = dt == sb::DType::kBF16 ? ncclBfloat16 : ncclFloat32;
  const int64_t elem = static_cast<int64_t>(sb::DTypeSize(dt));
  const int64_t row = 1024 / elem;  // 1 KiB rows
  if (rt.is_chief()) {
    std::printf("# all-to-all over NCCL %d.%d, %d ranks, %s rows of 1 KiB\n", NCCL_MAJOR,
                NCCL_MINOR, n, args.dtype.c_str());
    std::printf("# %12s %9s %11s %11s %9s %11s %8s\n", "size(B)", "time(us)", "busBw(GB/s)",
                "direct(us)", "direct", "ratio", "#wrong");
  }
  for (int64_t size = args.min_bytes; size <= args.max_bytes; size *= args.factor) {
    const int64_t rows_per_peer = std::max<int64_t>(1, size / (1024 * n));
    const int64_t rows = rows_per_peer * n, bytes = rows * 1024;
    // Crafted send buffer on the host, in f32, converted to the dtype.
    sb::Tensor host = sb::Tensor::Empty({rows, row});
    float* h = host.data<float>();
    const int64_t block = rows_per_peer * row;
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < block; ++i) h[p * block + i] = Code(rank, p, i);
    sb::Tensor host_dt = sb::Tensor::Empty({rows, row}, dt);
    sb::ops::Convert(host, host_dt);
    sb::Tensor send = sb::Tensor::Empty({rows, row}, dt, sb::Device::kCuda);
    sb::Tensor recv = sb::Tensor::Zeros({rows, row}, dt, sb::Device::kCuda);
    sb::ops::Copy(host_dt, send);
    const std::vector<int64_t> counts(n, rows_per_peer);
    nccl.AllToAllV(send, counts, recv, counts);
    const std::vector<double> got = recv.ToDoubles();
    int64_t wrong = 0;
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < block; ++i) wrong += got[p * block + i] != Code(p, rank, i);

    cudaStream_t stream = nccl.stream();
    auto direct = [&] {  // nccl-tests alltoall_perf's loop
      ncclGroupStart();
      for (int p = 0; p < n; ++p) {
        ncclSend(static_cast<char*>(send.raw()) + p * block * elem, block, nccl_type, p,
                 nccl.nccl_comm(), stream);
        ncclRecv(static_cast<char*>(recv.raw()) + p * block * elem, block, nccl_type, p,
                 nccl.nccl_comm(), stream);
      }
      ncclGroupEnd();
    };
    auto ours = [&] { nccl.AllToAllV(send, counts, recv, counts); };
    const int iters = static_cast<int>(std::max<int64_t>(5, std::min<int64_t>(200, (int64_t{4} << 30) / bytes)));
    std::vector<double> t_ours, t_direct;
    for (int rep = 0; rep < 5; ++rep) {
      for (int which = 0; which < 2; ++which) {
        cudaStreamSynchronize(stream);
        rt.world().Barrier();
        const double t0 = Now();
        for (int i = 0; i < iters; ++i) which == 0 ? ours() : direct();
        cudaStreamSynchronize(stream);
        const double mean = sb::AllReduceSum(rt.world(), {(Now() - t0) / iters})[0] / n;
        (which == 0 ? t_ours : t_direct).push_back(mean);
      }
    }
    std::sort(t_ours.begin(), t_ours.end());
    std::sort(t_direct.begin(), t_direct.end());
    const double a = t_ours[2], b = t_direct[2];
    const double wrong_all = sb::AllReduceSum(rt.world(), {double(wrong)})[0];
    if (rt.is_chief()) {
      const double bus = bytes / a / 1e9 * (n - 1) / n, bus_direct = bytes / b / 1e9 * (n - 1) / n;
      std::printf("  %12lld %9.1f %11.2f %11.1f %9.2f %10.1f%% %8lld\n", (long long)bytes, a * 1e6,
                  bus, b * 1e6, bus_direct, 100 * bus / bus_direct, (long long)wrong_all);
      std::fflush(stdout);
    }
  }
  return 0;
}
