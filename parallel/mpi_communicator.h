// Communicator over MPI on host memory (f32, f64, i32, i64). Device tensors
// are rejected with a check: they need the NCCL communicator (see
// communicator.h). Every call is checked (SB_MPI_CHECK) and watched by the
// collective watchdog (watchdog.h).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace sb {

class Watchdog;

class MpiCommunicator : public Communicator {
 public:
  // owned: MPI_Comm_free on destruction (not for MPI_COMM_WORLD). watchdog
  // may be null (no timeout). The communicator gets MPI_ERRORS_RETURN.
  MpiCommunicator(MPI_Comm comm, std::string name, Watchdog* watchdog, bool owned);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  MPI_Comm comm() const { return comm_; }

  void AllReduceSum(const Tensor& buf) override;
  void AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override;
  void AllGather(const Tensor& send, const Tensor& recv) override;
  void AllGatherV(const Tensor& send, const Tensor& recv,
                  const std::vector<int64_t>& recv_rows) override;
  void ReduceScatterSum(const Tensor& send, const Tensor& recv) override;
  void Broadcast(const Tensor& buf, int root) override;
  void Barrier() override;
  std::unique_ptr<Communicator> Split(int color, int key, const std::string& name) override;
  // MPI_Iallreduce / MPI_Ialltoallv. OpenMPI advances them only inside MPI
  // calls: Poll (MPI_Testall) between pieces of other work lets them move.
  std::unique_ptr<PendingCollective> AllReduceSumAsync(const Tensor& buf) override;
  std::unique_ptr<PendingCollective> AllToAllVAsync(const Tensor& send,
                                                     const std::vector<int64_t>& send_rows,
                                                     const Tensor& recv,
                                                     const std::vector<int64_t>& recv_rows) override;

 private:
  MPI_Comm comm_;
  std::string name_;
  Watchdog* watchdog_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace sb
