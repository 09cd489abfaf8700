// Attention over a key/value cache, for incremental decoding (generate):
// the n newest tokens, at positions [past, past + n), attend to the cached
// keys and values of positions [0, past + n) under the causal mask (query t
// sees positions <= past + t). With past = 0 and n = S it computes what
// CausalAttentionForward (moe/ops/ops.h) computes for one sequence; it is a
// separate op so that the training op keeps its signature and its saved
// probabilities (decoding needs neither backward nor [S, S] buffers).
#pragma once

#include <cstdint>

#include "moe/core/tensor.h"

namespace sb::ops {

// q [n, H*hd] (RoPE applied), k_cache, v_cache [past + n, Hkv*hd] (RoPE
// applied to k), out [n, H*hd] overwritten. Query head h reads key/value
// head h / (H / Hkv) (grouped-query attention); scores are scaled by
// 1 / sqrt(hd). CPU, f32 or f64.
void CachedAttentionForward(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                            int64_t past, int num_heads, const Tensor& out);

}  // namespace sb::ops
