// IEEE 754 binary16 ("F16") <-> float. Our tensors have no f16 dtype; these
// serve safetensors files that store it. Rounding is to nearest, ties to even,
// and NaN handling follows numpy's npy_floatbits_to_halfbits, which the
// tests compare against bit for bit (tests/testdata/safetensors/).
#pragma once

#include <cstdint>
#include <cstring>

namespace sb {

// Exact: every half is a float.
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal m * 2^-24: normalise the mantissa.
    uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t exp = (x >> 23) & 0xffu;
  const uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) {
    if (mant == 0) return sign | 0x7c00u;  // inf
    // NaN: keep the top payload bits, never turn into inf.
    uint16_t h = static_cast<uint16_t>(0x7c00u + (mant >> 13));
    if (h == 0x7c00u) ++h;
    return sign | h;
  }
  if (exp >= 143) return sign | 0x7c00u;  // >= 2^16: overflows to inf
  if (exp >= 113) {
    // Normal half: drop 13 mantissa bits, round half to even; a carry may
    // ripple into the exponent (and up to inf), which is the right answer.
    uint32_t h = ((exp - 112) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  if (exp < 102) return sign;  // below 2^-25: rounds to zero
  // Subnormal half: value * 2^24 rounded to an integer in [0, 1024].
  const uint32_t m = mant | 0x800000u;
  const uint32_t shift = 126 - exp;  // 14..24
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

}  // namespace sb
