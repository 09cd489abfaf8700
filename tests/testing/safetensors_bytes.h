// Test helpers that edit safetensors files as bytes (to damage them the way
// disks, copies and hand edits do): the header's JSON, a tensor's data
// range, and the file with another header.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "nlohmann/json.hpp"

namespace sb::testing {

struct SafetensorsHeaderBytes {
  uint64_t length = 0;  // N, the JSON's byte count
  nlohmann::json json;
};

inline SafetensorsHeaderBytes ReadSafetensorsHeader(const std::string& file) {
  SafetensorsHeaderBytes h;
  for (int i = 0; i < 8; ++i) h.length |= static_cast<uint64_t>(static_cast<uint8_t>(file[i])) << (8 * i);
  h.json = nlohmann::json::parse(file.substr(8, h.length));
  return h;
}

// File offset and byte count of tensor `name`'s data.
inline std::pair<size_t, size_t> TensorDataRange(const std::string& file, const std::string& name) {
  const SafetensorsHeaderBytes h = ReadSafetensorsHeader(file);
  const auto& offsets = h.json.at(name).at("data_offsets");
  const size_t begin = offsets[0].get<size_t>(), end = offsets[1].get<size_t>();
  return {8 + h.length + begin, end - begin};
}

// `file` with its header replaced by `header` (padded to 8 bytes); data
// offsets are relative to the data section, so they stay valid.
inline std::string WithSafetensorsHeader(const std::string& file, const nlohmann::json& header) {
  const SafetensorsHeaderBytes old = ReadSafetensorsHeader(file);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string length(8, '\0');
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>(text.size() >> (8 * i));
  return length + text + file.substr(8 + old.length);
}

}  // namespace sb::testing
