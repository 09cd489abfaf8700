// The collectives that data and expert parallelism need, behind one
// interface (marian-nmt / Megatron style): MpiCommunicator moves host
// tensors over MPI, SelfCommunicator serves a group of one, and a NCCL
// implementation can slot in for device tensors (see "NCCL" below).
//
// Conventions shared by every implementation:
//  * A call is collective over the group: every member calls it, in the same
//    order, with matching dtypes and counts. Results are complete when the
//    call returns (host) or ordered before later work on the same device
//    (CUDA: enqueued on the current stream).
//  * Counts of the -V collectives are in ROWS of dim 0: a tensor [N, D] has
//    rows of D elements (a 1-D tensor has rows of one element). Send and
//    receive tensors must have the same row size. Blocks are contiguous and
//    in member order, so displacements are the exclusive prefix sums of the
//    counts and never passed explicitly.
//  * Supported dtypes: f32, f64, i32, i64. Reductions are sums.
//
//  * The ...Async forms start a collective and return a PendingCollective;
//    they count as collectives in the order they are STARTED (every member
//    starts the same sequence), and their buffers must stay untouched until
//    Wait(). The defaults run the blocking call and return a finished handle.
//
// NCCL (nccl_communicator.h): rank 0 calls ncclGetUniqueId, Broadcast sends
// its 128 bytes as 32 i32 over the MPI world, every rank calls
// ncclCommInitRank on the GPU of its local rank; Split maps to
// ncclCommSplit. AllReduce / AllGather / ReduceScatter / Broadcast map one
// to one; AllToAllV is ncclGroupStart, then for every peer p ncclSend(send
// rows of p) and ncclRecv(recv rows from p) with element counts = rows * row
// size, then ncclGroupEnd; AllGatherV is the same with one send to every
// peer. Device tensors go over NCCL, host tensors over the MPI twin group;
// counts stay on the host (they come from a host-side plan), so no call
// needs a device sync.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moe/core/tensor.h"

namespace sb {

// A collective started by an ...Async call. Wait() makes its result visible
// to later work: on the host for MPI (blocks until done), on the compute
// stream for NCCL (the stream waits on an event; the host does not block).
// Destroying an unfinished handle waits for it.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void Wait() = 0;
  // Lets a host transport make progress without blocking (MPI only advances
  // non-blocking collectives inside MPI calls); true once finished.
  virtual bool Poll() { return true; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // For messages: "world", "ep", "edp" (expert data-parallel).
  virtual const std::string& name() const = 0;

  // buf = sum over members of buf (in place).            buf [any]
  virtual void AllReduceSum(const Tensor& buf) = 0;
  // Member m's block of send_rows[p] rows goes to member p; recv receives
  // recv_rows[s] rows from each member s, in member order.
  //   send [sum(send_rows), ...], recv [sum(recv_rows), ...]; counts [size()]
  virtual void AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows,
                         const Tensor& recv, const std::vector<int64_t>& recv_rows) = 0;
  // recv = concatenation of every member's send.        send [n, ...], recv [size() * n, ...]
  virtual void AllGather(const Tensor& send, const Tensor& recv) = 0;
  // recv = concatenation of every member's send, member m sends recv_rows[m] rows.
  //   send [recv_rows[rank()], ...], recv [sum(recv_rows), ...]
  virtual void AllGatherV(const Tensor& send, const Tensor& recv,
                          const std::vector<int64_t>& recv_rows) = 0;
  // recv = block rank() of the sum over members of send.
  //   send [size() * n, ...], recv [n, ...]
  virtual void ReduceScatterSum(const Tensor& send, const Tensor& recv) = 0;
  // buf of member `root` is copied to every member.      buf [any]
  virtual void Broadcast(const Tensor& buf, int root) = 0;
  virtual void Barrier() = 0;

  // Non-blocking AllReduceSum / AllToAllV (see the conventions above).
  virtual std::unique_ptr<PendingCollective> AllReduceSumAsync(const Tensor& buf);
  virtual std::unique_ptr<PendingCollective> AllToAllVAsync(const Tensor& send,
                                                             const std::vector<int64_t>& send_rows,
                                                             const Tensor& recv,
                                                             const std::vector<int64_t>& recv_rows);

  // Sub-groups as MPI_Comm_split: members with equal color form a group,
  // ordered by key (then by rank). Collective over this group.
  virtual std::unique_ptr<Communicator> Split(int color, int key, const std::string& name) = 0;
};

// Sums a few host numbers over the group (metrics, norms): one AllReduceSum.
std::vector<double> AllReduceSum(Communicator& comm, std::vector<double> values);

// Elements per row of dim 0 (1 for 1-D tensors, 0 for empty shapes' rows).
int64_t RowElements(const Tensor& t);

// A group of one: every collective is a copy (or nothing). Used for a world
// of one without MPI and for groups that have a single member.
class SelfCommunicator : public Communicator {
 public:
  explicit SelfCommunicator(std::string name = "self") : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  void AllReduceSum(const Tensor& buf) override;
  void AllToAllV(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override;
  void AllGather(const Tensor& send, const Tensor& recv) override;
  void AllGatherV(const Tensor& send, const Tensor& recv,
                  const std::vector<int64_t>& recv_rows) override;
  void ReduceScatterSum(const Tensor& send, const Tensor& recv) override;
  void Broadcast(const Tensor& buf, int root) override;
  void Barrier() override {}
  std::unique_ptr<Communicator> Split(int color, int key, const std::string& name) override;

 private:
  std::string name_;
};

}  // namespace sb
