// A tiny MPI program for the failure tests (tests/mpi/job_test.sh):
// rank 1 misbehaves while every other rank waits in a collective, and the
// job must end quickly with a message naming rank 1 and its host.
//   abort_probe check  rank 1 fails an SB_CHECK (fatal hook -> MPI_Abort)
//   abort_probe status rank 1 has a runtime error (Runtime::Abort)
//   abort_probe slow   rank 1 works far longer than the collective timeout
//                      (2 s here): the watchdog ends the job and its census
//                      finds every rank alive
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "moe/core/check.h"
#include "parallel/runtime.h"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "check" && mode != "status" && mode != "slow") {
    std::fprintf(stderr, "usage: abort_probe check|status|slow (under mpirun, >= 2 ranks)\n");
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
  if (rt.rank() == 1) {
    if (mode == "check") SB_CHECK(rt.rank() != 1) << "deliberate failure on rank 1";
    if (mode == "status") rt.Abort("deliberate runtime error on rank 1", 1);
    std::this_thread::sleep_for(std::chrono::seconds(120));
  }
  rt.world().Barrier();  // the others wait here for rank 1
  std::fprintf(stderr, "abort_probe: rank %d passed the barrier (should not happen)\n", rt.rank());
  return 0;
}
