// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78; RFC 3720
// appendix B.4) and the "masked" form that TFRecord files store. Debian 12
// packages no C/C++ CRC-32C library (libabsl-dev 20220623 predates
// absl/crc; `apt-cache search crc32c` finds only a Python module), so this is
// a 1 KiB table, one byte per step: TensorBoard records are a few hundred
// bytes each, written once per log step. Tested against RFC 3720's check
// values and against records written by TensorBoard's own writer.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sb {

// CRC-32C of data[0, size), continuing from `crc` (0 to start).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

// TFRecord's masked CRC (tensorflow/core/lib/hash/crc32c.h, Mask): rotate
// right by 15 bits and add 0xa282ead8, so that a CRC of data that itself
// holds CRCs does not degenerate.
inline uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace sb
