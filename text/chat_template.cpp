#include "text/chat_template.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "text/jinja_interpreter.hpp"

namespace troupe {
namespace {

jinja::Value to_value(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return jinja::Value::none();
    case nlohmann::json::value_t::boolean: return jinja::Value(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return jinja::Value(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: return jinja::Value(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float: return jinja::Value(j.get<double>());
    case nlohmann::json::value_t::string: return jinja::Value(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      jinja::ValueList items;
      for (const auto& x : j) items.push_back(to_value(x));
      return jinja::Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      jinja::ValueDict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(it.key(), to_value(it.value()));
      return jinja::Value::dict(std::move(d));
    }
    default: return jinja::Value::none();
  }
}

Result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// bos_token / eos_token: a string, an AddedToken-like {"content": ...} object, or null.
Result<std::string> special_token(const nlohmann::json& config, const char* field, const std::string& file) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return make_error(ErrorCode::corrupt_data, file + ": field '" + field + "' is neither a string nor {\"content\": string}");
}

}  // namespace

ChatTemplate::ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

Result<ChatTemplate> ChatTemplate::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path config_path = fs::path(model_dir) / "tokenizer_config.json";
  const fs::path jinja_path = fs::path(model_dir) / "chat_template.jinja";
  nlohmann::json config = nlohmann::json::object();
  if (fs::exists(config_path)) {
    auto text = read_file(config_path);
    if (!text.ok()) return text.error();
    config = nlohmann::json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return make_error(ErrorCode::corrupt_data, config_path.string() + ": not a JSON object");
    }
  }
  auto bos = special_token(config, "bos_token", config_path.string());
  if (!bos.ok()) return bos.error();
  auto eos = special_token(config, "eos_token", config_path.string());
  if (!eos.ok()) return eos.error();

  std::string source;
  std::string origin;
  if (fs::exists(jinja_path)) {
    auto text = read_file(jinja_path);
    if (!text.ok()) return text.error();
    source = std::move(text.value());
    origin = jinja_path.string();
  } else {
    origin = config_path.string() + " field 'chat_template'";
    auto it = config.find("chat_template");
    if (it == config.end() || it->is_null()) {
      return make_error(ErrorCode::not_found, "no chat template in " + model_dir +
                                                  " (neither tokenizer_config.json 'chat_template' nor chat_template.jinja)");
    }
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {
      bool found = false;
      for (const auto& entry : *it) {
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string()) {
          source = entry["template"].get<std::string>();
          found = true;
        }
      }
      if (!found) return make_error(ErrorCode::not_found, origin + ": list has no {\"name\": \"default\", \"template\": ...}");
    } else {
      return make_error(ErrorCode::corrupt_data, origin + ": must be a string or a list of {name, template}");
    }
  }
  auto parsed = parse(source, bos.value(), eos.value());
  if (!parsed.ok()) return make_error(parsed.error().code, origin + ": " + parsed.error().message);
  return parsed;
}

Result<ChatTemplate> ChatTemplate::parse(const std::string& source, const std::string& bos_token,
                                         const std::string& eos_token) {
  auto t = jinja::Template::parse(source);
  if (!t.ok()) return t.error();
  ChatTemplate out;
  out.template_ = std::move(t.value());
  out.bos_token_ = bos_token;
  out.eos_token_ = eos_token;
  return out;
}

Result<std::string> ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                         const nlohmann::json& tools) const {
  ChatRenderOptions options;
  options.add_generation_prompt = add_generation_prompt;
  return render(messages, tools, options);
}

Result<std::string> ChatTemplate::render(const nlohmann::json& messages, const nlohmann::json& tools,
                                         const ChatRenderOptions& options) const {
  const bool add_generation_prompt = options.add_generation_prompt;
  if (options.continue_final_message && add_generation_prompt)
    return make_error(ErrorCode::invalid_argument,
                      "continue_final_message and add_generation_prompt cannot both be true");
  if (!template_) return make_error(ErrorCode::internal, "chat template: render() on an empty ChatTemplate");
  if (!messages.is_array()) return make_error(ErrorCode::invalid_argument, "chat template: 'messages' must be an array");
  if (!tools.is_null() && !tools.is_array()) {
    return make_error(ErrorCode::invalid_argument, "chat template: 'tools' must be an array or null");
  }
  // The variables transformers passes: messages, tools, documents, add_generation_prompt and
  // the special tokens that are set.
  jinja::ValueDict vars;
  vars.set("messages", to_value(messages));
  vars.set("tools", to_value(tools));
  vars.set("documents", jinja::Value::none());
  vars.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  if (!bos_token_.empty()) vars.set("bos_token", jinja::Value(bos_token_));
  if (!eos_token_.empty()) vars.set("eos_token", jinja::Value(eos_token_));
  if (const nlohmann::json* kwargs = options.template_kwargs; kwargs != nullptr && !kwargs->is_null()) {
    if (!kwargs->is_object())
      return make_error(ErrorCode::invalid_argument, "chat template: 'chat_template_kwargs' must be an object");
    for (auto it = kwargs->begin(); it != kwargs->end(); ++it)
      if (it.key() != "messages") vars.set(it.key(), to_value(it.value()));
  }
  Result<std::string> rendered = template_->render(vars);
  if (!rendered.ok() || !options.continue_final_message) return rendered;
  return cut_after_final_message(rendered.value(), messages);
}

Result<std::string> cut_after_final_message(const std::string& rendered, const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty() || !messages.back().is_object())
    return make_error(ErrorCode::invalid_argument, "continue_final_message needs a final message");
  const nlohmann::json& content = messages.back().contains("content") ? messages.back()["content"] : nlohmann::json();
  const std::string final_message = content.is_string() ? content.get<std::string>() : std::string();
  if (size_t at = rendered.rfind(final_message); at != std::string::npos) return rendered.substr(0, at + final_message.size());
  const size_t begin = final_message.find_first_not_of(" \t\n\r");
  const size_t end = final_message.find_last_not_of(" \t\n\r");
  if (begin != std::string::npos) {
    const std::string stripped = final_message.substr(begin, end - begin + 1);
    if (size_t at = rendered.rfind(stripped); at != std::string::npos) return rendered.substr(0, at + stripped.size());
  }
  return make_error(ErrorCode::invalid_argument,
                    "continue_final_message is set but the final message does not appear in the rendered chat");
}

}  // namespace troupe
