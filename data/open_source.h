// Opening the trainer's data from the config: data.train_path or a weighted
// data.train_mixture for training, data.val_path for evaluation, each
// checked against data.tokenizer_path when set. OpenBatchSource (declared in
// data/batch_source.h) opens one path without a config.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "configs/switchboard.pb.h"
#include "data/batch_source.h"

namespace sb {

// Training data: train_mixture when non-empty (then train_path must be
// empty), else train_path.
absl::StatusOr<std::unique_ptr<BatchSource>> OpenTrainSource(
    const switchboard::DataConfig& data, uint64_t seed);
// Validation data from val_path (error when empty: check has_val first).
absl::StatusOr<std::unique_ptr<BatchSource>> OpenValSource(const switchboard::DataConfig& data,
                                                           uint64_t seed);

}  // namespace sb
