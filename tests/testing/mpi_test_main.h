// The MPI runtime of a GoogleTest binary started by mpirun
// (tests/testing/mpi_test_main.cc owns it).
#pragma once

#include "parallel/runtime.h"

namespace sb::testing {

// The process's Runtime (MPI world, or a world of one without mpirun).
Runtime& TestRuntime();

}  // namespace sb::testing
