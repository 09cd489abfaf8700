// The trainer's checks before the first step (the data against the run,
// a fresh run directory) and the run files it opens once the first step
// succeeded (resolved config, metrics.jsonl, TensorBoard events).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data/open_source.h"
#include "data/shard_format.h"
#include "launch/trainer.h"
#include "moe/io/file_util.h"

namespace sb {

absl::Status CheckDataFitsRun(const TrainConfig& config, const BatchSource& train,
                              const BatchSource* val) {
  const int seq_len = config.train().seq_len();
  if (absl::Status s = train.CheckSeqLen(seq_len); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.data().train_mixture_size() ? "data.train_mixture: " : "data.train_path: ",
        s.message()));
  }
  if (val == nullptr) return absl::OkStatus();
  if (absl::Status s = val->CheckSeqLen(seq_len); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("data.val_path: ", s.message()));
  }
  if (val->tokenizer_hash() != train.tokenizer_hash()) {
    auto origin = [](const BatchSource& source) {
      return source.tokenizer_hash() == 0
                 ? std::string("byte-level text, no tokenizer")
                 : absl::StrCat("tokenizer ", HashHex(source.tokenizer_hash()));
    };
    return absl::InvalidArgumentError(absl::StrCat(
        "data.val_path holds tokens of another tokenizer than the training data (", origin(*val),
        " vs ", origin(train), "): its loss would not be comparable; prepare both with the same "
        "tokenizer.model"));
  }
  return absl::OkStatus();
}

absl::Status CheckFreshRunDir(const std::string& run_dir, bool overwrite) {
  if (run_dir.empty()) return absl::OkStatus();
  if (HasCheckpoint(run_dir)) {
    return absl::FailedPreconditionError(absl::StrCat(
        CheckpointsDir(run_dir), "/latest exists: pass --resume to continue that run, or choose "
        "another --run_dir"));
  }
  std::error_code ec;
  const std::string metrics = run_dir + "/metrics.jsonl";
  if (!overwrite && std::filesystem::exists(metrics, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        metrics, " exists (an earlier run in this directory): pass --overwrite to start afresh "
        "and replace it, or choose another --run_dir"));
  }
  return absl::OkStatus();
}

// Written once the first step succeeded: a start or resume that fails must
// leave the run directory's files as they were. Only rank 0 writes them.
absl::Status Trainer::OpenRunFiles() {
  run_files_open_ = true;
  if (run_dir_.empty() || !chief()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(run_dir_, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create run_dir ", run_dir_, ": ", ec.message()));
  }
  const std::string text = ResolvedConfigText(config_);
  if (absl::Status s = ReplaceFileAtomically(run_dir_ + "/config.textproto",
                                             [&](int fd, const std::string& tmp) {
                                               return WriteAll(fd, text.data(), text.size(), tmp);
                                             });
      !s.ok()) {
    return s;
  }
  const std::string metrics = run_dir_ + "/metrics.jsonl";
  if (resumed_) {
    if (absl::Status s = TrimMetricsLog(metrics, start_step_); !s.ok()) return s;
  }
  if (absl::Status s = metrics_.Open(metrics, /*append=*/resumed_); !s.ok()) return s;
  if (config_.logging().tensorboard()) {
    auto tb = TensorBoardLog::Open(run_dir_, resumed_, start_step_);
    if (!tb.ok()) return tb.status();
    tensorboard_ = std::move(*tb);
  }
  return absl::OkStatus();
}

}  // namespace sb
