// Parses tokenizer.json / tokenizer_config.json into a TokenizerImpl.
#include <nlohmann/json.hpp>

#include "runtime/logging.hpp"
#include "text/tokenizer_impl.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

Error unsupported(const std::string& field, const std::string& type) {
  return make_error(ErrorCode::unsupported, "tokenizer.json: " + field + " type '" + type + "' is not supported");
}

std::string type_of(const json& node) { return node.is_object() ? node.value("type", std::string()) : std::string(); }

// Escapes a literal string for use as a PCRE2 pattern.
std::string escape_regex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

Result<std::string> string_pattern(const json& pattern, const std::string& field) {
  if (pattern.is_object() && pattern.contains("String")) return pattern["String"].get<std::string>();
  return make_error(ErrorCode::unsupported, "tokenizer.json: " + field + ".pattern must be {\"String\": ...}");
}

Status parse_normalizer(const json& node, Normalizer& normalizer) {
  if (node.is_null()) return Status::success();
  const std::string type = type_of(node);
  if (type == "Sequence") {
    for (const auto& child : node.at("normalizers")) TROUPE_TRY(parse_normalizer(child, normalizer));
    return Status::success();
  }
  NormalizerStep step;
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    step.kind = type == "NFC" ? NormalizerStep::Kind::nfc
                : type == "NFD" ? NormalizerStep::Kind::nfd
                : type == "NFKC" ? NormalizerStep::Kind::nfkc
                                 : NormalizerStep::Kind::nfkd;
    if (!Normalizer::unicode_forms_available())
      log::get("tokenizer")->warn("normalizer {} needs ICU, which this build lacks: non-ASCII text may differ", type);
  } else if (type == "Prepend") {
    step.kind = NormalizerStep::Kind::prepend;
    step.content = node.at("prepend").get<std::string>();
  } else if (type == "Replace") {
    step.kind = NormalizerStep::Kind::replace;
    auto pattern = string_pattern(node.at("pattern"), "normalizer Replace");
    if (!pattern.ok()) return pattern.error();
    step.pattern = pattern.value();
    step.content = node.at("content").get<std::string>();
  } else if (type == "Lowercase") {
    step.kind = NormalizerStep::Kind::lowercase;
  } else {
    return unsupported("normalizer", type);
  }
  normalizer.add_step(std::move(step));
  return Status::success();
}

Status parse_pre_tokenizer(const json& node, PreTokenizer& pre_tokenizer) {
  if (node.is_null()) return Status::success();
  const std::string type = type_of(node);
  if (type == "Sequence") {
    for (const auto& child : node.at("pretokenizers")) TROUPE_TRY(parse_pre_tokenizer(child, pre_tokenizer));
    return Status::success();
  }
  PreTokenizerStep step;
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::split;
    const json& pattern = node.at("pattern");
    std::string regex;
    if (pattern.contains("Regex")) {
      regex = pattern["Regex"].get<std::string>();
    } else if (pattern.contains("String")) {
      regex = escape_regex(pattern["String"].get<std::string>());
    } else {
      return make_error(ErrorCode::corrupt_data, "tokenizer.json: pre_tokenizer Split has no pattern");
    }
    auto compiled = TokenizerRegex::compile(regex);
    if (!compiled.ok()) return compiled.error();
    step.regex = std::move(compiled.value());
    const std::string behavior = node.value("behavior", std::string("Isolated"));
    if (behavior == "Removed") {
      step.behavior = SplitBehavior::removed;
    } else if (behavior == "Isolated") {
      step.behavior = SplitBehavior::isolated;
    } else if (behavior == "MergedWithPrevious") {
      step.behavior = SplitBehavior::merged_with_previous;
    } else if (behavior == "MergedWithNext") {
      step.behavior = SplitBehavior::merged_with_next;
    } else if (behavior == "Contiguous") {
      step.behavior = SplitBehavior::contiguous;
    } else {
      return unsupported("pre_tokenizer Split behavior", behavior);
    }
    step.invert = node.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::byte_level;
    step.add_prefix_space = node.value("add_prefix_space", true);
    step.use_regex = node.value("use_regex", true);
    if (step.use_regex) {
      auto compiled = TokenizerRegex::compile(kGpt2Pattern);
      if (!compiled.ok()) return compiled.error();
      step.regex = std::move(compiled.value());
    }
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::metaspace;
    step.replacement = node.value("replacement", std::string("\xE2\x96\x81"));
    if (node.contains("prepend_scheme")) {
      step.prepend_scheme = node["prepend_scheme"].get<std::string>();
    } else {
      step.prepend_scheme = node.value("add_prefix_space", true) ? "always" : "never";
    }
    step.metaspace_split = node.value("split", true);
  } else {
    return unsupported("pre_tokenizer", type);
  }
  pre_tokenizer.add_step(std::move(step));
  return Status::success();
}

Status parse_decoder(const json& node, TokenDecoder& decoder) {
  if (node.is_null()) return Status::success();
  const std::string type = type_of(node);
  if (type == "Sequence") {
    for (const auto& child : node.at("decoders")) TROUPE_TRY(parse_decoder(child, decoder));
    return Status::success();
  }
  DecoderStep step;
  if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::byte_level;
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::metaspace;
    step.pattern = node.value("replacement", std::string("\xE2\x96\x81"));
    const std::string scheme = node.contains("prepend_scheme") ? node["prepend_scheme"].get<std::string>()
                               : node.value("add_prefix_space", true) ? "always" : "never";
    step.strip_first_space = scheme != "never";
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::replace;
    auto pattern = string_pattern(node.at("pattern"), "decoder Replace");
    if (!pattern.ok()) return pattern.error();
    step.pattern = pattern.value();
    step.content = node.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::byte_fallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::fuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::strip;
    step.content = node.value("content", std::string(" "));
    step.start = node.value("start", 0);
    step.stop = node.value("stop", 0);
  } else {
    return unsupported("decoder", type);
  }
  decoder.add_step(std::move(step));
  return Status::success();
}

Status parse_post_processor(const json& node, TokenizerImpl& impl) {
  if (node.is_null()) return Status::success();
  const std::string type = type_of(node);
  if (type == "Sequence") {
    for (const auto& child : node.at("processors")) TROUPE_TRY(parse_post_processor(child, impl));
    return Status::success();
  }
  if (type == "ByteLevel") return Status::success();  // only moves offsets
  if (type == "TemplateProcessing") {
    bool after_sequence = false;
    for (const auto& item : node.at("single")) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const json& special = node.at("special_tokens").at(name);
      for (const auto& id : special.at("ids")) (after_sequence ? impl.suffix_ids_ : impl.prefix_ids_).push_back(id.get<int32_t>());
    }
    return Status::success();
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    impl.prefix_ids_.push_back(node.at("cls").at(1).get<int32_t>());
    impl.suffix_ids_.push_back(node.at("sep").at(1).get<int32_t>());
    return Status::success();
  }
  return unsupported("post_processor", type);
}

Status parse_model(const json& node, TokenizerImpl& impl, bool byte_level_input) {
  const std::string type = node.value("type", std::string(node.contains("merges") ? "BPE" : ""));
  if (type != "BPE") {
    return make_error(ErrorCode::unsupported, "tokenizer.json: model type '" + type +
                                                  "' is not supported (only BPE: byte-level or sentencepiece-style)");
  }
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (node.contains(field) && node[field].is_string() && !node[field].get<std::string>().empty())
      return unsupported(std::string("model.") + field, node[field].get<std::string>());
  }
  TokenMap vocab;
  vocab.reserve(node.at("vocab").size());
  for (const auto& [token, id] : node.at("vocab").items()) vocab.emplace(token, id.get<int32_t>());
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(node.at("merges").size());
  for (const auto& merge : node.at("merges")) {
    if (merge.is_array() && merge.size() == 2) {
      merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    const std::string text = merge.get<std::string>();
    const size_t space = text.find(' ');
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
      return make_error(ErrorCode::corrupt_data, "tokenizer.json: model.merges entry '" + text + "' is not 'a b'");
    merges.emplace_back(text.substr(0, space), text.substr(space + 1));
  }
  BpeOptions options;
  options.byte_level_input = byte_level_input;
  options.byte_fallback = node.value("byte_fallback", false);
  options.ignore_merges = node.value("ignore_merges", false);
  options.fuse_unk = node.value("fuse_unk", false);
  if (node.contains("unk_token") && node["unk_token"].is_string()) options.unk_token = node["unk_token"].get<std::string>();
  return impl.model_.init(std::move(vocab), merges, std::move(options));
}

std::string token_text(const json& node) {
  if (node.is_string()) return node.get<std::string>();
  if (node.is_object() && node.contains("content") && node["content"].is_string()) return node["content"].get<std::string>();
  return "";
}

}  // namespace

Result<std::unique_ptr<TokenizerImpl>> TokenizerImpl::parse(const std::string& tokenizer_json,
                                                            const std::string& tokenizer_config_json) {
  const json root = json::parse(tokenizer_json, nullptr, false);
  if (root.is_discarded() || !root.is_object())
    return make_error(ErrorCode::corrupt_data, "tokenizer.json: not a JSON object");
  if (!root.contains("model") || !root["model"].is_object())
    return make_error(ErrorCode::corrupt_data, "tokenizer.json: missing 'model'");
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    TROUPE_TRY(parse_normalizer(root.value("normalizer", json()), impl->normalizer_));
    TROUPE_TRY(parse_pre_tokenizer(root.value("pre_tokenizer", json()), impl->pre_tokenizer_));
    TROUPE_TRY(parse_decoder(root.value("decoder", json()), impl->decoder_));
    TROUPE_TRY(parse_post_processor(root.value("post_processor", json()), *impl));
    TROUPE_TRY(parse_model(root["model"], *impl, impl->pre_tokenizer_.has_byte_level()));
    impl->vocab_size_ = impl->model_.size();
    for (const auto& node : root.value("added_tokens", json::array())) {
      AddedToken token;
      token.content = node.at("content").get<std::string>();
      token.id = node.at("id").get<int32_t>();
      token.special = node.value("special", false);
      token.lstrip = node.value("lstrip", false);
      token.rstrip = node.value("rstrip", false);
      token.single_word = node.value("single_word", false);
      token.normalized = node.value("normalized", !token.special);
      (token.normalized && !impl->normalizer_.empty() ? impl->normalized_matcher_ : impl->raw_matcher_).add(token);
      impl->added_by_content_.emplace(token.content, token.id);
      impl->vocab_size_ = std::max<int64_t>(impl->vocab_size_, int64_t{token.id} + 1);
      impl->added_by_id_.emplace(token.id, std::move(token));
    }
    if (!tokenizer_config_json.empty()) {
      const json config = json::parse(tokenizer_config_json, nullptr, false);
      if (config.is_discarded() || !config.is_object())
        return make_error(ErrorCode::corrupt_data, "tokenizer_config.json: not a JSON object");
      impl->bos_token_ = token_text(config.value("bos_token", json()));
      impl->eos_token_ = token_text(config.value("eos_token", json()));
    }
  } catch (const json::exception& e) {
    return make_error(ErrorCode::corrupt_data, std::string("tokenizer.json: unexpected structure: ") + e.what());
  }
  return impl;
}

}  // namespace troupe
