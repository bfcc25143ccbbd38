#pragma once
// Reads the tensors a pipeline stage loads from a WeightStore ahead of the model that asks for
// them (runtime/read_ahead: a few threads of large preads into host tensors, bounded memory),
// so the disk keeps reading while the backend converts and uploads the tensors read before.
//
//   plan: the stage's tensors sorted as models ask for them: embeddings, then layer by layer
//         (input norm, attention, post-attention norm, router, MLP / experts; names in natural
//         order: experts.2 before experts.10), then the rest (final norm, LM head).
//   fused groups: q/k/v and gate/up (weights or biases) of one dtype, not F8_E4M3, are one item
//         read back to back into one host buffer; each part is handed out as a row view of it,
//         so load_fused_weight uploads the buffer as the fused weight without copying.
//
// A tensor outside the plan is read when asked (WeightStore::read_into). Errors name the tensor
// and the file. The destructor stops and joins the readers (a load that fails midway leaves no
// thread behind).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/read_ahead.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

class WeightStore;

class StageReader {
 public:
  StageReader(const WeightStore& store, const std::function<bool(const std::string&)>& wanted,
              ReadAhead::Options options = {});
  ~StageReader();

  // `view`'s bytes (a tensor of the store) as an owned host tensor of its dtype and shape.
  Result<Tensor> read(const TensorView& view);
  // Bytes of the planned tensors.
  uint64_t total_bytes() const { return total_bytes_; }
  const ReadAhead& read_ahead() const { return *ahead_; }

 private:
  struct Member {
    size_t item = 0;
    int64_t row_begin = 0;
    int64_t rows = 0;
    bool grouped = false;
  };
  struct OpenGroup {
    Result<Tensor> tensor = Tensor();
    size_t left = 0;  // parts not handed out yet
  };

  const WeightStore& store_;
  std::unique_ptr<ReadAhead> ahead_;
  std::map<std::string, Member> members_;       // tensor name -> where the read-ahead has it
  std::map<size_t, size_t> group_sizes_;        // item -> parts, for fused groups
  std::map<size_t, OpenGroup> open_groups_;     // fused items taken, parts still to hand out
  uint64_t total_bytes_ = 0;
};

// The plan's order key of a tensor name (exposed for tests): (section, layer, part of the layer).
struct LoadOrderKey {
  int section = 0;  // 0 embeddings, 1 layers, 2 the rest
  int64_t layer = 0;
  int part = 0;     // 0 input norm, 1 attention, 2 post-attention norm, 3 router, 4 MLP, 5 other
  bool operator<(const LoadOrderKey& o) const;
};
LoadOrderKey load_order_key(const std::string& name);
// Names compared with their digit runs as numbers ("experts.2." < "experts.10.").
bool natural_less(const std::string& a, const std::string& b);

}  // namespace troupe
