#include "pipeline/step_codec.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace troupe::cluster {
namespace {

constexpr uint32_t kStepMagic = 0x54535450;    // "TSTP"
constexpr uint32_t kLogitsMagic = 0x544c4f47;  // "TLOG"

struct StepHeader {
  uint32_t magic = kStepMagic;
  int32_t mode = 0;
  uint64_t step_id = 0;
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t hidden_size = 0;
  int64_t num_block_ids = 0;
  int32_t dtype = 0;
  int32_t reserved = 0;
};

struct LogitsHeader {
  uint32_t magic = kLogitsMagic;
  int32_t reserved = 0;
  uint64_t step_id = 0;
  int64_t rows = 0;
  int64_t vocab = 0;
};

void append(std::vector<uint8_t>& out, const void* data, size_t bytes) {
  if (bytes == 0) return;
  const auto* p = static_cast<const uint8_t*>(data);
  out.insert(out.end(), p, p + bytes);
}

// Reads forward through a message, refusing to run past its end.
class Reader {
 public:
  explicit Reader(const std::vector<uint8_t>& bytes) : bytes_(bytes) {}
  bool read(void* out, size_t n) {
    if (n > bytes_.size() - offset_) return false;
    if (n == 0) return true;  // `out` may be an empty vector's null data(): memcpy(nullptr, ..., 0) is UB
    std::memcpy(out, bytes_.data() + offset_, n);
    offset_ += n;
    return true;
  }
  size_t remaining() const { return bytes_.size() - offset_; }
  const uint8_t* here() const { return bytes_.data() + offset_; }

 private:
  const std::vector<uint8_t>& bytes_;
  size_t offset_ = 0;
};

Error malformed(const std::string& what) {
  return make_error(ErrorCode::corrupt_data, "malformed pipeline step message: " + what);
}

Result<DecodedStep> decode(const std::vector<uint8_t>& bytes, HiddenShape* shape);

}  // namespace

std::vector<uint8_t> encode_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode, const Tensor& hidden) {
  std::vector<uint8_t> out = encode_step_metadata(step_id, batch, mode, hidden, hidden.nbytes());
  append(out, hidden.raw(), hidden.nbytes());
  return out;
}

std::vector<uint8_t> encode_step_metadata(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode,
                                          const Tensor& hidden, size_t reserve_extra) {
  StepHeader header;
  header.step_id = step_id;
  header.mode = mode == LogitsMode::all_tokens ? 1 : 0;
  header.num_tokens = batch.num_tokens();
  header.num_seqs = batch.num_seqs();
  header.hidden_size = hidden.numel() / std::max<int64_t>(1, batch.num_tokens());
  header.dtype = int32_t(hidden.dtype());
  for (const auto& seq : batch.seqs) header.num_block_ids += int64_t(seq.block_table ? seq.block_table->size() : 0);
  std::vector<uint8_t> out;
  out.reserve(sizeof(header) + size_t(header.num_tokens) * 4 + size_t(header.num_seqs) * 16 +
              size_t(header.num_block_ids) * 4 + reserve_extra);
  append(out, &header, sizeof(header));
  append(out, batch.positions.data(), batch.positions.size() * sizeof(int32_t));
  for (const auto& seq : batch.seqs) {
    // Field 2: bit 0 needs_logits, the bits above it num_prompt_logits.
    const int32_t fields[4] = {seq.num_new_tokens, seq.context_len, (seq.needs_logits ? 1 : 0) | (seq.num_prompt_logits << 1),
                               int32_t(seq.block_table ? seq.block_table->size() : 0)};
    append(out, fields, sizeof(fields));
  }
  for (const auto& seq : batch.seqs)
    if (seq.block_table) append(out, seq.block_table->data(), seq.block_table->size() * sizeof(int32_t));
  return out;
}

Result<DecodedStep> decode_step(const std::vector<uint8_t>& bytes) { return decode(bytes, nullptr); }

Result<DecodedStep> decode_step_metadata(const std::vector<uint8_t>& bytes, HiddenShape* hidden) {
  return decode(bytes, hidden);
}

namespace {

// decode_step, or with `shape` set decode_step_metadata: no hidden bytes follow, their shape goes there.
Result<DecodedStep> decode(const std::vector<uint8_t>& bytes, HiddenShape* shape) {
  Reader in(bytes);
  StepHeader header;
  if (!in.read(&header, sizeof(header))) return malformed("shorter than its header");
  if (header.magic != kStepMagic) return malformed("wrong magic");
  if (header.num_tokens < 0 || header.num_seqs < 0 || header.hidden_size < 0 || header.num_block_ids < 0 ||
      (header.dtype != int32_t(DType::f32) && header.dtype != int32_t(DType::bf16)))
    return malformed("bad counts or dtype");
  DecodedStep step;
  step.step_id = header.step_id;
  step.mode = header.mode == 1 ? LogitsMode::all_tokens : LogitsMode::last_token;
  const auto num_tokens = size_t(header.num_tokens), num_seqs = size_t(header.num_seqs);
  // NOTE: counts come off the wire: compare them by division so no product can overflow, and
  // check the hidden states' size before allocating them.
  if (num_tokens > in.remaining() / 4) return malformed("positions cut short");
  step.batch.positions.resize(num_tokens);
  in.read(step.batch.positions.data(), num_tokens * 4);
  step.batch.token_ids.assign(num_tokens, 0);  // later stages read hidden states, not ids
  if (num_seqs > in.remaining() / 16) return malformed("sequences cut short");
  std::vector<int32_t> fields(num_seqs * 4);
  in.read(fields.data(), fields.size() * 4);
  step.tables.resize(num_seqs);
  int64_t num_ids = 0, num_new = 0;
  for (size_t s = 0; s < num_seqs; ++s) {
    if (fields[s * 4 + 3] < 0) return malformed("negative block table length");
    if (fields[s * 4] < 0 || fields[s * 4 + 1] < fields[s * 4])
      return malformed("sequence with num_new_tokens < 0 or context_len < num_new_tokens");
    if (fields[s * 4 + 2] < 0 || (fields[s * 4 + 2] >> 1) > fields[s * 4])
      return malformed("sequence with num_prompt_logits outside [0, num_new_tokens]");
    num_ids += fields[s * 4 + 3];
    num_new += fields[s * 4];
  }
  if (num_ids != header.num_block_ids || num_new != header.num_tokens) return malformed("counts do not add up");
  if (uint64_t(num_ids) > in.remaining() / 4) return malformed("block tables cut short");
  for (size_t s = 0; s < num_seqs; ++s) {
    auto& table = step.tables[s];
    table.resize(size_t(fields[s * 4 + 3]));
    if (!in.read(table.data(), table.size() * 4)) return malformed("block tables cut short");
  }
  for (size_t s = 0; s < num_seqs; ++s) {
    SequenceSlice slice;
    slice.num_new_tokens = fields[s * 4];
    slice.context_len = fields[s * 4 + 1];
    slice.needs_logits = (fields[s * 4 + 2] & 1) != 0;
    slice.num_prompt_logits = fields[s * 4 + 2] >> 1;
    slice.block_table = &step.tables[s];
    step.batch.seqs.push_back(slice);
  }
  const DType dtype = DType(header.dtype);
  uint64_t hidden_bytes = 0;
  if (__builtin_mul_overflow(uint64_t(header.num_tokens), uint64_t(header.hidden_size), &hidden_bytes) ||
      __builtin_mul_overflow(hidden_bytes, uint64_t(dtype_size(dtype)), &hidden_bytes))
    return malformed("hidden states of the wrong size");
  if (shape != nullptr) {
    if (in.remaining() != 0) return malformed("bytes after the step's metadata");
    *shape = HiddenShape{dtype, header.num_tokens, header.hidden_size};
    return step;
  }
  if (in.remaining() != hidden_bytes) return malformed("hidden states of the wrong size");
  Tensor hidden = Tensor::empty(dtype, {header.num_tokens, header.hidden_size});
  in.read(hidden.raw(), hidden.nbytes());
  step.batch.hidden_states = std::move(hidden);
  return step;
}

}  // namespace

std::vector<uint8_t> encode_logits(uint64_t step_id, const Tensor& logits) {
  LogitsHeader header;
  header.step_id = step_id;
  header.rows = logits.dim() == 2 ? logits.size(0) : 0;
  header.vocab = logits.dim() == 2 ? logits.size(1) : 0;
  std::vector<uint8_t> out;
  out.reserve(sizeof(header) + logits.nbytes());
  append(out, &header, sizeof(header));
  append(out, logits.raw(), logits.nbytes());
  return out;
}

Result<Tensor> decode_logits(const std::vector<uint8_t>& bytes, uint64_t expected_step_id) {
  Reader in(bytes);
  LogitsHeader header;
  if (!in.read(&header, sizeof(header)) || header.magic != kLogitsMagic || header.rows < 0 || header.vocab < 0)
    return malformed("bad logits header");
  if (header.step_id != expected_step_id)
    return make_error(ErrorCode::internal, "pipeline logits for step " + std::to_string(header.step_id) +
                                               " arrived while waiting for step " + std::to_string(expected_step_id));
  uint64_t logits_bytes = 0;
  if (__builtin_mul_overflow(uint64_t(header.rows), uint64_t(header.vocab), &logits_bytes) ||
      __builtin_mul_overflow(logits_bytes, uint64_t{4}, &logits_bytes) || in.remaining() != logits_bytes)
    return malformed("logits of the wrong size");
  Tensor logits = Tensor::empty(DType::f32, {header.rows, header.vocab});
  in.read(logits.raw(), logits.nbytes());
  return logits;
}

}  // namespace troupe::cluster
