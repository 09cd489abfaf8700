// GoogleTest main for tests that ctest runs through mpirun. Every rank runs
// every test; rank 0 prints GoogleTest's usual output, the other ranks print
// only their failures (prefixed with rank and host), and every rank exits
// non-zero when any rank failed. A rank that leaves a test early (a failed
// ASSERT) while the others wait in a collective does not hang the job: the
// collective watchdog ends it after SB_TEST_COLLECTIVE_TIMEOUT_S (default 60).
#include "tests/testing/mpi_test_main.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "gtest/gtest.h"

namespace sb::testing {
namespace {

std::unique_ptr<Runtime> g_runtime;

// Prints failed assertions only, naming the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  FailurePrinter(int rank, std::string host) : rank_(rank), host_(std::move(host)) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d on %s] %s:%d: Failure\n%s\n", rank_, host_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.summary());
  }

 private:
  int rank_;
  std::string host_;
};

}  // namespace

Runtime& TestRuntime() { return *g_runtime; }

}  // namespace sb::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  sb::RuntimeOptions options;
  const char* timeout = std::getenv("SB_TEST_COLLECTIVE_TIMEOUT_S");
  options.collective_timeout_s = timeout ? std::atof(timeout) : 60.0;
  auto runtime = sb::Runtime::Start(options);
  if (!runtime.ok()) {
    std::fprintf(stderr, "%s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  sb::testing::g_runtime = std::move(*runtime);
  sb::Runtime& rt = *sb::testing::g_runtime;
  if (!rt.is_chief()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new sb::testing::FailurePrinter(rt.rank(), rt.info().host));
  }
  const int rc = RUN_ALL_TESTS();
  const bool all_passed = rt.AllOk(rc == 0);
  if (rt.is_chief() && rc == 0 && !all_passed) {
    std::fprintf(stderr, "FAILED on another rank (see the [rank N] lines above)\n");
  }
  sb::testing::g_runtime.reset();  // MPI_Finalize
  return all_passed ? 0 : 1;
}
