#include "launch/evaluate.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace sb {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "[eval] 120/470 windows | loss 4.4123 | 25.1k tok/s | ETA 3s", rewritten in
// place on a terminal, a new line every 10 s otherwise.
class EvalProgress {
 public:
  explicit EvalProgress(bool enabled) : enabled_(enabled), tty_(isatty(2)), start_(Now()) {}
  void Update(int64_t done, int64_t total, double loss, int64_t tokens, bool last) {
    if (!enabled_) return;
    const double now = Now(), elapsed = now - start_;
    if (!last && !tty_ && now - last_print_ < 10) return;
    if (!last && tty_ && now - last_print_ < 0.2) return;
    last_print_ = now;
    const double rate = elapsed > 0 ? tokens / elapsed : 0;
    const double eta = done > 0 ? elapsed / done * (total - done) : 0;
    std::fprintf(stderr, "%s[eval] %lld/%lld windows | loss %.4f | %.1fk tok/s | ETA %.0fs%s",
                 tty_ ? "\r" : "", static_cast<long long>(done), static_cast<long long>(total), loss,
                 rate / 1e3, eta, tty_ && !last ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_, tty_;
  double start_, last_print_ = 0;
};

}  // namespace

double LayerEvalStats::dropped_fraction() const {
  int64_t routed_sum = 0, kept_sum = 0;
  for (size_t e = 0; e < routed.size(); ++e) {
    routed_sum += routed[e];
    kept_sum += kept[e];
  }
  return routed_sum ? 1.0 - static_cast<double>(kept_sum) / routed_sum : 0.0;
}

absl::StatusOr<EvalResult> EvaluateModel(Model& model, ShardSource& data, const EvalOptions& o) {
  if (o.batch_size < 1 || o.seq_len < 1 || o.seq_len > model.options().max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch size ", o.batch_size, " and seq_len ", o.seq_len, " must be >= 1, seq_len <= model.max_seq_len ",
        model.options().max_seq_len));
  }
  if (data.vocab_size() > model.options().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(data.path(), ": vocabulary of ", data.vocab_size(),
                                                   " tokens, more than model.vocab_size ",
                                                   model.options().vocab_size));
  }
  EvalResult r;
  int64_t windows = data.NumWindows(o.seq_len);
  if (windows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(data.path(), ": ", data.num_tokens(),
                                                   " tokens, fewer than one window of ", o.seq_len + 1));
  }
  if (o.max_windows > 0) windows = std::min(windows, o.max_windows);
  r.windows = windows;
  for (MoeLayer* moe : model.MoeLayers()) {
    LayerEvalStats s;
    s.layer = moe->layer_index();
    s.routed.assign(model.options().router.num_experts, 0);
    s.kept.assign(model.options().router.num_experts, 0);
    r.layers.push_back(s);
  }
  EvalProgress progress(o.progress);
  const double start = Now();
  double loss_sum = 0;
  int64_t batches = 0;
  StepContext ctx;
  ctx.training = false;
  for (int64_t first = 0; first < windows; first += o.batch_size) {
    const int64_t b = std::min<int64_t>(o.batch_size, windows - first);
    Tensor inputs = Tensor::Empty({b, o.seq_len}, DType::kI32);
    Tensor targets = Tensor::Empty({b, o.seq_len}, DType::kI32);
    for (int64_t i = 0; i < b; ++i) {
      if (absl::Status s = data.ReadSample(first + i, o.seq_len, inputs.data<int32_t>() + i * o.seq_len,
                                           targets.data<int32_t>() + i * o.seq_len);
          !s.ok()) {
        return s;
      }
    }
    ctx.micro_batch = batches;
    const ForwardResult f = model.Forward(inputs, targets, ctx);
    loss_sum += f.loss * static_cast<double>(f.tokens);
    r.tokens += f.tokens;
    std::vector<MoeLayer*> layers = model.MoeLayers();
    for (size_t l = 0; l < layers.size(); ++l) {
      const RouterStats& s = layers[l]->stats();
      for (size_t e = 0; e < s.routed.size(); ++e) {
        r.layers[l].routed[e] += s.routed[e];
        r.layers[l].kept[e] += s.kept[e];
      }
      r.layers[l].entropy += s.entropy * static_cast<double>(f.tokens);
      r.layers[l].aux_loss += s.aux_loss;
      r.layers[l].z_loss += s.z_loss;
    }
    ++batches;
    progress.Update(first + b, windows, loss_sum / static_cast<double>(r.tokens), r.tokens, first + b == windows);
  }
  for (LayerEvalStats& s : r.layers) {
    s.entropy /= static_cast<double>(r.tokens);
    s.aux_loss /= static_cast<double>(batches);
    s.z_loss /= static_cast<double>(batches);
  }
  r.loss = loss_sum / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  r.seconds = Now() - start;
  return r;
}

std::string EvalResultJson(const EvalResult& r) {
  nlohmann::json j = {{"loss", r.loss},       {"perplexity", r.perplexity}, {"tokens", r.tokens},
                      {"windows", r.windows}, {"seconds", r.seconds}};
  j["layers"] = nlohmann::json::array();
  for (const LayerEvalStats& s : r.layers) {
    j["layers"].push_back({{"layer", s.layer},
                           {"routed", s.routed},
                           {"kept", s.kept},
                           {"dropped_fraction", s.dropped_fraction()},
                           {"entropy", s.entropy},
                           {"aux_loss", s.aux_loss},
                           {"z_loss", s.z_loss}});
  }
  return j.dump(2) + "\n";
}

}  // namespace sb
