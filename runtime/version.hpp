#pragma once

namespace troupe {
inline constexpr const char* kVersion = "0.1.0";
}
