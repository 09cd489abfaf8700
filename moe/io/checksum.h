// Content checksums of tensor data: XXH3 64-bit from xxHash (Debian's
// libxxhash-dev, used header-only so that no shared library has to travel
// with the binary to a bare GPU machine). Not cryptographic: it catches
// flipped bits, zeroed pages, swapped or truncated ranges, not an attacker.
// Checkpoint shards record one per tensor (docs/formats.md, "Checksums").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sb {

// XXH3_64bits(data, size), seed 0: what `xxhsum -H3` (Debian package
// xxhash) and Python's xxhash.xxh3_64 give for the same bytes.
uint64_t Xxh3_64(const void* data, size_t size);

// 16 lowercase hex digits, the form stored in safetensors metadata.
std::string ChecksumHex(uint64_t checksum);

}  // namespace sb
