// libFuzzer target for the safetensors header parser (ParseSafetensorsHeader).
// Two input modes, chosen by the first byte:
//   even: the rest is a whole file image, length prefix included;
//   odd:  the next 2 bytes give a data-section size d, the rest is header
//         text + d data bytes, and the fuzzer writes a correct length prefix
//         (so mutations spend their time in the JSON and offset rules rather
//         than on guessing the 8-byte length).
// After a successful parse it checks the promises callers rely on and
// touches the first and last byte of every tensor, so AddressSanitizer
// reports any range the validator let through outside the buffer.
// Build and run: docs/formats.md ("Fuzzing").
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "moe/io/safetensors_header.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

void CheckInvariants(const sb::SafetensorsHeader& h, const uint8_t* file, size_t size) {
  Require(h.data_start >= 8 && h.data_start <= size);
  const uint64_t data_size = size - h.data_start;
  volatile uint8_t sink = 0;
  const sb::SafetensorsTensorInfo* prev = nullptr;
  for (const sb::SafetensorsTensorInfo& t : h.tensors) {
    Require(prev == nullptr || prev->name < t.name);  // sorted and unique
    Require(h.Find(t.name) == &t);
    Require(t.begin <= t.end && t.end <= data_size);
    Require(t.end - t.begin ==
            static_cast<uint64_t>(t.numel()) * sb::SafetensorsDTypeSize(t.dtype));
    for (int64_t d : t.shape) Require(d >= 0);
    if (t.end > t.begin)
      sink = sink + file[h.data_start + t.begin] + file[h.data_start + t.end - 1];
    prev = &t;
  }
  // No two non-empty ranges share a byte (quadratic, but inputs are small).
  for (size_t i = 0; i < h.tensors.size(); ++i)
    for (size_t j = i + 1; j < h.tensors.size(); ++j) {
      const auto& a = h.tensors[i];
      const auto& b = h.tensors[j];
      if (a.end > a.begin && b.end > b.begin) Require(a.end <= b.begin || b.end <= a.begin);
    }
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> file;
  if ((data[0] & 1) == 0) {
    file.assign(data + 1, data + size);
  } else {
    if (size < 3) return 0;
    const size_t rest = size - 3;
    const size_t data_bytes = std::min<size_t>(rest, data[1] | (size_t{data[2]} << 8));
    const uint64_t header_bytes = rest - data_bytes;
    file.resize(8);
    for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(header_bytes >> (8 * i));
    file.insert(file.end(), data + 3, data + size);
  }
  // An exact-size heap copy: ASan flags a read one past the end.
  uint8_t* image = static_cast<uint8_t*>(std::malloc(file.size() ? file.size() : 1));
  if (!file.empty()) std::memcpy(image, file.data(), file.size());
  const absl::StatusOr<sb::SafetensorsHeader> header =
      sb::ParseSafetensorsHeader("fuzz", image, file.size());
  if (header.ok())
    CheckInvariants(*header, image, file.size());
  else
    Require(!header.status().message().empty());
  std::free(image);
  return 0;
}
