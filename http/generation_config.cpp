#include "http/generation_config.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/json_fields.hpp"
#include "runtime/logging.hpp"
#include "runtime/model_config_sections.hpp"

namespace troupe::http {
namespace {

Result<GenerationDefaults> from_folder(const std::string& folder) {
  const std::filesystem::path path = std::filesystem::path(folder) / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return GenerationDefaults{};  // as transformers: none there, none used
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  const nlohmann::json root = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object())
    return make_error(ErrorCode::corrupt_data, path.string() + ": not a valid JSON object");
  GenerationDefaults defaults;
  TROUPE_TRY(detail::parse_generation_defaults(detail::FieldReader(root, path.string()), &defaults));
  return defaults;
}

}  // namespace

Result<GenerationDefaults> load_generation_defaults(const Config& config) {
  GenerationDefaults defaults;
  if (config.generation_config == "auto") {
    if (!config.model.empty()) {
      Result<GenerationDefaults> loaded = from_folder(config.model);
      if (!loaded.ok()) return loaded.error();
      defaults = loaded.value();
    }
  } else if (config.generation_config != "vllm") {
    std::error_code ec;
    if (!std::filesystem::is_directory(config.generation_config, ec))
      return make_error(ErrorCode::not_found, "--generation-config: '" + config.generation_config +
                                                  "' is not a folder (or auto, or vllm)");
    Result<GenerationDefaults> loaded = from_folder(config.generation_config);
    if (!loaded.ok()) return loaded.error();
    defaults = loaded.value();
  }
  if (config.override_generation_config.empty()) return defaults;
  const nlohmann::json over = nlohmann::json::parse(config.override_generation_config, nullptr, false);
  if (over.is_discarded() || !over.is_object())
    return make_error(ErrorCode::invalid_argument, "--override-generation-config: must be a JSON object, got '" +
                                                       config.override_generation_config + "'");
  TROUPE_TRY(detail::parse_generation_defaults(detail::FieldReader(over, "--override-generation-config"), &defaults));
  for (auto it = over.begin(); it != over.end(); ++it)
    if (it.key() != "temperature" && it.key() != "top_p" && it.key() != "top_k")
      log::get("http")->warn("--override-generation-config: '{}' is ignored (troupe applies temperature, top_p, top_k)",
                             it.key());
  return defaults;
}

}  // namespace troupe::http
