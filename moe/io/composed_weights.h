// A WeightReader assembled from others: each name reads another reader's
// tensor (under another name) or a tensor held in memory. Upcycling builds
// one so that LoadModelWeights checks and fills an MoE model in one pass:
// every expert of block N reads its donor's model.layers.N.mlp.*_proj, the
// routers come from memory, everything else from the base model.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "moe/io/weight_reader.h"

namespace sb {

class ComposedWeights : public WeightReader {
 public:
  explicit ComposedWeights(std::string label) : label_(std::move(label)) {}
  // `name` reads `source_name` of `source` (which must outlive this).
  void AddFrom(const std::string& name, const WeightReader* source, const std::string& source_name);
  // `name` reads `value` (a CPU tensor, kept alive here).
  void AddTensor(const std::string& name, const Tensor& value);

  const std::string& path() const override { return label_; }
  std::vector<std::string> names() const override;
  absl::StatusOr<SafetensorsTensorInfo> Info(absl::string_view name) const override;
  absl::Status ReadInto(absl::string_view name, const Tensor& dst) const override;

 private:
  struct Entry {
    const WeightReader* source = nullptr;  // null: `value`
    std::string source_name;
    Tensor value;
  };
  std::string label_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace sb
