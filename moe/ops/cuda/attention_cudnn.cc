// cuDNN's fused scaled-dot-product attention (FlashAttention-style, bf16 in
// and out, f32 softmax and statistics) through the cudnn-frontend graph API.
// This is the only translation unit that includes cudnn-frontend (large,
// header-only C++; headers from the pinned PyPI wheel nvidia-cudnn-frontend
// that launch/install_deps.sh unpacks into third_party/).
//
// cuDNN itself is opened with dlopen on first use (the frontend's dynamic
// loading), never linked: binaries start, and train on the CPU, where no
// cuDNN is installed; on a GPU machine libcudnn.so.9 comes from the CUDA or
// PyTorch installation (benchmarks/gpu_check.sh puts it on the library path;
// docs/cuda.md). Graphs are built once per shape and cached. The backward
// asks for cuDNN's deterministic algorithm (bitwise resume).
#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <unordered_map>

#include <cudnn_frontend.h>

#include "moe/ops/attention_sizes.h"
#include "moe/ops/cuda/check_cuda.h"
#include "moe/ops/cuda/cuda_ops.h"

// The frontend looks cuDNN's entry points up through this handle.
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend

namespace sb::cuda {
namespace {

namespace fe = cudnn_frontend;

constexpr int64_t kQ = 1, kK = 2, kV = 3, kO = 4, kStats = 5, kDo = 6, kDq = 7, kDk = 8, kDv = 9;

// Opens libcudnn once; "" when it is loaded, else the reason.
const std::string& LoadCudnn() {
  static const std::string error = [] {
    std::string tried;
    for (const char* name : {"libcudnn.so.9", "libcudnn.so"}) {
      void* h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
      if (h != nullptr) {
        fe::cudnn_dlhandle = h;
        return std::string();
      }
      const char* why = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + name + ": " + (why ? why : "not found");
    }
    return "cannot load cuDNN (" + tried + "); put libcudnn.so.9 on LD_LIBRARY_PATH "
           "(the nvidia-cudnn-cu13 wheel's nvidia/cudnn/lib, or the CUDA toolkit's lib64; "
           "docs/cuda.md)";
  }();
  return error;
}

cudnnHandle_t Handle() {
  const std::string& error = LoadCudnn();
  SB_CHECK(error.empty()) << error;
  thread_local cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    const cudnnStatus_t st = fe::detail::create_handle(&h);
    SB_CHECK(st == CUDNN_STATUS_SUCCESS) << "cudnnCreate failed with status " << static_cast<int>(st);
    // The legacy default stream, like every other kernel here.
    SB_CHECK(fe::detail::set_stream(h, nullptr) == CUDNN_STATUS_SUCCESS) << "cudnnSetStream";
    return h;
  }();
  return handle;
}

void Check(fe::error_t e, const char* what) {
  SB_CHECK(e.is_good()) << "cuDNN attention (" << what << "): " << e.get_message();
}

using Shape5 = ops::AttentionSizes;
// Plan cache key: (backward, sizes).
struct PlanKey {
  bool backward;
  Shape5 s;
  bool operator<(const PlanKey& o) const {
    return std::tie(backward, s.B, s.S, s.H, s.Hkv, s.hd) <
           std::tie(o.backward, o.s.B, o.s.S, o.s.H, o.s.Hkv, o.s.hd);
  }
};

// Our activations are [B*S, heads*hd] row-major: element (b, h, s, d) sits
// at ((b S + s) heads + h) hd + d, i.e. cuDNN's BHSD dims with BSHD strides.
std::shared_ptr<fe::graph::Tensor_attributes> Input(fe::graph::Graph& g, const char* name,
                                                    int64_t uid, const Shape5& s, int64_t heads) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({s.B, heads, s.S, s.hd})
                      .set_stride({s.S * heads * s.hd, s.hd, heads * s.hd, 1}));
}
void AsOutput(fe::graph::Tensor_attributes& t, int64_t uid, const Shape5& s, int64_t heads) {
  t.set_output(true).set_uid(uid).set_dim({s.B, heads, s.S, s.hd}).set_stride(
      {s.S * heads * s.hd, s.hd, heads * s.hd, 1});
}
// lse [B, H, S] f32 is cuDNN's softmax statistics tensor [B, H, S, 1]
// (natural-log log-sum-exp of the scaled scores, as ours).
std::shared_ptr<fe::graph::Tensor_attributes> StatsInput(fe::graph::Graph& g, const Shape5& s) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name("stats")
                      .set_uid(kStats)
                      .set_dim({s.B, s.H, s.S, 1})
                      .set_stride({s.H * s.S, s.S, 1, 1})
                      .set_data_type(fe::DataType_t::FLOAT));
}

struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
};

// Validates, picks an engine and builds it; the first failing stage's error.
fe::error_t Finish(Plan& plan, cudnnHandle_t handle) {
  fe::graph::Graph& g = *plan.graph;
  for (fe::error_t e : {g.validate(), g.build_operation_graph(handle),
                        g.create_execution_plans({fe::HeurMode_t::A})}) {
    if (!e.is_good()) return e;
  }
  fe::error_t e = g.check_support(handle);
  if (!e.is_good()) return e;
  e = g.build_plans(handle);
  if (!e.is_good()) return e;
  return g.get_workspace_size(plan.workspace);
}

std::shared_ptr<fe::graph::Graph> NewGraph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

Plan BuildForward(const Shape5& s, cudnnHandle_t handle) {
  Plan plan;
  plan.graph = NewGraph();
  fe::graph::Graph& g = *plan.graph;
  auto q = Input(g, "q", kQ, s, s.H), k = Input(g, "k", kK, s, s.Hkv), v = Input(g, "v", kV, s, s.Hkv);
  auto options = fe::graph::SDPA_attributes()
                     .set_name("causal_gqa_attention")
                     .set_generate_stats(true)
                     .set_causal_mask(true)
                     .set_attn_scale(static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hd))));
  auto [o, stats] = g.sdpa(q, k, v, options);
  AsOutput(*o, kO, s, s.H);
  stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
  stats->set_dim({s.B, s.H, s.S, 1}).set_stride({s.H * s.S, s.S, 1, 1});
  Check(Finish(plan, handle), "forward");
  return plan;
}

// deterministic: cuDNN's deterministic backward algorithm (bitwise resume).
fe::error_t BuildBackward(const Shape5& s, cudnnHandle_t handle, bool deterministic, Plan* out) {
  Plan plan;
  plan.graph = NewGraph();
  fe::graph::Graph& g = *plan.graph;
  auto q = Input(g, "q", kQ, s, s.H), k = Input(g, "k", kK, s, s.Hkv), v = Input(g, "v", kV, s, s.Hkv);
  auto o = Input(g, "o", kO, s, s.H), d_o = Input(g, "do", kDo, s, s.H);
  auto stats = StatsInput(g, s);
  auto options = fe::graph::SDPA_backward_attributes()
                     .set_name("causal_gqa_attention_backward")
                     .set_causal_mask(true)
                     .set_deterministic_algorithm(deterministic)
                     .set_attn_scale(static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hd))));
  auto [dq, dk, dv] = g.sdpa_backward(q, k, v, o, d_o, stats, options);
  AsOutput(*dq, kDq, s, s.H);
  AsOutput(*dk, kDk, s, s.Hkv);
  AsOutput(*dv, kDv, s, s.Hkv);
  const fe::error_t e = Finish(plan, handle);
  if (e.is_good()) *out = std::move(plan);
  return e;
}

// The deterministic backward, or, where this cuDNN has no deterministic
// engine for the shape, the default one with a loud warning (the run is
// then not bitwise reproducible).
Plan BuildBackward(const Shape5& s, cudnnHandle_t handle) {
  Plan plan;
  fe::error_t e = BuildBackward(s, handle, /*deterministic=*/true, &plan);
  if (e.is_good()) return plan;
  std::fprintf(stderr,
               "switchboard: WARNING: cuDNN has no deterministic attention backward for B=%lld "
               "S=%lld H=%lld Hkv=%lld hd=%lld (%s); using its default algorithm: runs are not "
               "bitwise reproducible\n",
               static_cast<long long>(s.B), static_cast<long long>(s.S), static_cast<long long>(s.H),
               static_cast<long long>(s.Hkv), static_cast<long long>(s.hd), e.get_message().c_str());
  Check(BuildBackward(s, handle, /*deterministic=*/false, &plan), "backward");
  return plan;
}

// The plan for shape s, built on first use. cuDNN is loaded (Handle())
// before the graph asks the library anything; the frontend reports some
// failures by exception, which end the job like every other failed check.
Plan& CachedPlan(bool backward, const Shape5& s) {
  static std::mutex mu;
  static std::map<PlanKey, Plan> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(PlanKey{backward, s});
  if (it != cache.end()) return it->second;
  cudnnHandle_t handle = Handle();
  Plan plan;
  try {
    plan = backward ? BuildBackward(s, handle) : BuildForward(s, handle);
  } catch (const std::exception& e) {
    SB_CHECK(false) << "cuDNN attention " << (backward ? "backward" : "forward") << " for B=" << s.B
                    << " S=" << s.S << " H=" << s.H << " Hkv=" << s.Hkv << " hd=" << s.hd << ": "
                    << e.what();
  }
  return cache.emplace(PlanKey{backward, s}, std::move(plan)).first->second;
}

void CheckBf16(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    SB_CHECK(t->dtype() == DType::kBF16 && t->device() == Device::kCuda)
        << "cuDNN attention takes bf16 GPU tensors, got " << t->ToString();
  }
}

void Execute(const Plan& plan, std::unordered_map<int64_t, void*>& pack) {
  // From the memory pool: cheap, and freed in stream order after the kernels.
  const Tensor workspace = Tensor::Empty({plan.workspace / 4 + 1}, DType::kI32, Device::kCuda);
  try {
    Check(plan.graph->execute(Handle(), pack, workspace.raw()), "execute");
  } catch (const std::exception& e) {
    SB_CHECK(false) << "cuDNN attention execute: " << e.what();
  }
}

}  // namespace

std::string CudnnLoadError() { return LoadCudnn(); }

void CudnnAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v, int seq_len,
                           const Tensor& lse, const Tensor& out) {
  CheckBf16({&q, &k, &v, &out});
  const Shape5 s = ops::AttentionSizesOf(q, k, lse, seq_len);
  SB_CHECK(lse.dtype() == DType::kF32) << "attention lse is f32 on the GPU, got " << lse.ToString();
  if (s.B == 0) return;
  std::unordered_map<int64_t, void*> pack = {
      {kQ, q.raw()}, {kK, k.raw()}, {kV, v.raw()}, {kO, out.raw()}, {kStats, lse.raw()}};
  Execute(CachedPlan(false, s), pack);
}

void CudnnAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                            const Tensor& lse, const Tensor& dout, int seq_len, const Tensor& dq,
                            const Tensor& dk, const Tensor& dv) {
  CheckBf16({&q, &k, &v, &out, &dout, &dq, &dk, &dv});
  const Shape5 s = ops::AttentionSizesOf(q, k, lse, seq_len);
  SB_CHECK(lse.dtype() == DType::kF32) << "attention lse is f32 on the GPU, got " << lse.ToString();
  if (s.B == 0) return;
  std::unordered_map<int64_t, void*> pack = {
      {kQ, q.raw()},   {kK, k.raw()},   {kV, v.raw()},    {kO, out.raw()},  {kStats, lse.raw()},
      {kDo, dout.raw()}, {kDq, dq.raw()}, {kDk, dk.raw()}, {kDv, dv.raw()}};
  Execute(CachedPlan(true, s), pack);
}

}  // namespace sb::cuda
