// Resuming: finding the checkpoint `latest` names, reading and checking its
// trainer state against the config, and loading weights and optimizer state
// into a model of any expert-parallel layout. Every file is outside input:
// each failure is a Status naming the file (and field or tensor).
#include <cstdio>
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
  if (status.ok() && state->format_version() < 2 && topology.rank == 0) {
    std::fprintf(stderr,
                 "warning: %s was saved before checkpoints carried checksums (format_version %d): "
                 "its tensors are loaded unverified\n",
                 step_dir.c_str(), state->format_version());
  }
  // Every tensor read is verified against its checksum (SafetensorsFile::ReadInto).
  if (status.ok()) {
    absl::StatusOr<std::unique_ptr<SafetensorsSet>> weights =
        OpenCheckpointTensors(step_dir, kSafetensorsIndexFile, state->format_version());
    status = weights.ok() ? LoadModelWeights(model, **weights) : weights.status();
  }
  if (status.ok()) {
    absl::StatusOr<std::unique_ptr<SafetensorsSet>> file =
        OpenCheckpointTensors(step_dir, kOptimizerIndexFile, state->format_version());
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
