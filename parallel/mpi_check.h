// SB_MPI_CHECK(MPI_Xxx(...)): fails (rank, host, the call and MPI's error
// string; then MPI_Abort through the fatal hook) unless the call returned
// MPI_SUCCESS. Communicators use MPI_ERRORS_RETURN so that errors reach
// this check instead of MPI's own abort without context.
#pragma once

#include <mpi.h>

#include <string>

#include "moe/core/check.h"

namespace sb::internal {
inline std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(text, static_cast<size_t>(length));
}
}  // namespace sb::internal

#define SB_MPI_CHECK(call)                                                             \
  do {                                                                                 \
    const int sb_mpi_rc_ = (call);                                                     \
    if (sb_mpi_rc_ != MPI_SUCCESS) {                                                   \
      ::sb::FailCheck(__FILE__, __LINE__, #call,                                       \
                      "returned " + ::sb::internal::MpiErrorString(sb_mpi_rc_));       \
    }                                                                                  \
  } while (0)
