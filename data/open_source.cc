#include "data/batch_source.h"
#include "data/byte_text_source.h"

namespace sb {

absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(const std::string& path,
                                                             uint64_t seed) {
  auto source = ByteTextSource::Open(path, seed);
  if (!source.ok()) return source.status();
  return std::unique_ptr<BatchSource>(std::move(*source));
}

}  // namespace sb
