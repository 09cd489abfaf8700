// The safetensors container (github.com/huggingface/safetensors), parsed and
// validated from bytes in memory:
//   [u64 little-endian N][N bytes of UTF-8 JSON][data section]
//   JSON = {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//           ..., "__metadata__": {str: str}}       (offsets relative to the data)
// Nothing here knows tensors or devices, so the fuzz target links this alone.
// The rules it enforces are listed in docs/formats.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sb {

// The element types we read and write (others, e.g. BOOL, U8, F8_E4M3, are
// rejected by name).
enum class SafetensorsDType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32 };

const char* SafetensorsDTypeName(SafetensorsDType dtype);  // "F32"
size_t SafetensorsDTypeSize(SafetensorsDType dtype);       // bytes per element
std::optional<SafetensorsDType> ParseSafetensorsDType(absl::string_view name);
inline bool IsFloat(SafetensorsDType d) {
  return d != SafetensorsDType::kI64 && d != SafetensorsDType::kI32;
}

struct SafetensorsTensorInfo {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar
  uint64_t begin = 0;          // byte range [begin, end) relative to the data section
  uint64_t end = 0;
  // XXH3-64 of the bytes [begin, end), from __metadata__ "checksum.<name>";
  // set for every tensor of a checksummed file, never for others.
  std::optional<uint64_t> checksum;
  int64_t numel() const;
};

struct SafetensorsHeader {
  uint64_t data_start = 0;                     // 8 + N: file offset of the data section
  std::vector<SafetensorsTensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  // __metadata__ "checksum" = "xxh3_64": every tensor carries a checksum.
  bool checksummed = false;

  // Null when absent.
  const SafetensorsTensorInfo* Find(absl::string_view name) const;
};

// Per-tensor checksums in __metadata__ (docs/formats.md, "Checksums"):
//   "checksum": "xxh3_64"  and, for every tensor, "checksum.<name>": 16
//   lowercase hex digits of XXH3_64bits(its data bytes).
// A file with the marker must list exactly its tensors; "checksum.*" keys
// without the marker, another algorithm or a malformed value are errors.
inline constexpr const char* kChecksumKey = "checksum";
inline constexpr const char* kChecksumAlgorithm = "xxh3_64";
inline constexpr const char* kChecksumPrefix = "checksum.";

// Headers above this are refused before parsing (real ones are ~100 KB even
// for 100B-parameter shards).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Validates the image file[0, size) of a whole file: after success every
// tensor's range lies inside the data section, ranges do not overlap, and
// each range holds exactly numel * dtype size bytes. `label` (the path)
// starts every error message; errors also name the tensor.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view label,
                                                         const uint8_t* file, size_t size);

// A tensor name trimmed for error messages (names are attacker-sized).
std::string QuoteTensorName(absl::string_view name);

}  // namespace sb
