// Learning-rate schedules: linear warmup, then cosine / inverse-sqrt / constant.
//
// With n = step + 1 (updates done once this one is applied), W =
// warmup_steps and lr the peak:
//   warmup (step < W):  lr * n / W              (W = 0: no warmup)
//   COSINE:             lr * (r + (1 - r) * (1 + cos(pi * p)) / 2),
//                       p = clamp((n - W) / D, 0, 1), r = min_lr_ratio,
//                       D = decay_steps, or total_steps - W when 0;
//                       D <= 0 (a run no longer than its warmup): p = 1
//   INVERSE_SQRT:       lr * sqrt(max(W, 1) / n)       (T5's rsqrt decay)
//   CONSTANT:           lr
// Every formula is a function of n and equals lr at n = W, so the curve is
// continuous across the end of warmup: the last warmup step (step W - 1)
// uses the peak, the next one already decays (cosine: p = 1/D), and the
// last step of the run (step W + D - 1 = total_steps - 1) uses exactly
// r * lr. Steps past the end keep r * lr (cosine) or keep decaying
// (inverse-sqrt). This is Megatron-LM's schedule (1-based num_steps) and
// Hugging Face's get_cosine_schedule_with_warmup shifted by one step so
// that the first update does not get lr = 0.
#pragma once

#include <cstdint>

#include "configs/switchboard.pb.h"

namespace sb {

// Learning rate for optimizer step `step` (0-based: the first update uses
// step 0) with peak lr `peak_lr` over a run of `total_steps`.
double LearningRate(const switchboard::ScheduleConfig& schedule, double peak_lr, int64_t step,
                    int64_t total_steps);

}  // namespace sb
