#include "text/tokenizer.hpp"

#include <fstream>
#include <mutex>
#include <sstream>

#include "text/tokenizer_impl.hpp"
#include "text/utf8.hpp"

namespace troupe {
namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "cannot open " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

const std::string kEmpty;

}  // namespace

// --- encode / decode -----------------------------------------------------------------------------

std::vector<int32_t> TokenizerImpl::encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!utf8::is_valid(text)) {
    repaired = utf8::to_valid_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = prefix_ids_;
  // One encode owns the BPE cache at a time; a concurrent one runs without it.
  std::unique_lock lock(model_.cache_mutex(), std::try_to_lock);
  const bool use_cache = lock.owns_lock();
  if (raw_matcher_.empty()) {
    encode_plain(text, true, ids, use_cache);
  } else {
    thread_local std::vector<TextSegment> segments;
    segments.clear();
    raw_matcher_.split(text, segments);
    for (const auto& segment : segments) {
      if (segment.id >= 0) {
        ids.push_back(segment.id);
      } else {
        encode_plain(text.substr(segment.begin, segment.end - segment.begin), segment.begin == 0, ids, use_cache);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void TokenizerImpl::encode_plain(std::string_view text, bool is_first, std::vector<int32_t>& ids, bool use_cache) const {
  if (normalizer_.empty()) {
    encode_pre_tokenized(text, is_first, ids, use_cache);
    return;
  }
  std::string normalized;
  normalizer_.run(text, normalized);
  if (normalized_matcher_.empty()) {
    encode_pre_tokenized(normalized, is_first, ids, use_cache);
    return;
  }
  std::vector<TextSegment> segments;
  normalized_matcher_.split(normalized, segments);
  for (const auto& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
    } else {
      encode_pre_tokenized(std::string_view(normalized).substr(segment.begin, segment.end - segment.begin),
                           is_first && segment.begin == 0, ids, use_cache);
    }
  }
}

void TokenizerImpl::encode_pre_tokenized(std::string_view text, bool is_first, std::vector<int32_t>& ids,
                                         bool use_cache) const {
  if (text.empty()) return;
  if (pre_tokenizer_.empty()) {
    model_.encode_piece(text, ids, use_cache);
    return;
  }
  thread_local PreTokenized data;
  data.text.assign(text);
  pre_tokenizer_.run(data, is_first);
  const std::string_view all = data.text;
  for (const auto& [begin, end] : data.pieces) model_.encode_piece(all.substr(begin, end - begin), ids, use_cache);
}

std::string TokenizerImpl::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    const auto added = added_by_id_.find(id);
    if (added != added_by_id_.end()) {
      if (!(skip_special_tokens && added->second.special)) tokens.push_back(added->second.content);
      continue;
    }
    if (const std::string* token = model_.id_to_token(id); token != nullptr && !token->empty()) tokens.push_back(*token);
  }
  return decoder_.decode(tokens);
}

std::string TokenizerImpl::decode_spaced(const std::vector<int32_t>& ids) const {
  std::string text;
  std::vector<int32_t> run;  // ordinary tokens since the last special one
  auto add_piece = [&text](const std::string& piece) {
    if (piece.empty()) return;
    if (!text.empty()) text += ' ';
    text += piece;
  };
  for (const int32_t id : ids) {
    const auto added = added_by_id_.find(id);
    if (added == added_by_id_.end() || !added->second.special) {
      run.push_back(id);
      continue;
    }
    add_piece(decode(run, false));
    run.clear();
    add_piece(added->second.content);
  }
  add_piece(decode(run, false));
  return text;
}

// --- Tokenizer -----------------------------------------------------------------------------------

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::load(const std::string& model_dir) {
  auto json = read_file(model_dir + "/tokenizer.json");
  if (!json.ok()) return json.error();
  std::string config;
  if (std::ifstream(model_dir + "/tokenizer_config.json").good()) {
    auto config_text = read_file(model_dir + "/tokenizer_config.json");
    if (!config_text.ok()) return config_text.error();
    config = std::move(config_text.value());
  }
  auto tokenizer = from_json(json.value(), config);
  if (!tokenizer.ok()) return make_error(tokenizer.error().code, model_dir + ": " + tokenizer.error().message);
  return tokenizer;
}

Result<Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  auto impl = TokenizerImpl::parse(tokenizer_json, tokenizer_config_json);
  if (!impl.ok()) return impl.error();
  Tokenizer tokenizer;
  tokenizer.impl_ = std::move(impl.value());
  return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return impl_ ? impl_->encode(text, add_special_tokens) : std::vector<int32_t>{};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens,
                              bool spaces_between_special_tokens) const {
  if (!impl_) return std::string();
  if (spaces_between_special_tokens && !skip_special_tokens) return impl_->decode_spaced(ids);
  return impl_->decode(ids, skip_special_tokens);
}

int64_t Tokenizer::vocab_size() const { return impl_ ? impl_->vocab_size_ : 0; }

bool Tokenizer::is_special(int32_t id) const {
  if (!impl_) return false;
  const auto it = impl_->added_by_id_.find(id);
  return it != impl_->added_by_id_.end() && it->second.special;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  if (!impl_) return -1;
  const auto it = impl_->added_by_content_.find(token);
  return it != impl_->added_by_content_.end() ? it->second : impl_->model_.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (!impl_) return "";
  const auto it = impl_->added_by_id_.find(id);
  if (it != impl_->added_by_id_.end()) return it->second.content;
  const std::string* token = impl_->model_.id_to_token(id);
  return token ? *token : "";
}

const std::string& Tokenizer::bos_token() const { return impl_ ? impl_->bos_token_ : kEmpty; }
const std::string& Tokenizer::eos_token() const { return impl_ ? impl_->eos_token_ : kEmpty; }

}  // namespace troupe
