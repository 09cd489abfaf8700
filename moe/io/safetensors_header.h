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
  int64_t numel() const;
};

struct SafetensorsHeader {
  uint64_t data_start = 0;                     // 8 + N: file offset of the data section
  std::vector<SafetensorsTensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;

  // Null when absent.
  const SafetensorsTensorInfo* Find(absl::string_view name) const;
};

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
