// The safetensors writer: plan offsets, then stream header and tensors into
// ReplaceFileAtomically (temp file, fsync, rename). Any failure leaves
// whatever was at `path` untouched.
#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "moe/io/file_util.h"
#include "moe/io/half.h"
#include "moe/io/safetensors.h"
#include "moe/ops/ops.h"
#include "nlohmann/json.hpp"

namespace sb {
namespace {

using json = nlohmann::json;

struct Planned {
  const std::string* name;
  const Tensor* tensor;
  SafetensorsDType dtype;  // in the file
  uint64_t begin = 0, end = 0;
};

DType TensorDTypeFor(SafetensorsDType d) {
  switch (d) {
    case SafetensorsDType::kF64: return DType::kF64;
    case SafetensorsDType::kBF16: return DType::kBF16;
    case SafetensorsDType::kI64: return DType::kI64;
    case SafetensorsDType::kI32: return DType::kI32;
    default: return DType::kF32;  // F32, and F16 which is encoded from f32
  }
}

// Appends the bytes of `t` stored as `to` (t on any device).
absl::Status WriteTensor(int fd, const Tensor& t, SafetensorsDType to, absl::string_view path) {
  if (t.numel() == 0) return absl::OkStatus();
  Tensor host = t;
  if (t.device() != Device::kCpu) {
    host = Tensor::Empty(t.shape(), t.dtype());
    ops::Copy(t, host);
  }
  Tensor out = host;
  if (SafetensorsDTypeOf(host.dtype()) != to) {
    out = Tensor::Empty(t.shape(), TensorDTypeFor(to));
    ops::Convert(host, out);
  }
  if (to != SafetensorsDType::kF16) return WriteAll(fd, out.raw(), out.nbytes(), path);
  std::vector<uint16_t> half(static_cast<size_t>(out.numel()));
  const float* f = out.data<float>();
  for (size_t i = 0; i < half.size(); ++i) half[i] = FloatToHalf(f[i]);
  return WriteAll(fd, half.data(), half.size() * sizeof(uint16_t), path);
}

absl::StatusOr<std::string> HeaderText(const std::string& path, const std::vector<Planned>& plan,
                                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const Planned& p : plan) {
    header[*p.name] = {{"dtype", SafetensorsDTypeName(p.dtype)},
                       {"shape", p.tensor->shape()},
                       {"data_offsets", {p.begin, p.end}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // invalid UTF-8 in a name or metadata
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write the header: ", e.what()));
  }
  // Pad to 8 bytes so the data section (and with the size ordering, every
  // tensor) is aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

absl::Status WriteFile(int fd, const std::string& tmp, const std::string& header,
                       const std::vector<Planned>& plan) {
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(header.size() >> (8 * i));
  if (absl::Status s = WriteAll(fd, length, sizeof(length), tmp); !s.ok()) return s;
  if (absl::Status s = WriteAll(fd, header.data(), header.size(), tmp); !s.ok()) return s;
  for (const Planned& p : plan)
    if (absl::Status s = WriteTensor(fd, *p.tensor, p.dtype, tmp); !s.ok()) return s;
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata,
                              std::optional<SafetensorsDType> float_storage) {
  if (float_storage && !IsFloat(*float_storage)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": float storage dtype ",
                                                   SafetensorsDTypeName(*float_storage),
                                                   " is not a float type"));
  }
  std::set<absl::string_view> seen;
  std::vector<Planned> plan;
  for (const auto& named : tensors) {
    const std::string& name = named.first;
    const Tensor& tensor = named.second;
    auto fail = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", QuoteTensorName(name), ": ", what));
    };
    if (name.empty() || name == "__metadata__") return fail("reserved name");
    if (!seen.insert(name).second) return fail("given twice");
    if (!tensor.defined()) return fail("undefined tensor");
    const bool convert = float_storage && IsFloating(tensor.dtype());
    plan.push_back({&name, &tensor, convert ? *float_storage : SafetensorsDTypeOf(tensor.dtype())});
  }
  // Larger elements first: offsets stay multiples of each element size.
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return SafetensorsDTypeSize(a.dtype) > SafetensorsDTypeSize(b.dtype);
  });
  uint64_t offset = 0;
  for (Planned& p : plan) {
    p.begin = offset;
    offset += static_cast<uint64_t>(p.tensor->numel()) * SafetensorsDTypeSize(p.dtype);
    p.end = offset;
  }
  absl::StatusOr<std::string> header = HeaderText(path, plan, metadata);
  if (!header.ok()) return header.status();

  return ReplaceFileAtomically(
      path, [&](int fd, const std::string& tmp) { return WriteFile(fd, tmp, *header, plan); });
}

}  // namespace sb
