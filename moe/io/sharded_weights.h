// Writing weights as transformers' save_pretrained lays them out: one
// model.safetensors when everything fits in max_shard_bytes, otherwise
// model-00001-of-0000N.safetensors ... plus model.safetensors.index.json
// (tensors in name order, packed greedily; a tensor larger than the limit
// gets a shard of its own, as transformers does). Used by `upcycle` and
// `export-hf`; every file is written atomically.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "moe/core/tensor.h"
#include "moe/io/safetensors_header.h"

namespace sb {

// transformers' default max_shard_size ("5GB" = 5e9 bytes).
inline constexpr int64_t kDefaultMaxShardBytes = 5'000'000'000;

// Returns the number of files written (1 = no index).
absl::StatusOr<int> WriteShardedSafetensors(
    const std::string& dir, const std::vector<std::pair<std::string, Tensor>>& tensors,
    std::optional<SafetensorsDType> float_storage, int64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata);

}  // namespace sb
