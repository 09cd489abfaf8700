// Counter-based random numbers: value i of stream `key` is a pure function of
// (key, i), so every layout of ranks and threads draws the same numbers
// (router jitter keyed by seed, step, micro-batch and layer; parameter init
// keyed by seed and parameter). SplitMix64 finaliser (Steele et al., 2014).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "moe/core/host_device.h"

// Mix64 and UniformAt also run in CUDA kernels (router jitter), so the GPU
// draws exactly the CPU's numbers.
namespace sb {

SB_HOST_DEVICE inline uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Folds several integers (seed, step, ...) into one stream key.
inline uint64_t StreamKey(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x5eedULL;
  for (uint64_t p : parts) h = Mix64(h ^ Mix64(p));
  return h;
}

// Uniform in [0, 1) with 53 random bits.
SB_HOST_DEVICE inline double UniformAt(uint64_t key, uint64_t i) {
  return static_cast<double>(Mix64(key ^ Mix64(i)) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal (Box-Muller on two uniforms of the stream).
inline double NormalAt(uint64_t key, uint64_t i) {
  const double u1 = 1.0 - UniformAt(key, 2 * i);  // (0, 1]
  const double u2 = UniformAt(key, 2 * i + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace sb
