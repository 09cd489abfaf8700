// A set of weights as Hugging Face stores them: one .safetensors file, or a
// sharded checkpoint described by model.safetensors.index.json:
//   {"metadata": {"total_size": bytes}, "weight_map": {name: "model-00001-of-00002.safetensors"}}
// Every name resolves to the shard that holds it; the API mirrors
// SafetensorsFile.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "moe/io/safetensors.h"
#include "moe/io/weight_reader.h"

namespace sb {

class SafetensorsSet : public WeightReader {
 public:
  // path: a .safetensors file; an index .json file; or a directory holding
  // model.safetensors (preferred when both exist, as in transformers) or
  // model.safetensors.index.json. Every shard named by an index is opened
  // and validated, and must hold every name mapped to it.
  static absl::StatusOr<std::unique_ptr<SafetensorsSet>> Open(const std::string& path);

  const std::string& path() const override { return path_; }
  std::vector<std::string> names() const override;  // sorted
  bool Contains(absl::string_view name) const { return owner_.count(name) != 0; }
  absl::StatusOr<SafetensorsTensorInfo> Info(absl::string_view name) const override;
  absl::Status ReadInto(absl::string_view name, const Tensor& dst) const override;
  // Copies dst.numel() elements of tensor `name` starting at flat element
  // `first` (a contiguous part, e.g. one expert of a fused [E, ...] stack).
  absl::Status ReadRangeInto(absl::string_view name, int64_t first, const Tensor& dst) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  SafetensorsSet() = default;
  absl::Status OpenIndex(const std::string& index_path);

  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  // Index semantics: only mapped names are visible, each in its mapped shard.
  std::map<std::string, const SafetensorsFile*, std::less<>> owner_;
};

// Writes an index (HF layout) mapping each name to a shard file name relative
// to the index's directory. Each shard is opened to check that it holds its
// names and to sum metadata.total_size. Written via temp file + rename.
absl::Status WriteSafetensorsIndex(const std::string& index_path,
                                   const std::map<std::string, std::string>& weight_map);

inline constexpr const char* kSafetensorsSingleFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";

}  // namespace sb
