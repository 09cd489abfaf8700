// Resuming: finding the checkpoint `latest` names, reading and checking its
// trainer state against the config, and loading weights and optimizer state
// into a model of any expert-parallel layout. Every file is outside input:
// each failure is a Status naming the file (and field or tensor).
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "launch/checkpoint.h"
#include "launch/checkpoint_tensors.h"
#include "moe/io/file_util.h"
#include "moe/io/model_weights.h"

namespace sb {
namespace {

namespace fs = std::filesystem;
namespace pb = google::protobuf;

constexpr size_t kMaxLatestBytes = 4096;
constexpr size_t kMaxStateBytes = 16 << 20;

// The text of field `path` ("model.d_model") of `message`, default included.
std::string FieldText(const pb::Message& message, const std::string& path) {
  const pb::Message* m = &message;
  size_t begin = 0;
  for (;;) {
    const size_t dot = path.find('.', begin);
    const std::string name = path.substr(begin, dot == std::string::npos ? dot : dot - begin);
    const pb::FieldDescriptor* field = m->GetDescriptor()->FindFieldByName(name);
    SB_CHECK(field != nullptr && !field->is_repeated()) << "no singular field " << path;
    if (dot == std::string::npos) {
      std::string text;
      pb::TextFormat::PrintFieldValueToString(*m, field, -1, &text);
      return text;
    }
    m = &m->GetReflection()->GetMessage(*m, field);
    begin = dot + 1;
  }
}

// Fields that must not change across a resume, and why.
constexpr const char* kArchitecture[] = {
    "model.vocab_size", "model.d_model",  "model.num_layers",   "model.num_heads",
    "model.num_kv_heads", "model.ffn_dim", "model.rope_theta",  "model.norm_eps",
    "model.max_seq_len", "model.tie_embeddings", "moe.num_experts", "moe.top_k",
    "moe.normalize_top_k", "moe.noisy_gating", "moe.num_shared_experts"};
constexpr const char* kRunIdentity[] = {
    "optimizer.name",  // the state's slots
    "train.seed",      // the RNG state: data order and jitter
    "train.micro_batch_size", "train.seq_len"};  // the data cursor counts such micro-batches

std::string MaskText(const std::vector<bool>& mask) {
  std::vector<int> blocks;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) blocks.push_back(static_cast<int>(i));
  return absl::StrCat("[", absl::StrJoin(blocks, ","), "]");
}

}  // namespace

std::optional<int64_t> ParseStepDirName(absl::string_view name) {
  if (name.size() < 6 || name.size() > 5 + 18 || name.substr(0, 5) != "step_") return std::nullopt;
  int64_t step = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return std::nullopt;
    step = step * 10 + (c - '0');
  }
  if (StepDirName(step) != name) return std::nullopt;  // leading zeros
  return step;
}

bool HasCheckpoint(const std::string& run_dir) {
  std::error_code ec;
  return fs::symlink_status(fs::path(CheckpointsDir(run_dir)) / "latest", ec).type() !=
         fs::file_type::not_found;
}

absl::StatusOr<std::string> LatestCheckpoint(const std::string& run_dir) {
  const fs::path root = CheckpointsDir(run_dir);
  const std::string latest = (root / "latest").string();
  if (!HasCheckpoint(run_dir)) {
    return absl::NotFoundError(absl::StrCat("no checkpoint to resume from: ", latest,
                                            " does not exist (train without --resume to start)"));
  }
  absl::StatusOr<std::string> text = ReadSmallFile(latest, kMaxLatestBytes);
  if (!text.ok()) {
    return absl::DataLossError(absl::StrCat("cannot read the checkpoint pointer: ",
                                            text.status().message()));
  }
  const std::string name(absl::StripAsciiWhitespace(*text));
  if (!ParseStepDirName(name)) {
    return absl::DataLossError(absl::StrCat(latest, ": garbled: expected 'step_<N>', found '",
                                            absl::CHexEscape(name.substr(0, 40)),
                                            name.size() > 40 ? "...'" : "'"));
  }
  const fs::path dir = root / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat(latest, " names ", name, ", but ", dir.string(), " does not exist"));
  }
  return dir.string();
}

absl::StatusOr<switchboard::TrainerState> ReadTrainerState(const std::string& step_dir) {
  const std::string path = (fs::path(step_dir) / kTrainerStateFile).string();
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxStateBytes);
  if (!text.ok()) return text.status();
  switchboard::TrainerState state;
  if (absl::Status s = ParseTextMessage(*text, path, &state); !s.ok()) return s;
  std::vector<std::string> bad;
  auto require = [&](bool ok, const char* field, int64_t value, const char* rule) {
    if (!ok) bad.push_back(absl::StrCat(field, " = ", value, " ", rule));
  };
  require(state.format_version() >= 1 && state.format_version() <= kCheckpointFormatVersion,
          "format_version", state.format_version(),
          absl::StrCat("is not a version this build reads (1..", kCheckpointFormatVersion, ")")
              .c_str());
  require(state.step() >= 0, "step", state.step(), "must be >= 0");
  require(state.tokens_seen() >= 0, "tokens_seen", state.tokens_seen(), "must be >= 0");
  require(state.micro_batches_consumed() >= 0, "micro_batches_consumed",
          state.micro_batches_consumed(), "must be >= 0");
  require(state.optimizer_step() >= 0 && state.optimizer_step() <= state.step(), "optimizer_step",
          state.optimizer_step(), "must be in [0, step]");
  require(state.nonfinite_streak() >= 0, "nonfinite_streak", state.nonfinite_streak(), "must be >= 0");
  require(state.skipped_steps() >= 0, "skipped_steps", state.skipped_steps(), "must be >= 0");
  const auto& layout = state.layout();
  require(layout.world_size() >= 1, "layout.world_size", layout.world_size(), "must be >= 1");
  require(layout.expert_parallel_size() >= 1, "layout.expert_parallel_size",
          layout.expert_parallel_size(), "must be >= 1");
  require(layout.grad_accum_steps() >= 1, "layout.grad_accum_steps", layout.grad_accum_steps(),
          "must be >= 1");
  if (!state.has_config()) bad.push_back("config is missing");
  const std::optional<int64_t> dir_step = ParseStepDirName(fs::path(step_dir).filename().string());
  if (dir_step && *dir_step != state.step()) {
    bad.push_back(absl::StrCat("step = ", state.step(), " but the directory is ",
                               fs::path(step_dir).filename().string()));
  }
  if (bad.empty() && layout.world_size() >= 1) {
    if (absl::Status s = ValidateConfig(state.config(), layout.world_size()); !s.ok())
      bad.push_back(absl::StrCat("config: ", s.message()));
  }
  if (!bad.empty()) {
    return absl::DataLossError(absl::StrCat(path, ": ", absl::StrJoin(bad, "; ")));
  }
  return state;
}

absl::Status CheckResumable(const switchboard::TrainerState& saved, const TrainConfig& config,
                            const std::string& state_path) {
  const TrainConfig& old = saved.config();
  std::vector<std::string> diffs;
  auto compare = [&](const std::string& field, const std::string& was, const std::string& now) {
    if (was != now)
      diffs.push_back(absl::StrCat(field, " = ", was, " in the checkpoint, ", now, " in the config"));
  };
  for (const char* field : kArchitecture) compare(field, FieldText(old, field), FieldText(config, field));
  auto expert_ffn = [](const TrainConfig& c) {
    return absl::StrCat(c.model().expert_ffn_dim() > 0 ? c.model().expert_ffn_dim() : c.model().ffn_dim());
  };
  compare("model.expert_ffn_dim (0 = ffn_dim)", expert_ffn(old), expert_ffn(config));
  compare("moe.moe_layers / moe.moe_layer_interval (MoE blocks)", MaskText(MoeLayerMask(old)),
          MaskText(MoeLayerMask(config)));
  auto shared_ffn = [&](const TrainConfig& c) {
    const int64_t width = c.moe().shared_expert_ffn_dim();
    return c.moe().num_shared_experts() == 0 ? std::string("-")
                                             : width > 0 ? absl::StrCat(width) : expert_ffn(c);
  };
  compare("moe.shared_expert_ffn_dim (0 = expert width)", shared_ffn(old), shared_ffn(config));
  auto bias_on = [](const TrainConfig& c) {
    return std::string(c.moe().aux_free_bias_update_rate() > 0 ? "on" : "off");
  };
  compare("auxiliary-loss-free selection bias (moe.aux_free_bias_update_rate > 0)", bias_on(old),
          bias_on(config));
  for (const char* field : kRunIdentity) compare(field, FieldText(old, field), FieldText(config, field));
  if (old.optimizer().name() == switchboard::OptimizerConfig::ADAFACTOR &&
      config.optimizer().name() == switchboard::OptimizerConfig::ADAFACTOR &&
      (old.optimizer().adafactor_beta1() > 0) != (config.optimizer().adafactor_beta1() > 0)) {
    compare("optimizer.adafactor_beta1 (momentum state on/off)",
            FieldText(old, "optimizer.adafactor_beta1"), FieldText(config, "optimizer.adafactor_beta1"));
  }
  if (config.train().steps() < saved.step()) {
    diffs.push_back(absl::StrCat("train.steps = ", config.train().steps(),
                                 " is before the checkpoint's step ", saved.step()));
  }
  if (diffs.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      state_path, ": the config cannot continue this checkpoint: ", absl::StrJoin(diffs, "; ")));
}

absl::StatusOr<switchboard::TrainerState> LoadCheckpoint(const std::string& step_dir,
                                                         const TrainConfig& config, Model& model,
                                                         Optimizer& optimizer,
                                                         const CheckpointTopology& topology) {
  const fs::path dir(step_dir);
  absl::StatusOr<switchboard::TrainerState> state = ReadTrainerState(step_dir);
  absl::Status status = state.status();
  if (status.ok()) status = CheckResumable(*state, config, (dir / kTrainerStateFile).string());
  if (status.ok()) {
    absl::StatusOr<std::unique_ptr<SafetensorsSet>> weights =
        SafetensorsSet::Open((dir / kSafetensorsIndexFile).string());
    status = weights.ok() ? LoadModelWeights(model, **weights) : weights.status();
  }
  if (status.ok()) {
    absl::StatusOr<std::unique_ptr<SafetensorsSet>> file =
        SafetensorsSet::Open((dir / kOptimizerIndexFile).string());
    absl::StatusOr<std::vector<NamedState>> named =
        NamedOptimizerState(optimizer, model.Parameters());
    status = !file.ok() ? file.status() : !named.ok() ? named.status() : LoadNamedState(*named, **file);
  }
  if (status.ok()) optimizer.set_step(state->optimizer_step());
  if (!topology.AllOk(status.ok())) {
    if (status.ok()) {
      return absl::AbortedError(
          absl::StrCat(step_dir, ": another rank failed to load it (see its error)"));
    }
    return status;
  }
  return state;
}

}  // namespace sb
