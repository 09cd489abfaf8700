// Safetensors header validation: the JSON (parsed by ParseJsonStrict, which
// also rejects duplicate names), then every entry, then overlaps.
#include "moe/io/safetensors_header.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "moe/io/json_strict.h"

namespace sb {
namespace {

using json = nlohmann::json;

constexpr size_t kLengthBytes = 8;
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeEntry {
  SafetensorsDType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {SafetensorsDType::kF64, "F64", 8}, {SafetensorsDType::kF32, "F32", 4},
    {SafetensorsDType::kF16, "F16", 2}, {SafetensorsDType::kBF16, "BF16", 2},
    {SafetensorsDType::kI64, "I64", 8}, {SafetensorsDType::kI32, "I32", 4},
};

const DTypeEntry& Entry(SafetensorsDType dtype) {
  for (const DTypeEntry& e : kDTypes)
    if (e.dtype == dtype) return e;
  return kDTypes[0];  // unreachable: every enumerator is listed
}

absl::Status FileError(absl::string_view label, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(label, ": ", what));
}

absl::Status TensorError(absl::string_view label, absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": tensor ", QuoteTensorName(name), ": ", what));
}

// A JSON integer in [0, max], or nullopt (negative, fractional, too large,
// not a number). nlohmann stores integers beyond u64 as floats.
std::optional<uint64_t> NonNegativeInteger(const json& v, uint64_t max) {
  if (!v.is_number_unsigned()) return std::nullopt;
  const uint64_t x = v.get<uint64_t>();
  if (x > max) return std::nullopt;
  return x;
}

// A short description of a JSON value for messages: numbers as written,
// anything else by type (dumping a nested value could be huge and deep).
std::string Describe(const json& v) {
  return v.is_number() ? v.dump() : std::string(v.type_name());
}

absl::StatusOr<SafetensorsTensorInfo> ParseEntry(absl::string_view label, const std::string& name,
                                                 const json& entry, uint64_t data_size) {
  if (!entry.is_object()) return TensorError(label, name, "entry is not a JSON object");
  for (const auto& [key, unused] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return TensorError(label, name, absl::StrCat("unknown field ", QuoteTensorName(key)));
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) return TensorError(label, name, absl::StrCat("missing '", key, "'"));
  }
  SafetensorsTensorInfo info;
  info.name = name;

  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) return TensorError(label, name, "'dtype' is not a string");
  const std::optional<SafetensorsDType> parsed = ParseSafetensorsDType(dtype.get<std::string>());
  if (!parsed) {
    return TensorError(label, name,
                       absl::StrCat("unsupported dtype ", QuoteTensorName(dtype.get<std::string>()),
                                    " (supported: F64, F32, F16, BF16, I64, I32)"));
  }
  info.dtype = *parsed;

  const json& shape = entry["shape"];
  if (!shape.is_array()) return TensorError(label, name, "'shape' is not an array");
  constexpr uint64_t kMaxI64 = std::numeric_limits<int64_t>::max();
  for (const json& d : shape) {
    const std::optional<uint64_t> dim = NonNegativeInteger(d, kMaxI64);
    if (!dim) {
      return TensorError(
          label, name,
          absl::StrCat("shape entry ", Describe(d), " is not an integer in [0, 2^63)"));
    }
    info.shape.push_back(static_cast<int64_t>(*dim));
  }
  // numel, or overflow; a zero anywhere makes it 0 whatever the other dims.
  uint64_t numel = 1;
  bool numel_overflows = false;
  if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) {
    numel = 0;
  } else {
    for (int64_t d : info.shape) {
      if (numel > kMaxI64 / static_cast<uint64_t>(d)) {
        numel_overflows = true;
        break;
      }
      numel *= static_cast<uint64_t>(d);
    }
  }
  const uint64_t elem = Entry(info.dtype).size;
  if (numel_overflows || numel > kMaxI64 / elem)
    return TensorError(label, name, "shape has more elements than a 64-bit size can hold");

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    return TensorError(label, name, "'data_offsets' is not an array of two integers");
  const std::optional<uint64_t> begin = NonNegativeInteger(offsets[0], kMaxI64);
  const std::optional<uint64_t> end = NonNegativeInteger(offsets[1], kMaxI64);
  if (!begin || !end)
    return TensorError(label, name, "'data_offsets' entries must be integers in [0, 2^63)");
  if (*begin > *end)
    return TensorError(label, name,
                       absl::StrCat("data_offsets [", *begin, ", ", *end, "]: begin is after end"));
  if (*end > data_size) {
    return TensorError(label, name,
                       absl::StrCat("data_offsets [", *begin, ", ", *end,
                                    "] run past the data section (", data_size, " bytes)"));
  }
  if (*end - *begin != numel * elem) {
    return TensorError(
        label, name,
        absl::StrCat("holds ", *end - *begin, " bytes but ", Entry(info.dtype).name, " shape [",
                     absl::StrJoin(info.shape, ", "), "] needs ", numel * elem));
  }
  info.begin = *begin;
  info.end = *end;
  return info;
}

absl::Status ParseMetadata(absl::string_view label, const json& value,
                           std::map<std::string, std::string>& out) {
  if (!value.is_object()) return FileError(label, "'__metadata__' is not a JSON object");
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      return FileError(label, absl::StrCat("'__metadata__' value of ", QuoteTensorName(key),
                                           " is not a string"));
    }
    out[key] = v.get<std::string>();
  }
  return absl::OkStatus();
}

std::optional<uint64_t> ParseHex64(absl::string_view text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = v << 4 | static_cast<uint64_t>(digit);
  }
  return v;
}

// Moves the "checksum.<name>" metadata entries onto their tensors.
absl::Status ParseChecksums(absl::string_view label, SafetensorsHeader& header) {
  auto marker = header.metadata.find(kChecksumKey);
  header.checksummed = marker != header.metadata.end();
  if (header.checksummed && marker->second != kChecksumAlgorithm) {
    return FileError(label, absl::StrCat("__metadata__.", kChecksumKey, " = ",
                                         QuoteTensorName(marker->second), " is not a checksum this build knows (", kChecksumAlgorithm,
                                         ")"));
  }
  const absl::string_view prefix = kChecksumPrefix;
  size_t listed = 0;
  for (auto it = header.metadata.lower_bound(kChecksumPrefix);
       it != header.metadata.end() && absl::string_view(it->first).substr(0, prefix.size()) == prefix;
       ++it, ++listed) {
    const absl::string_view name = absl::string_view(it->first).substr(prefix.size());
    if (!header.checksummed) {
      return FileError(label, absl::StrCat("__metadata__ has ", QuoteTensorName(it->first),
                                           " but no \"", kChecksumKey, "\" entry"));
    }
    auto t = std::lower_bound(
        header.tensors.begin(), header.tensors.end(), name,
        [](const SafetensorsTensorInfo& info, absl::string_view n) { return info.name < n; });
    if (t == header.tensors.end() || t->name != name) {
      return FileError(label, absl::StrCat("__metadata__ has a checksum for ",
                                           QuoteTensorName(name), ", which is not a tensor of the file"));
    }
    t->checksum = ParseHex64(it->second);
    if (!t->checksum) {
      return TensorError(label, name, absl::StrCat("checksum ", QuoteTensorName(it->second),
                                                   " is not 16 lowercase hex digits"));
    }
  }
  if (header.checksummed && listed != header.tensors.size()) {
    for (const SafetensorsTensorInfo& t : header.tensors) {
      if (!t.checksum) {
        return TensorError(label, t.name, absl::StrCat("no checksum, but __metadata__.", kChecksumKey,
                                                       " says every tensor has one"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsHeader> Parse(absl::string_view label, const uint8_t* file, size_t size) {
  if (size < kLengthBytes) {
    return FileError(
        label, absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  }
  uint64_t n = 0;
  for (size_t i = 0; i < kLengthBytes; ++i) n |= static_cast<uint64_t>(file[i]) << (8 * i);
  if (n > kMaxSafetensorsHeaderBytes) {
    return FileError(label, absl::StrCat("header length ", n, " exceeds the limit of ",
                                         kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (n > size - kLengthBytes) {
    return FileError(label, absl::StrCat("header length ", n, " runs past the end of the file (",
                                         size, " bytes)"));
  }
  SafetensorsHeader header;
  header.data_start = kLengthBytes + n;
  const uint64_t data_size = size - header.data_start;

  absl::StatusOr<json> root = ParseJsonStrict(
      label, absl::string_view(reinterpret_cast<const char*>(file) + kLengthBytes, n));
  if (!root.ok()) return root.status();
  if (!root->is_object()) return FileError(label, "header is not a JSON object");

  for (const auto& [name, value] : root->items()) {
    if (name == kMetadataKey) {
      if (absl::Status s = ParseMetadata(label, value, header.metadata); !s.ok()) return s;
      continue;
    }
    absl::StatusOr<SafetensorsTensorInfo> info = ParseEntry(label, name, value, data_size);
    if (!info.ok()) return info.status();
    header.tensors.push_back(*std::move(info));
  }
  // json objects iterate in key order, so `tensors` is sorted by name.
  if (absl::Status s = ParseChecksums(label, header); !s.ok()) return s;

  // Overlaps: sort non-empty ranges by begin; each must start at or after
  // the previous end. Gaps are allowed (docs/formats.md).
  std::vector<const SafetensorsTensorInfo*> by_offset;
  for (const SafetensorsTensorInfo& t : header.tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsTensorInfo& prev = *by_offset[i - 1];
    const SafetensorsTensorInfo& cur = *by_offset[i];
    if (cur.begin < prev.end) {
      return TensorError(
          label, cur.name,
          absl::StrCat("bytes [", cur.begin, ", ", cur.end, ") overlap tensor ",
                       QuoteTensorName(prev.name), " [", prev.begin, ", ", prev.end, ")"));
    }
  }
  return header;
}

}  // namespace

const char* SafetensorsDTypeName(SafetensorsDType dtype) { return Entry(dtype).name; }
size_t SafetensorsDTypeSize(SafetensorsDType dtype) { return Entry(dtype).size; }

std::optional<SafetensorsDType> ParseSafetensorsDType(absl::string_view name) {
  for (const DTypeEntry& e : kDTypes)
    if (name == e.name) return e.dtype;
  return std::nullopt;
}

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated not to overflow
  return n;
}

const SafetensorsTensorInfo* SafetensorsHeader::Find(absl::string_view name) const {
  auto it = std::lower_bound(
      tensors.begin(), tensors.end(), name,
      [](const SafetensorsTensorInfo& t, absl::string_view n) { return t.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

std::string QuoteTensorName(absl::string_view name) {
  constexpr size_t kMax = 120;
  if (name.size() <= kMax) return absl::StrCat("'", name, "'");
  // Cut on a UTF-8 boundary so the message stays valid text.
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("'", name.substr(0, cut), "...' (", name.size(), " bytes)");
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view label,
                                                         const uint8_t* file, size_t size) {
  // nlohmann reports syntax errors without exceptions here; what remains
  // (allocation failure) still must not escape as a crash.
  try {
    return Parse(label, file, size);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat(label, ": cannot parse the header: ", e.what()));
  }
}

}  // namespace sb
