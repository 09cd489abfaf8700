// Communicator over NCCL on device tensors (built with SB_CUDA only; the
// rest of the code reaches it through parallel/backend.h).
//
// Bootstrap (marian-nmt / PyTorch style): the caller binds the GPU of its
// local rank (device_binding.h); rank 0 of the host group calls
// ncclGetUniqueId and broadcasts its 128 bytes as 32 i32 over MPI; every
// rank calls ncclCommInitRankConfig. Split is ncclCommSplit.
//
// Tensors: device tensors go over NCCL, enqueued on the compute stream, in
// order with the kernels around them (no host sync). Host tensors (routing
// counts, metrics, norms: a few numbers) go over the MPI "host twin": a
// group with the same members in the same order, split alongside.
//   AllReduceSum, AllGather, ReduceScatterSum, Broadcast: one NCCL call.
//   AllToAllV, AllGatherV: ncclGroupStart; ncclSend / ncclRecv per peer with
//     rows * row size elements (zero-row blocks skipped); ncclGroupEnd.
//   ...Async: on a communication stream that first waits for an event on
//     the compute stream; Wait makes the compute stream wait for the
//     collective's event (DDP-style overlap: the host never blocks).
//
// Failures: every NCCL operation records an event; the process's NcclMonitor
// (a WatchdogProbe) reports the oldest unfinished operation and
// ncclCommGetAsyncError of every communicator to the collective watchdog,
// which calls ncclCommAbort on all of them and ends the job naming the lost
// ranks (watchdog.h) on a timeout or an asynchronous error.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

struct ncclComm;     // nccl.h: typedef struct ncclComm* ncclComm_t
struct CUstream_st;  // cuda_runtime_api.h: typedef struct CUstream_st* cudaStream_t
struct CUevent_st;   // cudaEvent_t

namespace sb {

class Watchdog;
class NcclMonitor;

class NcclCommunicator : public Communicator {
 public:
  // Collective over host_world (which must outlive the result): the NCCL
  // group has its members, in its order. The calling thread must have bound
  // `device` (cudaSetDevice; BindDevice below). watchdog may be null (no
  // timeout: a world of one). stream: the compute stream (null: the legacy
  // default stream, which orders with every blocking stream).
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(Communicator& host_world,
                                                                  int device, Watchdog* watchdog,
                                                                  CUstream_st* stream = nullptr);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  int device() const { return device_; }
  // The raw handles, for benchmarks that time NCCL itself next to this class.
  ncclComm* nccl_comm() const { return comm_; }
  CUstream_st* stream() const { return stream_; }

  void AllReduceSum(const Tensor& buf) override;
  void AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override;
  void AllGather(const Tensor& send, const Tensor& recv) override;
  void AllGatherV(const Tensor& send, const Tensor& recv,
                  const std::vector<int64_t>& recv_rows) override;
  void ReduceScatterSum(const Tensor& send, const Tensor& recv) override;
  void Broadcast(const Tensor& buf, int root) override;
  // Host barrier over the twin after this rank's enqueued work has finished.
  void Barrier() override;
  std::unique_ptr<Communicator> Split(int color, int key, const std::string& name) override;
  std::unique_ptr<PendingCollective> AllReduceSumAsync(const Tensor& buf) override;
  std::unique_ptr<PendingCollective> AllToAllVAsync(const Tensor& send,
                                                     const std::vector<int64_t>& send_rows,
                                                     const Tensor& recv,
                                                     const std::vector<int64_t>& recv_rows) override;

 private:
  NcclCommunicator(ncclComm* comm, std::string name, Communicator* twin,
                   std::unique_ptr<Communicator> owned_twin, int device, CUstream_st* stream,
                   std::shared_ptr<NcclMonitor> monitor);
  // Which transport serves these tensors: true = NCCL (all on the device),
  // false = the host twin (all on the host); mixed is a check failure.
  bool OnDevice(std::initializer_list<const Tensor*> tensors, const char* op) const;
  // The grouped send/recv of AllToAllV on `stream`.
  void SendRecv(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                const std::vector<int64_t>& recv_rows, CUstream_st* stream, const char* op);
  // Starts an async op on the communication stream; see the header comment.
  CUstream_st* BeginAsync();
  std::unique_ptr<PendingCollective> EndAsync(const char* op);

  ncclComm* comm_;
  std::string name_;
  Communicator* twin_;
  std::unique_ptr<Communicator> owned_twin_;
  int device_;
  CUstream_st* stream_;
  CUstream_st* comm_stream_ = nullptr;
  CUevent_st* ready_ = nullptr;
  std::shared_ptr<NcclMonitor> monitor_;
  int rank_ = 0, size_ = 1;
};

}  // namespace sb
