// Crafted inputs for the all-to-all tests (nccl-tests style): every row's
// values say where it came from and where it goes, as small integers that
// are exact in f32, f64, i32, i64 and bf16, so a misrouted row shows up as
// a wrong value rather than a tolerance miss.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace sb::testing {

// Element `col` of row `k` of the block that `from` sends to `to` (a rank,
// or a global expert id for dispatcher tests).
inline double CraftedCode(int from, int to, int64_t k, int col) {
  return ((from * 16.0 + to) * 8 + k) * 4 + col;
}

// What member `rank` of `members` sends and receives when member s sends
// count(s, d) rows of `cols` values to member d.
struct CraftedExchange {
  std::vector<int64_t> send_rows, recv_rows;  // [members]
  std::vector<double> values;                 // the send buffer, block by block
  int64_t total_send = 0, total_recv = 0;
};

inline CraftedExchange CraftAllToAll(int members, int rank, int cols,
                                     const std::function<int64_t(int, int)>& count) {
  CraftedExchange x;
  for (int p = 0; p < members; ++p) {
    x.send_rows.push_back(count(rank, p));
    x.recv_rows.push_back(count(p, rank));
    x.total_send += x.send_rows.back();
    x.total_recv += x.recv_rows.back();
    for (int64_t k = 0; k < x.send_rows.back(); ++k)
      for (int col = 0; col < cols; ++col) x.values.push_back(CraftedCode(rank, p, k, col));
  }
  return x;
}

// A dispatcher's input on `rank`: count(rank, e) rows for each of `experts`
// global experts, grouped by expert (send_rows = rows per expert).
inline CraftedExchange CraftPerExpert(int experts, int rank, int cols,
                                      const std::function<int64_t(int, int)>& count) {
  CraftedExchange x;
  for (int e = 0; e < experts; ++e) {
    x.send_rows.push_back(count(rank, e));
    x.total_send += x.send_rows.back();
    for (int64_t k = 0; k < x.send_rows.back(); ++k)
      for (int col = 0; col < cols; ++col) x.values.push_back(CraftedCode(rank, e, k, col));
  }
  return x;
}

}  // namespace sb::testing
