// What a forward pass needs to know about where it is in training.
#pragma once

#include <cstdint>

namespace sb {

struct StepContext {
  bool training = true;     // jitter on, train capacity factor
  uint64_t seed = 0;        // run seed
  int64_t step = 0;         // optimizer step
  int64_t micro_batch = 0;  // global micro-batch index j = accum_index * world + rank
};

}  // namespace sb
