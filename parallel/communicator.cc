// Helpers shared by the communicators, and SelfCommunicator (a group of one).
#include "parallel/communicator.h"

#include "moe/ops/ops.h"

namespace sb {

std::vector<double> AllReduceSum(Communicator& comm, std::vector<double> values) {
  if (comm.size() == 1 || values.empty()) return values;
  Tensor buf = Tensor::FromVector(values, {static_cast<int64_t>(values.size())});
  comm.AllReduceSum(buf);
  const double* p = buf.data<double>();
  return std::vector<double>(p, p + values.size());
}

int64_t RowElements(const Tensor& t) {
  if (t.ndim() <= 1) return 1;
  int64_t n = 1;
  for (int i = 1; i < t.ndim(); ++i) n *= t.dim(i);
  return n;
}

namespace {
class FinishedCollective : public PendingCollective {
 public:
  void Wait() override {}
};
}  // namespace

std::unique_ptr<PendingCollective> Communicator::AllReduceSumAsync(const Tensor& buf) {
  AllReduceSum(buf);
  return std::make_unique<FinishedCollective>();
}

std::unique_ptr<PendingCollective> Communicator::AllToAllVAsync(
    const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
    const std::vector<int64_t>& recv_rows) {
  AllToAllV(send, send_rows, recv, recv_rows);
  return std::make_unique<FinishedCollective>();
}

namespace {
void CheckCopy(const Tensor& src, const Tensor& dst, const char* what) {
  SB_CHECK(src.dtype() == dst.dtype() && src.numel() == dst.numel())
      << "SelfCommunicator::" << what << ": " << src.ToString() << " -> " << dst.ToString();
}
void CopyIfDistinct(const Tensor& src, const Tensor& dst) {
  if (src.numel() > 0 && src.raw() != dst.raw()) ops::Copy(src, dst);
}
}  // namespace

void SelfCommunicator::AllReduceSum(const Tensor&) {}

void SelfCommunicator::AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows,
                                 const Tensor& recv, const std::vector<int64_t>& recv_rows) {
  SB_CHECK(send_rows.size() == 1 && recv_rows.size() == 1 && send_rows[0] == recv_rows[0])
      << "SelfCommunicator::AllToAllV: counts for one member must match";
  CheckCopy(send, recv, "AllToAllV");
  CopyIfDistinct(send, recv);
}

void SelfCommunicator::AllGather(const Tensor& send, const Tensor& recv) {
  CheckCopy(send, recv, "AllGather");
  CopyIfDistinct(send, recv);
}

void SelfCommunicator::AllGatherV(const Tensor& send, const Tensor& recv,
                                  const std::vector<int64_t>& recv_rows) {
  SB_CHECK(recv_rows.size() == 1) << "SelfCommunicator::AllGatherV: one count expected";
  CheckCopy(send, recv, "AllGatherV");
  CopyIfDistinct(send, recv);
}

void SelfCommunicator::ReduceScatterSum(const Tensor& send, const Tensor& recv) {
  CheckCopy(send, recv, "ReduceScatterSum");
  CopyIfDistinct(send, recv);
}

void SelfCommunicator::Broadcast(const Tensor&, int root) {
  SB_CHECK_EQ(root, 0) << "SelfCommunicator::Broadcast root";
}

std::unique_ptr<Communicator> SelfCommunicator::Split(int, int, const std::string& name) {
  return std::make_unique<SelfCommunicator>(name);
}

}  // namespace sb
