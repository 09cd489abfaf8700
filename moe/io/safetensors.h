// Reading and writing safetensors files (format: safetensors_header.h,
// docs/formats.md). The reader maps the file read-only and copies a tensor
// into a caller's Tensor on any device, converting float dtypes; the writer
// replaces its target atomically (temp file, fsync, rename), so a crash
// never leaves a half-written file under the final name.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moe/core/tensor.h"
#include "moe/io/safetensors_header.h"

namespace sb {

class SafetensorsFile {
 public:
  // Maps and validates the whole header; errors name the file and tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  // Null when absent.
  const SafetensorsTensorInfo* Find(absl::string_view name) const { return header_.Find(name); }
  absl::StatusOr<SafetensorsTensorInfo> Info(absl::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Whether every tensor carries a checksum (safetensors_header.h).
  bool checksummed() const { return header_.checksummed; }

  // Copies tensor `name` into dst (any device). The shapes must be equal.
  // F16 / BF16 / F32 / F64 convert to dst's float dtype (rounding to nearest
  // even when narrowing); I32 and I64 read only into the same dtype. A
  // tensor with a checksum is verified first: a mismatch is DataLoss naming
  // the file and tensor, and dst is left as it was.
  absl::Status ReadInto(absl::string_view name, const Tensor& dst) const;
  // Checks the recorded checksum of every tensor against its bytes (reads
  // the whole data section); OK for a file without checksums.
  absl::Status VerifyChecksums() const;
  // Copies dst.numel() elements of `name` starting at flat element `first`
  // into dst (any shape), with ReadInto's conversions: one contiguous part
  // of a tensor, such as expert e of a fused [E, ...] stack.
  absl::Status ReadRangeInto(absl::string_view name, int64_t first, const Tensor& dst) const;

 private:
  SafetensorsFile() = default;
  absl::Status Verify(const SafetensorsTensorInfo& info) const;
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  SafetensorsHeader header_;
};

// Copies the `info.end - info.begin` bytes at `bytes` (a tensor's range, any
// alignment) into dst with the conversions of SafetensorsFile::ReadInto.
// `label` starts error messages.
absl::Status DecodeSafetensorsTensor(absl::string_view label, const SafetensorsTensorInfo& info,
                                     const uint8_t* bytes, const Tensor& dst);

// The file dtype that holds `dtype` unchanged.
SafetensorsDType SafetensorsDTypeOf(DType dtype);

// Whether a writer records per-tensor checksums in __metadata__.
enum class SafetensorsChecksums { kNone, kXxh3 };

// Writes `tensors` (any devices) to `path`. float_storage (F16, BF16, F32 or
// F64) converts every float tensor on the way out; nullopt keeps each
// tensor's dtype. Integer tensors are always kept. Data are ordered by
// element size so that every tensor is aligned to its element size in the
// file (the header is padded with spaces to 8 bytes, as HF's writer does).
// kXxh3 adds "checksum" and "checksum.<name>" metadata (reserved keys then)
// computed from the bytes as written.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {},
                              std::optional<SafetensorsDType> float_storage = std::nullopt,
                              SafetensorsChecksums checksums = SafetensorsChecksums::kNone);

}  // namespace sb
