// Comparing tensors with a tolerance relative to the reference's scale:
// |actual - expected| <= rtol * max |expected| elementwise. A failure prints
// the worst element (index, actual, expected) and the scale; the return
// value is the worst error relative to the scale (for printing measured errors).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moe/core/tensor.h"

namespace sb::testing {

inline double ExpectRelClose(const Tensor& actual, const Tensor& expected, double rtol,
                             const std::string& what) {
  const std::vector<double> a = actual.ToDoubles(), e = expected.ToDoubles();
  EXPECT_EQ(a.size(), e.size()) << what;
  if (a.size() != e.size()) return INFINITY;
  double scale = 0, worst = -1;
  size_t at = 0;
  for (double v : e) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(a[i] - e[i]) > worst) {
      worst = std::abs(a[i] - e[i]);
      at = i;
    }
  }
  EXPECT_LE(worst, rtol * scale) << what << ": worst index " << at << " actual " << a[at]
                                 << " expected " << e[at] << " (scale " << scale << ")";
  return scale > 0 ? worst / scale : worst;
}

}  // namespace sb::testing
