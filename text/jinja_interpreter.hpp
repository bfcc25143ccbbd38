#pragma once
// troupe's small Jinja interpreter: a parsed template rendered against a dict of variables, with
// the environment transformers uses for chat templates (trim_blocks, lstrip_blocks, default
// Undefined, its `tojson`, raise_exception and strftime_now, loop controls).
#include <memory>
#include <string>

#include "text/jinja_parser.hpp"
#include "text/jinja_value.hpp"
#include "runtime/result.hpp"

namespace troupe::jinja {

// Bounds on one render, as sandboxed Jinja bounds untrusted templates (a chat template comes with
// the model folder). Passing one fails the render with ErrorCode::invalid_argument naming it.
struct RenderLimits {
  int64_t max_loop_iterations = 1'000'000;  // for-loop bodies and loop filters, over the whole render
  size_t max_output_bytes = size_t{64} << 20;  // the rendered text, and any one string value
  int max_recursion = 100;                    // macro calls inside one another
  int max_expression_depth = 1000;            // sub-expressions evaluated inside one another
};

class Template {
 public:
  // ErrorCode::unsupported (naming the construct and its line/column) when outside the subset.
  static Result<std::shared_ptr<const Template>> parse(const std::string& source);

  // variables: the template's globals (messages, tools, bos_token, ...). raise_exception(msg)
  // gives ErrorCode::invalid_argument with msg; other runtime errors (None + str, undefined
  // attribute of an undefined value, ...) give invalid_argument prefixed "chat template: ".
  Result<std::string> render(const ValueDict& variables, const RenderLimits& limits = {}) const;

 private:
  std::string source_;
  NodeList nodes_;
};

}  // namespace troupe::jinja
