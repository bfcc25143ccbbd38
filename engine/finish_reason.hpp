#pragma once
// Why a request ended. The OpenAI spelling ("stop", "length", ...) appears only where a reason is
// serialized: http's JSON, the CLI's output, the cluster's messages (an enum on the wire).
#include <cstdint>
#include <string>

namespace troupe {

enum class FinishReason : uint8_t {
  none,    // still running
  stop,    // EOS, a stop token id or a stop string
  length,  // max_tokens or the model's context
  abort,   // cancelled by the client
  error,   // failed: the output's error_message says why
};

// "" for none, else the OpenAI spelling.
std::string to_string(FinishReason reason);

}  // namespace troupe
