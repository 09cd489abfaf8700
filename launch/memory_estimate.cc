// The memory estimate: each term counts the tensors that the code holds
// (moe/layers/*.h name them; memory_estimate_test.cc checks the sum against
// the bytes live tensors really hold after training steps).
#include "launch/memory_estimate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "launch/model_factory.h"
#include "moe/layers/router.h"

namespace sb {
namespace {

// Elements of one rank's parameters, split by kind.
struct ParamCounts {
  double replicated = 0;  // every rank holds them
  double expert = 0;      // this rank's experts
  // Adafactor's factored second moments: rows + cols of every >= 2-D tensor,
  // and the elements of 1-D ones (replicated / expert).
  double factored_replicated = 0, factored_expert = 0;
};

void AddMatrix(double rows, double cols, double* elements, double* factored) {
  *elements += rows * cols;
  *factored += rows + cols;
}

ParamCounts CountParameters(const ModelOptions& o, int ep) {
  ParamCounts c;
  const double d = static_cast<double>(o.d_model);
  const double hd = d / o.num_heads;
  const double qw = hd * o.num_heads, kw = hd * o.num_kv_heads;
  const double local_experts = static_cast<double>(o.router.num_experts) / ep;
  AddMatrix(static_cast<double>(o.vocab_size), d, &c.replicated, &c.factored_replicated);  // embedding
  if (!o.tie_embeddings) AddMatrix(static_cast<double>(o.vocab_size), d, &c.replicated, &c.factored_replicated);
  for (bool is_moe : o.moe_layers) {
    AddMatrix(qw, d, &c.replicated, &c.factored_replicated);  // q_proj
    AddMatrix(kw, d, &c.replicated, &c.factored_replicated);  // k_proj
    AddMatrix(kw, d, &c.replicated, &c.factored_replicated);  // v_proj
    AddMatrix(d, qw, &c.replicated, &c.factored_replicated);  // o_proj
    c.replicated += 2 * d;                                    // the two norms
    c.factored_replicated += 2 * d;
    if (is_moe) {
      AddMatrix(static_cast<double>(o.router.num_experts), d, &c.replicated, &c.factored_replicated);
      const double f = static_cast<double>(o.expert_ffn_dim);
      // w1, w3 [E_local, F, D], w2 [E_local, D, F]: factored per expert slice.
      c.expert += local_experts * 3 * f * d;
      c.factored_expert += local_experts * 3 * (f + d);
    } else {
      const double f = static_cast<double>(o.ffn_dim);
      for (int i = 0; i < 3; ++i) AddMatrix(f, d, &c.replicated, &c.factored_replicated);
    }
  }
  c.replicated += d;  // final norm
  c.factored_replicated += d;
  return c;
}

// Rows of the expert input buffers of one MoE layer on this rank: with a
// capacity, at most C per expert from each of the ep ranks that route to it
// (and never more than those ranks' choices); dropless, the balanced T * k.
double ExpertRows(const ModelOptions& o, double tokens, int ep) {
  const RouterOptions& r = o.router;
  const double choices = tokens * r.top_k;
  double rows = choices;
  for (double factor : {r.capacity_factor_train, r.capacity_factor_eval}) {
    if (factor <= 0) continue;
    const double capacity = std::max<double>(
        static_cast<double>(r.min_capacity), std::ceil(factor * choices / r.num_experts));
    rows = std::max(rows, std::min(static_cast<double>(r.num_experts) * capacity, ep * choices));
  }
  return rows;
}

// Activation elements kept by the layers of one rank for a micro-batch of
// T = batch * seq_len tokens (all persist as scratch between steps), plus
// i32 elements (routing indices) in *ints.
double ActivationElements(const ModelOptions& o, double batch, double seq_len, int ep,
                          double* ints) {
  const double T = batch * seq_len;
  const double d = static_cast<double>(o.d_model);
  const double hd = d / o.num_heads;
  const double qw = hd * o.num_heads, kw = hd * o.num_kv_heads;
  double n = T * d;  // embedding output
  for (bool is_moe : o.moe_layers) {
    n += 4 * T * d;                       // block: h, out, dh, dx
    n += 2 * (2 * T * d + T);             // two RMSNorms: y, dx, rstd
    n += 4 * T * qw + 4 * T * kw + 2 * T * d;  // attention: q ctx dctx dq, k v dk dv, out dx
    n += batch * o.num_heads * seq_len * seq_len;  // attention probabilities
    n += seq_len * hd;                    // RoPE tables
    if (is_moe) {
      const RouterOptions& r = o.router;
      const double E = static_cast<double>(r.num_experts), k = r.top_k;
      const double rows = ExpertRows(o, T, ep);
      const double sent = T * k;          // kept choices of this rank (at most)
      n += 4 * T * E + T + 3 * T * k;     // router: logits probs dprobs dlogits, lse, topk gates dtopk
      if (r.jitter_eps > 0) n += 3 * T * d;  // jittered input, noise, its gradient
      n += 2 * sent + T * k;              // row gates, dgates
      if (ep > 1) {
        n += 4 * sent * d;                // x_perm y_perm dy_perm dx_perm
        n += 2 * rows * d;                // x_local, dy_local
      } else {
        n += 2 * sent * d;                // x_perm dy_perm: the experts read and write them
      }
      n += 2 * T * d;                     // combined output and dx
      n += 5 * rows * static_cast<double>(o.expert_ffn_dim) + 2 * rows * d;  // experts
      *ints += 2 * T * k + 2 * sent + 2 * E;  // expert ids, slots, row token / choice, counts
    } else {
      n += 5 * T * static_cast<double>(o.ffn_dim) + 2 * T * d;  // gate up act dgate dup, y dx
    }
  }
  n += 2 * T * d + T;                            // final norm
  n += T * static_cast<double>(o.vocab_size);    // logits (the gradient overwrites them)
  n += T * d + 2 * T;                            // d hidden, losses, lse
  return n;
}

double GiB(double bytes) { return bytes / (1024.0 * 1024 * 1024); }

}  // namespace

double MemoryEstimate::host_bytes() const {
  return device == Device::kCpu ? total() : buffers;
}

double MemoryEstimate::device_bytes() const {
  return device == Device::kCpu ? 0.0 : total() - buffers;
}

std::string FormatBytes(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024 * 1024 * 1024) return absl::StrFormat("%.3g PiB", bytes / std::pow(1024.0, 5));
  if (bytes >= 1024.0 * 1024 * 1024 * 1024) return absl::StrFormat("%.3g TiB", bytes / std::pow(1024.0, 4));
  if (bytes >= 1024.0 * 1024 * 1024) return absl::StrFormat("%.3g GiB", GiB(bytes));
  if (bytes >= 1024.0 * 1024) return absl::StrFormat("%.3g MiB", bytes / (1024.0 * 1024));
  if (bytes >= 1024.0) return absl::StrFormat("%.3g KiB", bytes / 1024.0);
  return absl::StrFormat("%.0f B", bytes);
}

std::string MemoryEstimate::Describe() const {
  return absl::StrCat(FormatBytes(total()), " per rank on ", DeviceName(device),
                      ": parameters ", FormatBytes(parameters), ", gradients ",
                      FormatBytes(gradients), ", optimizer state ", FormatBytes(optimizer_state),
                      ", activations ", FormatBytes(activations), ", buffers ",
                      FormatBytes(buffers));
}

MemoryEstimate EstimateTrainingMemory(const TrainConfig& config, int world_size,
                                      const MemoryPlacement& placement) {
  const ModelOptions o = ModelOptionsFromConfig(config);
  const int ep = std::max(1, config.parallel().expert_parallel_size());
  const double param_bytes = static_cast<double>(DTypeSize(placement.param_dtype));
  const double act_bytes = static_cast<double>(DTypeSize(placement.activation_dtype));
  const ParamCounts p = CountParameters(o, ep);
  MemoryEstimate m;
  m.device = placement.device;
  m.parameters = (p.replicated + p.expert) * param_bytes;
  m.gradients = m.parameters;

  // ZeRO-1 owns 1/world of the replicated state and 1/(world/ep) of this
  // rank's experts' (whole tensors: the balance is approximate).
  const bool zero1 = config.parallel().zero1();
  const double replicated_share = zero1 ? 1.0 / world_size : 1.0;
  const double expert_share = zero1 ? static_cast<double>(ep) / world_size : 1.0;
  const auto& opt = config.optimizer();
  double state = 0;
  if (opt.name() == switchboard::OptimizerConfig::ADAFACTOR) {
    state = p.factored_replicated * replicated_share + p.factored_expert * expert_share;
    if (opt.adafactor_beta1() > 0) state += p.replicated * replicated_share + p.expert * expert_share;
  } else {
    state = 2 * (p.replicated * replicated_share + p.expert * expert_share);
  }
  m.optimizer_state = state * param_bytes;

  const auto& train = config.train();
  double ints = 0;
  m.activations = ActivationElements(o, train.micro_batch_size(), train.seq_len(), ep, &ints) *
                      act_bytes +
                  ints * 4;
  // The micro-batches of a step and of an evaluation, read before their
  // forward passes (inputs and targets, i32), and the gradient all-reduce's
  // bucket (or the largest tensor, when larger) with several ranks.
  const double tokens = static_cast<double>(train.micro_batch_size()) * train.seq_len();
  const double eval_passes = std::ceil(static_cast<double>(train.eval_batches()) / world_size);
  const double batches = train.grad_accum_steps() + (config.data().val_path().empty() ? 0 : eval_passes);
  m.buffers = batches * 2 * tokens * 4;
  if (world_size > 1) {
    const double bucket = config.parallel().grad_bucket_mb() * 1024.0 * 1024;
    m.buffers += std::min(bucket, m.gradients);
  }
  return m;
}

absl::StatusOr<double> HostMemoryAvailable(std::string* source) {
  std::ifstream meminfo("/proc/meminfo");
  if (!meminfo) return absl::UnavailableError("cannot read /proc/meminfo");
  double available = -1;
  for (std::string line; std::getline(meminfo, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) available = kib * 1024.0;
  }
  if (available < 0) return absl::UnavailableError("/proc/meminfo has no MemAvailable line");
  *source = "MemAvailable in /proc/meminfo";
  // A container's cgroup may allow less than the host has free.
  auto read_number = [](const std::string& path, double* out) {
    std::ifstream in(path);
    std::string text;
    if (!(in >> text)) return false;
    int64_t v;
    if (!absl::SimpleAtoi(text, &v)) return false;  // "max": no limit
    *out = static_cast<double>(v);
    return true;
  };
  double limit = 0, usage = 0;
  std::string limit_path;
  if (read_number("/sys/fs/cgroup/memory.max", &limit) &&
      read_number("/sys/fs/cgroup/memory.current", &usage)) {
    limit_path = "/sys/fs/cgroup/memory.max";
  } else if (read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes", &limit) &&
             read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes", &usage)) {
    limit_path = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
  }
  if (!limit_path.empty() && limit - usage < available) {
    available = std::max(0.0, limit - usage);
    *source = absl::StrCat("the cgroup limit ", limit_path, " minus its usage");
  }
  return available;
}

absl::Status CheckHostMemory(const MemoryEstimate& estimate, int ranks_on_host, double available,
                             const std::string& source) {
  const double need = estimate.host_bytes() * ranks_on_host;
  if (need <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "this run needs about ", FormatBytes(need), " of host memory",
      ranks_on_host > 1 ? absl::StrCat(" (", ranks_on_host, " ranks on this host)") : "",
      ", but ", FormatBytes(available), " is available (", source, "). Estimate: ",
      estimate.Describe(),
      ". Reduce model sizes, train.micro_batch_size or train.seq_len, or use more ranks with "
      "parallel.expert_parallel_size / parallel.zero1"));
}

absl::Status CheckDeviceMemory(const MemoryEstimate& estimate, double available) {
  const double need = estimate.device_bytes();
  if (need <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "this run needs about ", FormatBytes(need), " of GPU memory per rank, but ",
      FormatBytes(available), " is free on the GPU (cudaMemGetInfo). Estimate: ",
      estimate.Describe(),
      ". Reduce train.micro_batch_size or train.seq_len, set train.activation_recompute, or use "
      "more GPUs with parallel.expert_parallel_size / parallel.zero1"));
}

}  // namespace sb
