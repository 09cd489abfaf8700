// A Hugging Face Llama / Mixtral directory as transformers writes it with
// save_pretrained:
//   config.json                                        (moe/io/hf_config.h)
//   model.safetensors, or model.safetensors.index.json + its shards
//   tokenizer.model                                    (optional, SentencePiece)
// Tensors are presented under Switchboard's names, which are HF Llama's and
// the published Mixtral names (block_sparse_moe.gate.weight,
// block_sparse_moe.experts.E.{w1,w3,w2}.weight), whatever the file layout:
// transformers 5 can save Mixtral experts fused (save_original_format=False),
//   model.layers.N.mlp.gate.weight              [E, D]      router
//   model.layers.N.mlp.experts.gate_up_proj     [E, 2I, D]  expert e: rows [0, I) = w1 (gate), [I, 2I) = w3 (up)
//   model.layers.N.mlp.experts.down_proj        [E, D, I]   expert e: w2
// and those are read as per-expert slices (each a contiguous range).
//
// Open checks the whole directory against config.json before anything is
// read: every tensor present, with the shape the config implies and a float
// dtype (F32, F16, BF16, F64), and nothing left over (biases, quantisation
// scales, another architecture's tensors). Errors name the file, the tensor
// and both shapes. Ignored: rotary_emb.inv_freq buffers (transformers < 4.31)
// and an lm_head.weight that tie_word_embeddings makes unused.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moe/io/hf_config.h"
#include "moe/io/safetensors_set.h"
#include "moe/io/weight_reader.h"

namespace sb {

class HfCheckpoint : public WeightReader {
 public:
  static absl::StatusOr<std::unique_ptr<HfCheckpoint>> Open(const std::string& dir);
  // A directory holding config.json (what Open expects).
  static bool IsHfDir(const std::string& path);

  const HfConfig& config() const { return config_; }
  // Whether any MoE block is stored in transformers 5's fused layout.
  bool fused_experts() const { return fused_; }
  // dir/tokenizer.model, or "" when there is none.
  const std::string& tokenizer_path() const { return tokenizer_path_; }

  const std::string& path() const override { return dir_; }
  std::vector<std::string> names() const override;
  absl::StatusOr<SafetensorsTensorInfo> Info(absl::string_view name) const override;
  absl::Status ReadInto(absl::string_view name, const Tensor& dst) const override;

 private:
  HfCheckpoint() = default;
  // Where one of our tensors lives: a whole file tensor, or dst.numel()
  // elements of it from flat element `first`.
  struct Source {
    std::string file_tensor;
    int64_t first = -1;  // -1: the whole tensor
    Shape shape;
    SafetensorsDType dtype = SafetensorsDType::kF32;
  };
  std::string dir_;
  HfConfig config_;
  bool fused_ = false;
  std::string tokenizer_path_;
  std::unique_ptr<SafetensorsSet> files_;
  std::map<std::string, Source, std::less<>> sources_;
};

}  // namespace sb
