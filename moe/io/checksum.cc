#include "moe/io/checksum.h"

#include "absl/strings/str_format.h"

// xxHash's documented header-only mode: the implementation is compiled into
// this file, with every symbol static.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sb {

uint64_t Xxh3_64(const void* data, size_t size) { return XXH3_64bits(data, size); }

std::string ChecksumHex(uint64_t checksum) { return absl::StrFormat("%016x", checksum); }

}  // namespace sb
