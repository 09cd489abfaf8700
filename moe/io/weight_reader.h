// Where model weights are read from, by name: a safetensors file or sharded
// set (SafetensorsSet), a Hugging Face directory seen under our names
// (HfCheckpoint: transformers 5's fused Mixtral experts become per-expert
// slices), or a composition of those (upcycling: every expert of an MoE
// block reads its donor's dense FFN). LoadModelWeights takes any of them.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moe/core/tensor.h"
#include "moe/io/safetensors_header.h"

namespace sb {

class WeightReader {
 public:
  virtual ~WeightReader() = default;
  // What error messages name (a file or directory).
  virtual const std::string& path() const = 0;
  virtual std::vector<std::string> names() const = 0;  // sorted
  // Shape and dtype of `name` (byte offsets are meaningful only for files).
  virtual absl::StatusOr<SafetensorsTensorInfo> Info(absl::string_view name) const = 0;
  // Copies `name` into dst (any device; float dtypes convert, shapes must match).
  virtual absl::Status ReadInto(absl::string_view name, const Tensor& dst) const = 0;
};

}  // namespace sb
