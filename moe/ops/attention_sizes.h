// The sizes of one causal GQA attention call, read off its tensors and
// checked against each other; shared by the CPU reference and the GPU
// paths (each adds its own dtype rules).
#pragma once

#include <cstdint>

#include "moe/core/tensor.h"

namespace sb::ops {

struct AttentionSizes {
  int64_t B, S, H, Hkv, hd;
  int64_t group() const { return H / Hkv; }
};

// q [B*S, H*hd], k [B*S, Hkv*hd], lse [B, H, S].
inline AttentionSizes AttentionSizesOf(const Tensor& q, const Tensor& k, const Tensor& lse,
                                       int seq_len) {
  AttentionSizes s;
  SB_CHECK(seq_len > 0 && lse.ndim() == 3) << "attention: seq_len " << seq_len << ", lse "
                                           << lse.ToString();
  s.S = seq_len;
  s.B = q.dim(0) / seq_len;
  s.H = lse.dim(1);
  s.hd = s.H > 0 ? q.dim(1) / s.H : 0;
  s.Hkv = s.hd > 0 ? k.dim(1) / s.hd : 0;
  SB_CHECK(s.B * s.S == q.dim(0) && s.H * s.hd == q.dim(1) && s.Hkv * s.hd == k.dim(1) &&
           s.Hkv > 0 && s.H % s.Hkv == 0 && lse.dim(0) == s.B && lse.dim(2) == s.S)
      << "attention shapes q " << q.ToString() << " k " << k.ToString() << " lse " << lse.ToString()
      << " (seq_len " << seq_len << ")";
  return s;
}

}  // namespace sb::ops
