#include "grammar/token_vocabulary.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "grammar/expr.hpp"

namespace troupe::grammar {
namespace {

// GPT-2's bytes_to_unicode, inverted: code point -> byte.
std::unordered_map<uint32_t, uint8_t> unicode_to_byte() {
  std::unordered_map<uint32_t, uint8_t> map;
  std::vector<int> direct;
  for (int b = '!'; b <= '~'; ++b) direct.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) direct.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) direct.push_back(b);
  std::vector<bool> is_direct(256, false);
  for (int b : direct) {
    is_direct[b] = true;
    map[uint32_t(b)] = uint8_t(b);
  }
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b)
    if (!is_direct[b]) map[next++] = uint8_t(b);
  return map;
}

// UTF-8 text -> code points; false on bad UTF-8.
bool decode_utf8(const std::string& s, std::vector<uint32_t>* out) {
  out->clear();
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) v = (v << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out->push_back(v);
    i += len;
  }
  return true;
}

}  // namespace

bool TokenVocabulary::is_eos(int32_t id) const { return std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end(); }

Result<std::shared_ptr<const TokenVocabulary>> TokenVocabulary::from_tokenizer_json(const std::string& path,
                                                                                   int64_t vocab_size,
                                                                                   std::vector<int32_t> eos_ids) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::not_found, "tokenizer file " + path + " not found");
  nlohmann::json tok = nlohmann::json::parse(in, nullptr, false);
  if (tok.is_discarded() || !tok.contains("model") || !tok["model"].contains("vocab"))
    return make_error(ErrorCode::corrupt_data, path + ": not a tokenizer.json with a model vocab");
  const auto& vocab = tok["model"]["vocab"];
  bool byte_level = false;
  if (tok.contains("decoder") && tok["decoder"].is_object()) {
    const auto& d = tok["decoder"];
    byte_level = d.value("type", "") == "ByteLevel";
    if (d.value("type", "") == "Sequence" && d.contains("decoders"))
      for (const auto& x : d["decoders"]) byte_level |= x.value("type", "") == "ByteLevel";
  }
  std::vector<std::string> bytes(std::max<int64_t>(vocab_size, 0));
  const auto to_byte = unicode_to_byte();
  std::vector<uint32_t> cps;
  auto put = [&](int64_t id, std::string b) {
    if (id >= 0 && id < int64_t(bytes.size())) bytes[id] = std::move(b);
  };
  if (vocab.is_object()) {
    for (const auto& [text, id_json] : vocab.items()) {
      if (!id_json.is_number_integer()) continue;
      const int64_t id = id_json.get<int64_t>();
      std::string b;
      if (byte_level) {
        if (!decode_utf8(text, &cps)) continue;
        bool ok = true;
        for (uint32_t cp : cps) {
          auto it = to_byte.find(cp);
          if (it == to_byte.end()) {
            ok = false;
            break;
          }
          b += char(it->second);
        }
        if (!ok) continue;
      } else if (text.size() == 6 && text.rfind("<0x", 0) == 0 && text[5] == '>') {
        b = char(std::stoi(text.substr(3, 2), nullptr, 16));
      } else {
        b = text;
        for (size_t p; (p = b.find("\xE2\x96\x81")) != std::string::npos;) b.replace(p, 3, " ");  // '▁'
      }
      put(id, std::move(b));
    }
  }
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const auto& t : tok["added_tokens"]) {
      // Special or not (DeepSeek's <think> and tool markers are "non-special"), an added token
      // is a control token to the parsers downstream: ordinary tokens spell the same bytes.
      put(t.value("id", int64_t(-1)), "");
    }
  }
  for (int32_t id : eos_ids) put(id, "");
  return from_bytes(std::move(bytes), std::move(eos_ids));
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::from_bytes(std::vector<std::string> token_bytes,
                                                                   std::vector<int32_t> eos_ids) {
  auto v = std::shared_ptr<TokenVocabulary>(new TokenVocabulary());
  v->bytes_ = std::move(token_bytes);
  for (int32_t id : eos_ids)
    if (id >= 0 && id < v->size()) {
      v->bytes_[id].clear();
      v->eos_ids_.push_back(id);
    }
  v->build_trie();
  return v;
}

void TokenVocabulary::build_trie() {
  sorted_ids_.clear();
  for (int32_t id = 0; id < int32_t(bytes_.size()); ++id)
    if (!bytes_[id].empty() && bytes_[id].size() < 65535) sorted_ids_.push_back(id);
  std::sort(sorted_ids_.begin(), sorted_ids_.end(),
            [&](int32_t a, int32_t b) { return bytes_[a] != bytes_[b] ? bytes_[a] < bytes_[b] : a < b; });
  trie_.clear();
  std::vector<int32_t> path;  // node index per depth - 1
  std::string prev;
  for (size_t k = 0; k < sorted_ids_.size(); ++k) {
    const std::string& b = bytes_[sorted_ids_[k]];
    size_t common = 0;
    while (common < prev.size() && common < b.size() && prev[common] == b[common]) ++common;
    while (path.size() > common) {  // close nodes past the common prefix
      trie_[path.back()].end = int32_t(trie_.size());
      path.pop_back();
    }
    for (size_t d = common; d < b.size(); ++d) {
      path.push_back(int32_t(trie_.size()));
      trie_.push_back(TrieNode{uint8_t(b[d]), uint16_t(d + 1), -1, int32_t(k), int32_t(k)});
    }
    TrieNode& last = trie_[path.back()];
    if (last.tokens_begin == last.tokens_end) last.tokens_begin = int32_t(k);
    last.tokens_end = int32_t(k + 1);
    prev = b;
  }
  while (!path.empty()) {
    trie_[path.back()].end = int32_t(trie_.size());
    path.pop_back();
  }
}

}  // namespace troupe::grammar
