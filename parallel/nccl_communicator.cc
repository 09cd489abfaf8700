// NcclCommunicator and the NCCL side of the collective watchdog (see the
// header). Compiled only with SB_CUDA; plain C++ with the CUDA runtime API.
#include "parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/watchdog.h"

namespace sb {
namespace {

std::string NcclText(ncclResult_t r, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  return absl::StrCat(ncclGetErrorString(r), last && *last ? absl::StrCat(" (", last, ")") : "");
}

}  // namespace

#define SB_NCCL_CHECK(call)                                                           \
  do {                                                                                \
    const ncclResult_t sb_nccl_rc_ = (call);                                          \
    if (sb_nccl_rc_ != ncclSuccess) {                                                 \
      ::sb::FailCheck(__FILE__, __LINE__, #call,                                      \
                      "returned " + NcclText(sb_nccl_rc_, nullptr) +                  \
                          "; rerun with NCCL_DEBUG=INFO (docs/parallel.md, GPUs)");   \
    }                                                                                 \
  } while (0)

#define SB_CUDA_RT_CHECK(call)                                                        \
  do {                                                                                \
    const cudaError_t sb_cuda_rc_ = (call);                                           \
    if (sb_cuda_rc_ != cudaSuccess) {                                                 \
      ::sb::FailCheck(__FILE__, __LINE__, #call,                                      \
                      std::string("returned ") + cudaGetErrorString(sb_cuda_rc_));    \
    }                                                                                 \
  } while (0)

// Every NCCL communicator of the process and every operation they enqueued,
// for the watchdog thread (WatchdogProbe): Poll reports the oldest
// unfinished operation and any asynchronous NCCL error; Abort calls
// ncclCommAbort on every communicator.
class NcclMonitor : public WatchdogProbe {
 public:
  NcclMonitor(int device, Watchdog* watchdog) : device_(device), watchdog_(watchdog) {
    if (watchdog_) watchdog_->AddProbe(this);
  }
  ~NcclMonitor() override {
    if (watchdog_) watchdog_->RemoveProbe(this);
    for (const Work& w : works_) cudaEventDestroy(w.event);
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  }
  Watchdog* watchdog() const { return watchdog_; }
  bool aborted() const { return aborted_.load(); }

  void AddComm(ncclComm_t comm, const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    comms_.emplace_back(comm, name);
  }
  void RemoveComm(ncclComm_t comm) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < comms_.size(); ++i) {
      if (comms_[i].first == comm) {
        comms_.erase(comms_.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
  }

  // After enqueueing `op` on `stream`: an event marks its end.
  void Track(cudaStream_t stream, const char* op, const std::string& group) {
    std::lock_guard<std::mutex> lock(mu_);
    DropFinished();
    cudaEvent_t event = nullptr;
    if (free_events_.empty()) {
      SB_CUDA_RT_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    } else {
      event = free_events_.back();
      free_events_.pop_back();
    }
    SB_CUDA_RT_CHECK(cudaEventRecord(event, stream));
    works_.push_back({event, op, group, std::chrono::steady_clock::now()});
  }

  Status Poll() override {
    Status status;
    cudaSetDevice(device_);  // the watchdog thread's current device
    std::lock_guard<std::mutex> lock(mu_);
    const cudaError_t failed = DropFinished();
    if (!works_.empty()) {
      const Work& w = works_.front();
      status.op = w.op;
      status.group = w.group;
      status.waited_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w.start).count();
    }
    if (failed != cudaSuccess) {
      status.error = absl::StrCat("CUDA error ", cudaGetErrorString(failed));
      return status;
    }
    for (const auto& [comm, name] : comms_) {
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &async) != ncclSuccess) continue;
      if (async != ncclSuccess && async != ncclInProgress) {
        status.error = absl::StrCat(NcclText(async, comm), " on group '", name, "'");
        return status;
      }
    }
    return status;
  }

  void Abort() override {
    aborted_ = true;
    std::vector<ncclComm_t> comms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& c : comms_) comms.push_back(c.first);
    }
    for (ncclComm_t comm : comms) ncclCommAbort(comm);
  }

 private:
  struct Work {
    cudaEvent_t event;
    const char* op;
    std::string group;
    std::chrono::steady_clock::time_point start;
  };
  // Recycles the events of finished work from the front (mu_ held); returns
  // a CUDA error other than "not ready", if any.
  cudaError_t DropFinished() {
    while (!works_.empty()) {
      const cudaError_t r = cudaEventQuery(works_.front().event);
      if (r == cudaErrorNotReady) return cudaSuccess;
      if (r != cudaSuccess) return r;
      free_events_.push_back(works_.front().event);
      works_.pop_front();
    }
    return cudaSuccess;
  }

  const int device_;
  Watchdog* const watchdog_;
  std::atomic<bool> aborted_{false};
  std::mutex mu_;
  std::deque<Work> works_;
  std::vector<cudaEvent_t> free_events_;
  std::vector<std::pair<ncclComm_t, std::string>> comms_;
};

namespace {

ncclDataType_t NcclType(const Tensor& t, const char* op) {
  switch (t.dtype()) {
    case DType::kF32: return ncclFloat32;
    case DType::kF64: return ncclFloat64;
    case DType::kBF16: return ncclBfloat16;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
  }
  SB_CHECK(false) << "NcclCommunicator::" << op << ": unsupported dtype";
  return ncclFloat32;
}

int64_t Rows(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(0); }

char* At(const Tensor& t, int64_t row) {
  return static_cast<char*>(t.raw()) +
         static_cast<size_t>(row * RowElements(t)) * DTypeSize(t.dtype());
}

void CheckCounts(const std::vector<int64_t>& rows, int size, const Tensor& t, const char* what) {
  SB_CHECK_EQ(static_cast<int>(rows.size()), size) << what << ": one count per member";
  int64_t sum = 0;
  for (int64_t r : rows) {
    SB_CHECK_GE(r, 0) << what;
    sum += r;
  }
  SB_CHECK_EQ(sum, Rows(t)) << what << " must add up to the rows of " << t.ToString();
}

// A collective on the communication stream; Wait orders the compute stream after it.
class NcclPending : public PendingCollective {
 public:
  NcclPending(cudaEvent_t done, cudaStream_t compute) : done_(done), compute_(compute) {}
  ~NcclPending() override {
    Wait();
    cudaEventDestroy(done_);  // released once the waits on it have run
  }
  void Wait() override {
    if (waited_) return;
    waited_ = true;
    SB_CUDA_RT_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
  }
  bool Poll() override { return cudaEventQuery(done_) == cudaSuccess; }

 private:
  cudaEvent_t done_;
  cudaStream_t compute_;
  bool waited_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    Communicator& host_world, int device, Watchdog* watchdog, cudaStream_t stream) {
  if (const cudaError_t r = cudaSetDevice(device); r != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("cudaSetDevice(", device, "): ", cudaGetErrorString(r)));
  }
  static_assert(sizeof(ncclUniqueId) == 32 * sizeof(int32_t), "ncclUniqueId is 128 bytes");
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  Tensor id_words = Tensor::Zeros({32}, DType::kI32);
  if (host_world.rank() == 0) {
    // A failure here would leave the others waiting in the broadcast: check (aborts the job).
    SB_NCCL_CHECK(ncclGetUniqueId(&id));
    std::memcpy(id_words.raw(), &id, sizeof(id));
  }
  host_world.Broadcast(id_words, 0);
  std::memcpy(&id, id_words.raw(), sizeof(id));

  auto monitor = std::make_shared<NcclMonitor>(device, watchdog);
  ncclComm_t comm = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  ncclResult_t r;
  {
    // Blocks until every rank has joined: the watchdog's timeout covers it.
    Watchdog::Scope scope(watchdog, "ncclCommInitRankConfig", host_world.name().c_str());
    r = ncclCommInitRankConfig(&comm, host_world.size(), id, host_world.rank(), &config);
  }
  if (r != ncclSuccess) {
    return absl::UnavailableError(absl::StrCat(
        "ncclCommInitRankConfig (rank ", host_world.rank(), " of ", host_world.size(),
        ", GPU ", device, "): ", NcclText(r, nullptr),
        "; rerun with NCCL_DEBUG=INFO (docs/parallel.md, GPUs)"));
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(
      comm, host_world.name(), &host_world, nullptr, device, stream, std::move(monitor)));
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, std::string name, Communicator* twin,
                                   std::unique_ptr<Communicator> owned_twin, int device,
                                   cudaStream_t stream, std::shared_ptr<NcclMonitor> monitor)
    : comm_(comm),
      name_(std::move(name)),
      twin_(twin),
      owned_twin_(std::move(owned_twin)),
      device_(device),
      stream_(stream),
      monitor_(std::move(monitor)) {
  SB_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
  SB_NCCL_CHECK(ncclCommCount(comm_, &size_));
  SB_CHECK(rank_ == twin_->rank() && size_ == twin_->size())
      << "NCCL group '" << name_ << "' (rank " << rank_ << " of " << size_
      << ") differs from its MPI twin (" << twin_->rank() << " of " << twin_->size() << ")";
  SB_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
  SB_CUDA_RT_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  monitor_->AddComm(comm_, name_);
}

NcclCommunicator::~NcclCommunicator() {
  monitor_->RemoveComm(comm_);
  if (!monitor_->aborted()) {
    cudaStreamSynchronize(comm_stream_);
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
  }
  cudaEventDestroy(ready_);
  cudaStreamDestroy(comm_stream_);
}

bool NcclCommunicator::OnDevice(std::initializer_list<const Tensor*> tensors,
                                const char* op) const {
  int device = 0, host = 0;
  for (const Tensor* t : tensors) {
    SB_CHECK(t->defined()) << "NcclCommunicator::" << op << ": undefined tensor";
    (t->device() == Device::kCuda ? device : host) += 1;
  }
  SB_CHECK(device == 0 || host == 0)
      << "NcclCommunicator::" << op << ": mixes host and device tensors";
  return device > 0;
}

void NcclCommunicator::AllReduceSum(const Tensor& buf) {
  if (!OnDevice({&buf}, "AllReduceSum")) return twin_->AllReduceSum(buf);
  if (buf.numel() == 0) return;
  SB_NCCL_CHECK(ncclAllReduce(buf.raw(), buf.raw(), static_cast<size_t>(buf.numel()),
                              NcclType(buf, "AllReduceSum"), ncclSum, comm_, stream_));
  monitor_->Track(stream_, "ncclAllReduce", name_);
}

void NcclCommunicator::SendRecv(const Tensor& send, const std::vector<int64_t>& send_rows,
                                const Tensor& recv, const std::vector<int64_t>& recv_rows,
                                cudaStream_t stream, const char* op) {
  SB_CHECK(send.dtype() == recv.dtype() && RowElements(send) == RowElements(recv))
      << "NcclCommunicator::" << op << ": " << send.ToString() << " vs " << recv.ToString();
  CheckCounts(send_rows, size_, send, "send_rows");
  CheckCounts(recv_rows, size_, recv, "recv_rows");
  const ncclDataType_t type = NcclType(send, op);
  const int64_t row = RowElements(send);
  int64_t send_at = 0, recv_at = 0;
  SB_NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < size_; ++p) {
    if (send_rows[p] > 0) {
      SB_NCCL_CHECK(ncclSend(At(send, send_at), static_cast<size_t>(send_rows[p] * row), type, p,
                             comm_, stream));
    }
    if (recv_rows[p] > 0) {
      SB_NCCL_CHECK(ncclRecv(At(recv, recv_at), static_cast<size_t>(recv_rows[p] * row), type, p,
                             comm_, stream));
    }
    send_at += send_rows[p];
    recv_at += recv_rows[p];
  }
  SB_NCCL_CHECK(ncclGroupEnd());
}

void NcclCommunicator::AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows,
                                 const Tensor& recv, const std::vector<int64_t>& recv_rows) {
  if (!OnDevice({&send, &recv}, "AllToAllV")) {
    return twin_->AllToAllV(send, send_rows, recv, recv_rows);
  }
  SendRecv(send, send_rows, recv, recv_rows, stream_, "AllToAllV");
  monitor_->Track(stream_, "ncclSend/ncclRecv (all-to-all-v)", name_);
}

void NcclCommunicator::AllGather(const Tensor& send, const Tensor& recv) {
  if (!OnDevice({&send, &recv}, "AllGather")) return twin_->AllGather(send, recv);
  SB_CHECK(send.dtype() == recv.dtype() && recv.numel() == send.numel() * size_)
      << "AllGather: " << send.ToString() << " -> " << recv.ToString();
  if (send.numel() == 0) return;
  SB_NCCL_CHECK(ncclAllGather(send.raw(), recv.raw(), static_cast<size_t>(send.numel()),
                              NcclType(send, "AllGather"), comm_, stream_));
  monitor_->Track(stream_, "ncclAllGather", name_);
}

void NcclCommunicator::AllGatherV(const Tensor& send, const Tensor& recv,
                                  const std::vector<int64_t>& recv_rows) {
  if (!OnDevice({&send, &recv}, "AllGatherV")) return twin_->AllGatherV(send, recv, recv_rows);
  SB_CHECK(static_cast<int>(recv_rows.size()) == size_ && Rows(send) == recv_rows[rank_])
      << "AllGatherV: send rows = recv_rows[rank]";
  // Our block to everyone: a send buffer laid out as `size` copies is not
  // needed, NCCL sends the same pointer to each peer.
  const ncclDataType_t type = NcclType(send, "AllGatherV");
  const int64_t row = RowElements(send);
  CheckCounts(recv_rows, size_, recv, "AllGatherV recv_rows");
  int64_t recv_at = 0;
  SB_NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < size_; ++p) {
    if (recv_rows[rank_] > 0) {
      SB_NCCL_CHECK(ncclSend(send.raw(), static_cast<size_t>(recv_rows[rank_] * row), type, p,
                             comm_, stream_));
    }
    if (recv_rows[p] > 0) {
      SB_NCCL_CHECK(ncclRecv(At(recv, recv_at), static_cast<size_t>(recv_rows[p] * row), type, p,
                             comm_, stream_));
    }
    recv_at += recv_rows[p];
  }
  SB_NCCL_CHECK(ncclGroupEnd());
  monitor_->Track(stream_, "ncclSend/ncclRecv (all-gather-v)", name_);
}

void NcclCommunicator::ReduceScatterSum(const Tensor& send, const Tensor& recv) {
  if (!OnDevice({&send, &recv}, "ReduceScatterSum")) return twin_->ReduceScatterSum(send, recv);
  SB_CHECK(send.dtype() == recv.dtype() && send.numel() == recv.numel() * size_)
      << "ReduceScatterSum: " << send.ToString() << " -> " << recv.ToString();
  if (recv.numel() == 0) return;
  SB_NCCL_CHECK(ncclReduceScatter(send.raw(), recv.raw(), static_cast<size_t>(recv.numel()),
                                  NcclType(send, "ReduceScatterSum"), ncclSum, comm_, stream_));
  monitor_->Track(stream_, "ncclReduceScatter", name_);
}

void NcclCommunicator::Broadcast(const Tensor& buf, int root) {
  if (!OnDevice({&buf}, "Broadcast")) return twin_->Broadcast(buf, root);
  SB_CHECK(root >= 0 && root < size_) << "Broadcast root " << root << " of " << size_;
  if (buf.numel() == 0) return;
  SB_NCCL_CHECK(ncclBroadcast(buf.raw(), buf.raw(), static_cast<size_t>(buf.numel()),
                              NcclType(buf, "Broadcast"), root, comm_, stream_));
  monitor_->Track(stream_, "ncclBroadcast", name_);
}

void NcclCommunicator::Barrier() {
  SB_CUDA_RT_CHECK(cudaStreamSynchronize(stream_));
  SB_CUDA_RT_CHECK(cudaStreamSynchronize(comm_stream_));
  twin_->Barrier();
}

std::unique_ptr<Communicator> NcclCommunicator::Split(int color, int key,
                                                      const std::string& name) {
  std::unique_ptr<Communicator> twin = twin_->Split(color, key, name);
  ncclComm_t sub = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  {
    Watchdog::Scope scope(monitor_->watchdog(), "ncclCommSplit", name_.c_str());
    SB_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, &config));
  }
  Communicator* twin_ptr = twin.get();
  return std::unique_ptr<Communicator>(new NcclCommunicator(sub, name, twin_ptr, std::move(twin),
                                                            device_, stream_, monitor_));
}

cudaStream_t NcclCommunicator::BeginAsync() {
  SB_CUDA_RT_CHECK(cudaEventRecord(ready_, stream_));
  SB_CUDA_RT_CHECK(cudaStreamWaitEvent(comm_stream_, ready_, 0));
  return comm_stream_;
}

std::unique_ptr<PendingCollective> NcclCommunicator::EndAsync(const char* op) {
  cudaEvent_t done = nullptr;
  SB_CUDA_RT_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  SB_CUDA_RT_CHECK(cudaEventRecord(done, comm_stream_));
  monitor_->Track(comm_stream_, op, name_);
  return std::make_unique<NcclPending>(done, stream_);
}

std::unique_ptr<PendingCollective> NcclCommunicator::AllReduceSumAsync(const Tensor& buf) {
  if (!OnDevice({&buf}, "AllReduceSumAsync")) return twin_->AllReduceSumAsync(buf);
  cudaStream_t s = BeginAsync();
  if (buf.numel() > 0) {
    SB_NCCL_CHECK(ncclAllReduce(buf.raw(), buf.raw(), static_cast<size_t>(buf.numel()),
                                NcclType(buf, "AllReduceSumAsync"), ncclSum, comm_, s));
  }
  return EndAsync("ncclAllReduce (async)");
}

std::unique_ptr<PendingCollective> NcclCommunicator::AllToAllVAsync(
    const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
    const std::vector<int64_t>& recv_rows) {
  if (!OnDevice({&send, &recv}, "AllToAllVAsync")) {
    return twin_->AllToAllVAsync(send, send_rows, recv, recv_rows);
  }
  SendRecv(send, send_rows, recv, recv_rows, BeginAsync(), "AllToAllVAsync");
  return EndAsync("ncclSend/ncclRecv (async all-to-all-v)");
}

}  // namespace sb
