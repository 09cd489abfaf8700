// A tiny MPI program for the failure tests (tests/mpi/job_test.sh):
// rank 1 misbehaves while every other rank waits in a collective, and the
// job must end quickly with a message naming rank 1 and its host.
//   abort_probe check  rank 1 fails an SB_CHECK (fatal hook -> MPI_Abort)
//   abort_probe status rank 1 has a runtime error (Runtime::Abort)
//   abort_probe slow   rank 1 works far longer than the collective timeout
//                      (2 s here): the watchdog ends the job and its census
//                      finds every rank alive
//   abort_probe device_error  rank 1's device transport reports an
//                      asynchronous error (what ncclCommGetAsyncError gives
//                      when a peer dies): the watchdog aborts the device
//                      communicators and ends the job, naming rank 1
//   abort_probe device_hang   every rank's device transport has an operation
//                      that never finishes while the hosts are busy
//                      elsewhere: the watchdog's probe timeout ends the job
// The device modes use a stand-in for the NCCL communicators' probe
// (parallel/nccl_communicator.cc), so that the watchdog's side of it runs
// on machines without GPUs.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "moe/core/check.h"
#include "parallel/runtime.h"
#include "parallel/watchdog.h"

namespace {

class FakeDeviceProbe : public sb::WatchdogProbe {
 public:
  FakeDeviceProbe(bool fail, int rank) : fail_(fail), rank_(rank) {}
  Status Poll() override {
    Status s;
    s.op = "ncclAllReduce";
    s.group = "world";
    s.waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (fail_ && s.waited_s > 0.5) s.error = "ncclRemoteError (simulated: a peer process exited)";
    return s;
  }
  void Abort() override {
    std::fprintf(stderr, "abort_probe: rank %d aborted its device communicators\n", rank_);
    std::fflush(stderr);
  }

 private:
  bool fail_;
  int rank_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "check" && mode != "status" && mode != "slow" && mode != "device_error" &&
      mode != "device_hang") {
    std::fprintf(stderr,
                 "usage: abort_probe check|status|slow|device_error|device_hang "
                 "(under mpirun, >= 2 ranks)\n");
    return 2;
  }
  sb::RuntimeOptions options;
  options.collective_timeout_s = 2;
  auto runtime = sb::Runtime::Start(options);
  if (!runtime.ok()) return 1;
  sb::Runtime& rt = **runtime;
  if (rt.world_size() < 2) {
    std::fprintf(stderr, "abort_probe needs >= 2 ranks\n");
    return 2;
  }
  rt.world().Barrier();
  if (mode == "device_error" || mode == "device_hang") {
    FakeDeviceProbe probe(mode == "device_error", rt.rank());
    if (mode == "device_hang" || rt.rank() == 1) rt.watchdog()->AddProbe(&probe);
    // Hosts busy outside MPI (as while kernels run): only the probe can see trouble.
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::fprintf(stderr, "abort_probe: rank %d outlived its probe (should not happen)\n",
                 rt.rank());
    return 0;
  }
  if (rt.rank() == 1) {
    if (mode == "check") SB_CHECK(rt.rank() != 1) << "deliberate failure on rank 1";
    if (mode == "status") rt.Abort("deliberate runtime error on rank 1", 1);
    std::this_thread::sleep_for(std::chrono::seconds(120));
  }
  rt.world().Barrier();  // the others wait here for rank 1
  std::fprintf(stderr, "abort_probe: rank %d passed the barrier (should not happen)\n", rt.rank());
  return 0;
}
