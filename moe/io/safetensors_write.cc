// The safetensors writer: plan offsets, then stream header and tensors into
// ReplaceFileAtomically (temp file, fsync, rename). Any failure leaves
// whatever was at `path` untouched.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/str_cat.h"
#include "moe/io/checksum.h"
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
  uint64_t checksum = 0;   // of the bytes written (filled by WriteFile)
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

// Appends the bytes of `t` stored as `to` (t on any device); *checksum =
// their XXH3-64.
absl::Status WriteTensor(int fd, const Tensor& t, SafetensorsDType to, absl::string_view path,
                         uint64_t* checksum) {
  *checksum = Xxh3_64(nullptr, 0);
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
  if (to != SafetensorsDType::kF16) {
    *checksum = Xxh3_64(out.raw(), out.nbytes());
    return WriteAll(fd, out.raw(), out.nbytes(), path);
  }
  std::vector<uint16_t> half(static_cast<size_t>(out.numel()));
  const float* f = out.data<float>();
  for (size_t i = 0; i < half.size(); ++i) half[i] = FloatToHalf(f[i]);
  *checksum = Xxh3_64(half.data(), half.size() * sizeof(uint16_t));
  return WriteAll(fd, half.data(), half.size() * sizeof(uint16_t), path);
}

// The header; with `checksums`, metadata also holds the marker and each
// tensor's checksum (16 hex digits, so the header's length does not depend
// on their values: WriteFile writes placeholders first and the real values
// once the data are out).
absl::StatusOr<std::string> HeaderText(const std::string& path, const std::vector<Planned>& plan,
                                       std::map<std::string, std::string> metadata,
                                       bool checksums) {
  if (checksums) {
    metadata[kChecksumKey] = kChecksumAlgorithm;
    for (const Planned& p : plan) metadata[kChecksumPrefix + *p.name] = ChecksumHex(p.checksum);
  }
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

absl::Status WriteFile(int fd, const std::string& tmp, const std::string& path,
                       std::vector<Planned>& plan, const std::map<std::string, std::string>& metadata,
                       bool checksums) {
  absl::StatusOr<std::string> header = HeaderText(path, plan, metadata, checksums);
  if (!header.ok()) return header.status();
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(header->size() >> (8 * i));
  if (absl::Status s = WriteAll(fd, length, sizeof(length), tmp); !s.ok()) return s;
  if (absl::Status s = WriteAll(fd, header->data(), header->size(), tmp); !s.ok()) return s;
  for (Planned& p : plan)
    if (absl::Status s = WriteTensor(fd, *p.tensor, p.dtype, tmp, &p.checksum); !s.ok()) return s;
  if (!checksums) return absl::OkStatus();
  // The same header with the real checksums, over the placeholders.
  absl::StatusOr<std::string> final_header = HeaderText(path, plan, metadata, checksums);
  if (!final_header.ok()) return final_header.status();
  SB_CHECK(final_header->size() == header->size()) << "checksums changed the header's length";
  size_t done = 0;
  while (done < final_header->size()) {
    const ssize_t w = ::pwrite(fd, final_header->data() + done, final_header->size() - done,
                               static_cast<off_t>(sizeof(length) + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoError(tmp, "write the header");
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata,
                              std::optional<SafetensorsDType> float_storage,
                              SafetensorsChecksums checksums) {
  const bool with_checksums = checksums == SafetensorsChecksums::kXxh3;
  if (with_checksums) {
    for (const auto& [key, value] : metadata) {
      if (key == kChecksumKey || key.rfind(kChecksumPrefix, 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": metadata key '", key, "' is reserved for the checksums"));
      }
    }
  }
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
  // Invalid names or metadata fail here, before the temp file exists.
  if (absl::Status s = HeaderText(path, plan, metadata, with_checksums).status(); !s.ok()) return s;
  return ReplaceFileAtomically(path, [&](int fd, const std::string& tmp) {
    return WriteFile(fd, tmp, path, plan, metadata, with_checksums);
  });
}

}  // namespace sb
