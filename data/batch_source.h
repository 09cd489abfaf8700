// Where training reads its micro-batches. A source is a pure function of the
// global micro-batch index: micro-batch j of step s (j = accum_index * world
// + rank) has index s * (world * grad_accum) + j, so every data x expert
// layout reads the same samples and a resumed run continues exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moe/core/tensor.h"

namespace sb {

struct Batch {
  Tensor inputs;   // [B, S] i32 token ids
  Tensor targets;  // [B, S] i32 next tokens (inputs shifted by one)
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Fills `out` (allocated by the callee on first use, CPU) with the
  // micro-batch of global index `index`: batch_size windows of seq_len + 1 tokens.
  virtual absl::Status Read(int64_t index, int batch_size, int seq_len, Batch* out) = 0;
  // Token ids are < vocab_size.
  virtual int64_t vocab_size() const = 0;
  // Total tokens available (one epoch).
  virtual int64_t num_tokens() const = 0;
  // One line for logs: "12.1M tokens, 3 files, byte-level".
  virtual std::string Describe() const = 0;
  // Entropy (nats per token) of the source's token frequencies: the loss of
  // the best model that ignores context. NaN where not defined (mixtures).
  virtual double UnigramEntropy() const;
  // Identity of the tokenizer that made the tokens (TokenizerHash of its
  // tokenizer.model); 0 for byte-level text, which has none. Training and
  // validation data must agree.
  virtual uint64_t tokenizer_hash() const { return 0; }
  // Error unless every sample of seq_len + 1 tokens can be read: the stream
  // (each component of a mixture) holds more than seq_len tokens. Lets a
  // run refuse data that is too short at start, not at its first read.
  virtual absl::Status CheckSeqLen(int seq_len) const;
};

}  // namespace sb

namespace sb {
// Checks a Read's arguments and (re)allocates out's tensors to
// [batch_size, seq_len]: the common start of every BatchSource::Read.
absl::Status PrepareBatch(int64_t index, int batch_size, int seq_len, Batch* out);

// Entropy (nats) of the frequency distribution of counts (zeros ignored).
double EntropyOfCounts(const std::vector<int64_t>& counts);

// Opens the training or validation data at `path` (data/open_source.cc
// decides the kind: a prepared token-shard directory, or text read at byte level).
absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatchSource(const std::string& path,
                                                             uint64_t seed);
}  // namespace sb
