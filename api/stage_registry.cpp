#include "api/stage_registry.hpp"

#include <map>
#include <mutex>

namespace troupe::api {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, StageFunction> functions;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

}  // namespace

Status register_stage(const std::string& name, StageFunction function) {
  if (name.empty()) return make_error(ErrorCode::invalid_argument, "register_stage: the name is empty");
  if (!function) return make_error(ErrorCode::invalid_argument, "register_stage('" + name + "'): the function is empty");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (!r.functions.emplace(name, std::move(function)).second)
    return make_error(ErrorCode::invalid_argument, "register_stage: '" + name + "' is already registered");
  return Status::success();
}

std::vector<std::string> registered_stages() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& entry : r.functions) names.push_back(entry.first);
  return names;
}

namespace detail {

Result<StageFunction> find_stage(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.functions.find(name);
  if (it != r.functions.end()) return it->second;
  std::string known;
  for (const auto& entry : r.functions) known += (known.empty() ? "" : ", ") + entry.first;
  return make_error(ErrorCode::not_found, "no stage function named '" + name + "' is registered (registered: " +
                                              (known.empty() ? "none" : known) + ")");
}

}  // namespace detail
}  // namespace troupe::api
