// Learning-rate schedules: linear warmup, then cosine / inverse-sqrt / constant.
#pragma once

#include <cstdint>

#include "configs/switchboard.pb.h"

namespace sb {

// Learning rate for optimizer step `step` (0-based: the first update uses
// step 0) with peak lr `peak_lr` over a run of `total_steps`.
double LearningRate(const switchboard::ScheduleConfig& schedule, double peak_lr, int64_t step,
                    int64_t total_steps);

}  // namespace sb
