// MpiCommunicator: each collective maps to one MPI call. The -V collectives
// count in rows (communicator.h): a row is sent as one contiguous MPI
// datatype, so counts and displacements stay rows (int) even when the
// element count would overflow MPI's int. Equal-count collectives do the
// same with one row type. Large in-place reductions and broadcasts are split
// into chunks of at most 2^30 elements.
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <numeric>

#include "parallel/mpi_check.h"
#include "parallel/watchdog.h"

namespace sb {
namespace {

constexpr int64_t kMaxChunkElements = int64_t{1} << 30;

MPI_Datatype BaseType(const Tensor& t, const char* op) {
  switch (t.dtype()) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF64: return MPI_DOUBLE;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
    case DType::kBF16: break;
  }
  SB_CHECK(false) << "MpiCommunicator::" << op << ": dtype " << DTypeName(t.dtype())
                  << " is not supported over MPI (use f32)";
  return MPI_DATATYPE_NULL;
}

void CheckHost(const Tensor& t, const char* op) {
  SB_CHECK(t.device() == Device::kCpu)
      << "MpiCommunicator::" << op << ": " << t.ToString()
      << " is a device tensor; MPI moves host memory (device buffers need the NCCL communicator)";
}

void* Ptr(const Tensor& t) { return t.defined() && t.numel() > 0 ? t.raw() : nullptr; }

int ToInt(int64_t n, const char* what) {
  SB_CHECK(n >= 0 && n <= INT_MAX) << what << " = " << n << " does not fit MPI's int";
  return static_cast<int>(n);
}

// A committed MPI datatype for one row of `t`'s dim 0, freed on scope exit.
class RowType {
 public:
  RowType(const Tensor& t, const char* op) : base_(BaseType(t, op)) {
    const int64_t row = RowElements(t);
    if (row == 1) {
      type_ = base_;
      return;
    }
    SB_MPI_CHECK(MPI_Type_contiguous(ToInt(row, "row elements"), base_, &type_));
    SB_MPI_CHECK(MPI_Type_commit(&type_));
    owned_ = true;
  }
  ~RowType() {
    if (owned_) MPI_Type_free(&type_);
  }
  RowType(const RowType&) = delete;
  RowType& operator=(const RowType&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype base_;
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
  bool owned_ = false;
};

// Row counts -> int counts and displacements; checks the sum against `rows`.
void CountsAndDispls(const std::vector<int64_t>& counts, int size, int64_t rows, const char* what,
                     std::vector<int>* c, std::vector<int>* d) {
  SB_CHECK_EQ(static_cast<int>(counts.size()), size) << what << ": one count per member";
  c->resize(size);
  d->resize(size);
  int64_t offset = 0;
  for (int i = 0; i < size; ++i) {
    SB_CHECK_GE(counts[i], 0) << what << "[" << i << "]";
    (*c)[i] = ToInt(counts[i], what);
    (*d)[i] = ToInt(offset, what);
    offset += counts[i];
  }
  SB_CHECK_EQ(offset, rows) << what << " must add up to the tensor's rows";
}

void CheckRows(const Tensor& a, const Tensor& b, const char* op) {
  SB_CHECK(a.dtype() == b.dtype() && RowElements(a) == RowElements(b))
      << "MpiCommunicator::" << op << ": " << a.ToString() << " vs " << b.ToString()
      << " (same dtype and row size needed)";
}

int64_t Rows(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(0); }

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, Watchdog* watchdog, bool owned)
    : comm_(comm), name_(std::move(name)), watchdog_(watchdog), owned_(owned) {
  SB_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  SB_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  SB_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::AllReduceSum(const Tensor& buf) {
  CheckHost(buf, "AllReduceSum");
  const MPI_Datatype type = BaseType(buf, "AllReduceSum");
  const size_t elem = DTypeSize(buf.dtype());
  Watchdog::Scope scope(watchdog_, "MPI_Allreduce", name_.c_str());
  for (int64_t begin = 0; begin < buf.numel(); begin += kMaxChunkElements) {
    const int64_t n = std::min(kMaxChunkElements, buf.numel() - begin);
    char* p = static_cast<char*>(buf.raw()) + static_cast<size_t>(begin) * elem;
    SB_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, static_cast<int>(n), type, MPI_SUM, comm_));
  }
}

namespace {

// Requests of one non-blocking collective and the argument arrays MPI reads
// until they finish (MPI-3: counts and displacements of a non-blocking
// collective must stay valid until completion).
class MpiPending : public PendingCollective {
 public:
  MpiPending(Watchdog* watchdog, const char* op, const std::string& group)
      : watchdog_(watchdog), op_(op), group_(group) {}
  ~MpiPending() override { Wait(); }
  void Wait() override {
    if (requests_.empty()) return;
    Watchdog::Scope scope(watchdog_, op_, group_.c_str());
    SB_MPI_CHECK(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(),
                             MPI_STATUSES_IGNORE));
    requests_.clear();
  }
  bool Poll() override {
    if (requests_.empty()) return true;
    int done = 0;
    SB_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done,
                             MPI_STATUSES_IGNORE));
    if (done) requests_.clear();
    return done != 0;
  }
  std::vector<MPI_Request> requests_;
  std::vector<int> sc_, sd_, rc_, rd_;

 private:
  Watchdog* watchdog_;
  const char* op_;
  std::string group_;
};

}  // namespace

std::unique_ptr<PendingCollective> MpiCommunicator::AllReduceSumAsync(const Tensor& buf) {
  CheckHost(buf, "AllReduceSumAsync");
  const MPI_Datatype type = BaseType(buf, "AllReduceSumAsync");
  const size_t elem = DTypeSize(buf.dtype());
  auto pending = std::make_unique<MpiPending>(watchdog_, "MPI_Iallreduce", name_);
  for (int64_t begin = 0; begin < buf.numel(); begin += kMaxChunkElements) {
    const int64_t n = std::min(kMaxChunkElements, buf.numel() - begin);
    char* p = static_cast<char*>(buf.raw()) + static_cast<size_t>(begin) * elem;
    pending->requests_.emplace_back();
    SB_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p, static_cast<int>(n), type, MPI_SUM, comm_,
                                &pending->requests_.back()));
  }
  return pending;
}

void MpiCommunicator::AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows,
                                const Tensor& recv, const std::vector<int64_t>& recv_rows) {
  CheckHost(send, "AllToAllV");
  CheckHost(recv, "AllToAllV");
  CheckRows(send, recv, "AllToAllV");
  std::vector<int> sc, sd, rc, rd;
  CountsAndDispls(send_rows, size_, Rows(send), "AllToAllV send_rows", &sc, &sd);
  CountsAndDispls(recv_rows, size_, Rows(recv), "AllToAllV recv_rows", &rc, &rd);
  RowType row(send, "AllToAllV");
  Watchdog::Scope scope(watchdog_, "MPI_Alltoallv", name_.c_str());
  SB_MPI_CHECK(MPI_Alltoallv(Ptr(send), sc.data(), sd.data(), row.get(), Ptr(recv), rc.data(),
                             rd.data(), row.get(), comm_));
}

std::unique_ptr<PendingCollective> MpiCommunicator::AllToAllVAsync(
    const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
    const std::vector<int64_t>& recv_rows) {
  CheckHost(send, "AllToAllVAsync");
  CheckHost(recv, "AllToAllVAsync");
  CheckRows(send, recv, "AllToAllVAsync");
  auto pending = std::make_unique<MpiPending>(watchdog_, "MPI_Ialltoallv", name_);
  CountsAndDispls(send_rows, size_, Rows(send), "AllToAllV send_rows", &pending->sc_,
                  &pending->sd_);
  CountsAndDispls(recv_rows, size_, Rows(recv), "AllToAllV recv_rows", &pending->rc_,
                  &pending->rd_);
  // A datatype may be freed while operations that use it are pending (MPI 4.1, 5.1.9).
  RowType row(send, "AllToAllVAsync");
  pending->requests_.emplace_back();
  SB_MPI_CHECK(MPI_Ialltoallv(Ptr(send), pending->sc_.data(), pending->sd_.data(), row.get(),
                              Ptr(recv), pending->rc_.data(), pending->rd_.data(), row.get(),
                              comm_, &pending->requests_.back()));
  return pending;
}

void MpiCommunicator::AllGather(const Tensor& send, const Tensor& recv) {
  CheckHost(send, "AllGather");
  CheckHost(recv, "AllGather");
  CheckRows(send, recv, "AllGather");
  SB_CHECK_EQ(Rows(recv), Rows(send) * size_) << "AllGather: recv rows = size * send rows";
  RowType row(send, "AllGather");
  const int n = ToInt(Rows(send), "AllGather rows");
  Watchdog::Scope scope(watchdog_, "MPI_Allgather", name_.c_str());
  SB_MPI_CHECK(MPI_Allgather(Ptr(send), n, row.get(), Ptr(recv), n, row.get(), comm_));
}

void MpiCommunicator::AllGatherV(const Tensor& send, const Tensor& recv,
                                 const std::vector<int64_t>& recv_rows) {
  CheckHost(send, "AllGatherV");
  CheckHost(recv, "AllGatherV");
  CheckRows(send, recv, "AllGatherV");
  std::vector<int> rc, rd;
  CountsAndDispls(recv_rows, size_, Rows(recv), "AllGatherV recv_rows", &rc, &rd);
  SB_CHECK_EQ(Rows(send), recv_rows[rank_]) << "AllGatherV: send rows = recv_rows[rank]";
  RowType row(send, "AllGatherV");
  Watchdog::Scope scope(watchdog_, "MPI_Allgatherv", name_.c_str());
  SB_MPI_CHECK(MPI_Allgatherv(Ptr(send), rc[rank_], row.get(), Ptr(recv), rc.data(), rd.data(),
                              row.get(), comm_));
}

void MpiCommunicator::ReduceScatterSum(const Tensor& send, const Tensor& recv) {
  CheckHost(send, "ReduceScatterSum");
  CheckHost(recv, "ReduceScatterSum");
  CheckRows(send, recv, "ReduceScatterSum");
  SB_CHECK_EQ(Rows(send), Rows(recv) * size_) << "ReduceScatterSum: send rows = size * recv rows";
  // Sums need the element type (a contiguous row type has no MPI_SUM).
  const MPI_Datatype type = BaseType(send, "ReduceScatterSum");
  const int n = ToInt(recv.numel(), "ReduceScatterSum elements");
  Watchdog::Scope scope(watchdog_, "MPI_Reduce_scatter_block", name_.c_str());
  SB_MPI_CHECK(MPI_Reduce_scatter_block(Ptr(send), Ptr(recv), n, type, MPI_SUM, comm_));
}

void MpiCommunicator::Broadcast(const Tensor& buf, int root) {
  CheckHost(buf, "Broadcast");
  SB_CHECK(root >= 0 && root < size_) << "Broadcast root " << root << " of " << size_;
  const MPI_Datatype type = BaseType(buf, "Broadcast");
  const size_t elem = DTypeSize(buf.dtype());
  Watchdog::Scope scope(watchdog_, "MPI_Bcast", name_.c_str());
  for (int64_t begin = 0; begin < buf.numel(); begin += kMaxChunkElements) {
    const int64_t n = std::min(kMaxChunkElements, buf.numel() - begin);
    char* p = static_cast<char*>(buf.raw()) + static_cast<size_t>(begin) * elem;
    SB_MPI_CHECK(MPI_Bcast(p, static_cast<int>(n), type, root, comm_));
  }
}

void MpiCommunicator::Barrier() {
  Watchdog::Scope scope(watchdog_, "MPI_Barrier", name_.c_str());
  SB_MPI_CHECK(MPI_Barrier(comm_));
}

std::unique_ptr<Communicator> MpiCommunicator::Split(int color, int key, const std::string& name) {
  MPI_Comm sub = MPI_COMM_NULL;
  {
    Watchdog::Scope scope(watchdog_, "MPI_Comm_split", name_.c_str());
    SB_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  }
  return std::make_unique<MpiCommunicator>(sub, name, watchdog_, /*owned=*/true);
}

}  // namespace sb
