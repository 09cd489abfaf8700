#include "moe/io/sharded_weights.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "moe/io/safetensors.h"
#include "moe/io/safetensors_set.h"

namespace sb {

absl::StatusOr<int> WriteShardedSafetensors(
    const std::string& dir, const std::vector<std::pair<std::string, Tensor>>& tensors,
    std::optional<SafetensorsDType> float_storage, int64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> sorted = tensors;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  int64_t bytes = 0;
  for (const auto& entry : sorted) {
    const Tensor& t = entry.second;
    const int64_t size = static_cast<int64_t>(
        t.numel() * (float_storage && IsFloating(t.dtype()) ? SafetensorsDTypeSize(*float_storage)
                                                            : DTypeSize(t.dtype())));
    if (!shards.back().empty() && bytes + size > max_shard_bytes) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(entry);
    bytes += size;
  }
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // transformers refuses other formats
  const std::filesystem::path root(dir);
  if (shards.size() == 1) {
    if (absl::Status s = WriteSafetensors((root / kSafetensorsSingleFile).string(), shards[0], meta,
                                          float_storage);
        !s.ok()) {
      return s;
    }
    return 1;
  }
  std::map<std::string, std::string> weight_map;
  const int n = static_cast<int>(shards.size());
  for (int i = 0; i < n; ++i) {
    const std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, n);
    if (absl::Status s = WriteSafetensors((root / file).string(), shards[i], meta, float_storage);
        !s.ok()) {
      return s;
    }
    for (const auto& entry : shards[i]) weight_map[entry.first] = file;
  }
  if (absl::Status s = WriteSafetensorsIndex((root / kSafetensorsIndexFile).string(), weight_map);
      !s.ok()) {
    return s;
  }
  return n;
}

}  // namespace sb
