// ZeRO-1 optimizer-state sharding (see zero1.h).
#include "optim/zero1.h"

#include <algorithm>
#include <numeric>

#include "moe/ops/ops.h"

namespace sb {

std::vector<int> AssignOwners(const std::vector<int64_t>& sizes, int num_replicas) {
  SB_CHECK_GE(num_replicas, 1);
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<int64_t> load(static_cast<size_t>(num_replicas), 0);
  std::vector<int> owner(sizes.size(), 0);
  for (size_t i : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = r;
    load[r] += sizes[i];
  }
  return owner;
}

Zero1Optimizer::Zero1Optimizer(const switchboard::OptimizerConfig& config,
                               std::vector<Parameter*> params, ReplicaGroup replicated,
                               ReplicaGroup expert, int64_t gather_bucket_bytes)
    : bucket_bytes_(gather_bucket_bytes) {
  SB_CHECK_GE(gather_bucket_bytes, 1);
  groups_[0].replicas = std::move(replicated);
  groups_[1].replicas = std::move(expert);
  for (Parameter* p : params) groups_[p->is_expert() ? 1 : 0].params.push_back(p);
  for (Group& g : groups_) {
    SB_CHECK(g.replicas.size >= 1 && g.replicas.rank >= 0 && g.replicas.rank < g.replicas.size)
        << "ZeRO-1 replica group rank " << g.replicas.rank << " of " << g.replicas.size;
    SB_CHECK(g.replicas.size == 1 || g.replicas.all_gather_v) << "ZeRO-1: no all-gather";
    std::vector<int64_t> sizes;
    for (Parameter* p : g.params) sizes.push_back(p->value.numel());
    g.owner = AssignOwners(sizes, g.replicas.size);
    for (size_t i = 0; i < g.params.size(); ++i) owner_of_[g.params[i]] = g.owner[i];
  }
  // The inner optimizer sees the owned parameters in their original order.
  std::vector<Parameter*> owned;
  for (Parameter* p : params) {
    if (owner_of_[p] == groups_[p->is_expert() ? 1 : 0].replicas.rank) {
      owned.push_back(p);
      owned_elements_ += p->value.numel();
    }
  }
  inner_ = MakeOptimizer(config, std::move(owned));
}

int Zero1Optimizer::owner(const Parameter* param) const {
  const auto it = owner_of_.find(param);
  return it == owner_of_.end() ? -1 : it->second;
}

void Zero1Optimizer::Step(double lr) {
  inner_->Step(lr);
  for (const Group& g : groups_) Gather(g);
}

// All-gathers the owners' values in chunks of consecutive parameters of one
// dtype and at most bucket_bytes_ (at least one tensor).
void Zero1Optimizer::Gather(const Group& g) {
  const int size = g.replicas.size, rank = g.replicas.rank;
  if (size == 1) return;
  size_t begin = 0;
  while (begin < g.params.size()) {
    const DType dtype = g.params[begin]->value.dtype();
    const int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
    size_t end = begin;
    int64_t bytes = 0;
    while (end < g.params.size() && g.params[end]->value.dtype() == dtype &&
           (end == begin || bytes + g.params[end]->value.numel() * elem <= bucket_bytes_)) {
      bytes += g.params[end]->value.numel() * elem;
      ++end;
    }
    std::vector<int64_t> counts(static_cast<size_t>(size), 0);
    for (size_t i = begin; i < end; ++i) counts[g.owner[i]] += g.params[i]->value.numel();
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    Tensor send = send_.Get({counts[rank]}, dtype, Device::kCpu);
    Tensor recv = recv_.Get({total}, dtype, Device::kCpu);
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      if (g.owner[i] != rank) continue;
      const int64_t n = g.params[i]->value.numel();
      ops::Copy(g.params[i]->value.Reshape({n}), send.Rows(offset, offset + n));
      offset += n;
    }
    g.replicas.all_gather_v(send, recv, counts);
    // Member m's block holds its owned tensors of this chunk in order.
    std::vector<int64_t> cursor(static_cast<size_t>(size), 0);
    for (int m = 1; m < size; ++m) cursor[m] = cursor[m - 1] + counts[m - 1];
    for (size_t i = begin; i < end; ++i) {
      const int m = g.owner[i];
      const int64_t n = g.params[i]->value.numel();
      if (m != rank) ops::Copy(recv.Rows(cursor[m], cursor[m] + n), g.params[i]->value.Reshape({n}));
      cursor[m] += n;
    }
    begin = end;
  }
}

}  // namespace sb
