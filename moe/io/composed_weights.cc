#include "moe/io/composed_weights.h"

#include "absl/strings/str_cat.h"
#include "moe/io/safetensors.h"
#include "moe/ops/ops.h"

namespace sb {

void ComposedWeights::AddFrom(const std::string& name, const WeightReader* source,
                              const std::string& source_name) {
  entries_[name] = Entry{source, source_name, Tensor()};
}

void ComposedWeights::AddTensor(const std::string& name, const Tensor& value) {
  SB_CHECK(value.device() == Device::kCpu) << name << ": " << value.ToString();
  entries_[name] = Entry{nullptr, "", value};
}

std::vector<std::string> ComposedWeights::names() const {
  std::vector<std::string> out;
  for (const auto& entry : entries_) out.push_back(entry.first);
  return out;
}

absl::StatusOr<SafetensorsTensorInfo> ComposedWeights::Info(absl::string_view name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    return absl::NotFoundError(absl::StrCat(label_, ": no tensor ", QuoteTensorName(name)));
  const Entry& e = it->second;
  if (e.source) {
    absl::StatusOr<SafetensorsTensorInfo> info = e.source->Info(e.source_name);
    if (info.ok()) info->name = std::string(name);
    return info;
  }
  SafetensorsTensorInfo info;
  info.name = std::string(name);
  info.dtype = SafetensorsDTypeOf(e.value.dtype());
  info.shape = e.value.shape();
  return info;
}

absl::Status ComposedWeights::ReadInto(absl::string_view name, const Tensor& dst) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    return absl::NotFoundError(absl::StrCat(label_, ": no tensor ", QuoteTensorName(name)));
  const Entry& e = it->second;
  if (e.source) return e.source->ReadInto(e.source_name, dst);
  if (dst.shape() != e.value.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(label_, ": ", name, " is ", e.value.ToString(),
                                                   ", read into ", dst.ToString()));
  }
  if (dst.dtype() == e.value.dtype()) {
    ops::Copy(e.value, dst);
  } else {
    Tensor converted = Tensor::Empty(e.value.shape(), dst.dtype());
    ops::Convert(e.value, converted);
    ops::Copy(converted, dst);
  }
  return absl::OkStatus();
}

}  // namespace sb
