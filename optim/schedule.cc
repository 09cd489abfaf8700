// Learning-rate schedules (see schedule.h for the formulas and the choice of
// the step at which warmup ends).
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "moe/core/check.h"

namespace sb {

double LearningRate(const switchboard::ScheduleConfig& schedule, double peak_lr, int64_t step,
                    int64_t total_steps) {
  SB_CHECK_GE(step, 0) << "LearningRate: step is 0-based";
  const int64_t warmup = schedule.warmup_steps();
  SB_CHECK_GE(warmup, 0) << "schedule.warmup_steps";
  const double n = static_cast<double>(step + 1);  // updates done after this one
  if (step < warmup) return peak_lr * n / static_cast<double>(warmup);

  switch (schedule.kind()) {
    case switchboard::ScheduleConfig::CONSTANT:
      return peak_lr;
    case switchboard::ScheduleConfig::INVERSE_SQRT:
      return peak_lr * std::sqrt(static_cast<double>(std::max<int64_t>(warmup, 1)) / n);
    case switchboard::ScheduleConfig::COSINE: {
      const int64_t decay_len =
          schedule.decay_steps() > 0 ? schedule.decay_steps() : total_steps - warmup;
      // No room to decay (total_steps <= warmup): the floor, as past the end.
      const double progress =
          decay_len > 0
              ? std::clamp((n - static_cast<double>(warmup)) / static_cast<double>(decay_len), 0.0, 1.0)
              : 1.0;
      const double ratio = schedule.min_lr_ratio();
      const double pi = 3.14159265358979323846;
      return peak_lr * (ratio + (1.0 - ratio) * 0.5 * (1.0 + std::cos(pi * progress)));
    }
  }
  SB_CHECK(false) << "unknown schedule.kind " << static_cast<int>(schedule.kind());
  return 0.0;
}

}  // namespace sb
