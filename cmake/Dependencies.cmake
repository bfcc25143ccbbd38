# Every dependency comes from a Debian package (tools/bootstrap installs them).
find_package(Threads REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(GTest REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(OpenSSL REQUIRED COMPONENTS Crypto SSL)  # SHA-256 of API keys in request logs; TLS
pkg_check_modules(UCX REQUIRED IMPORTED_TARGET ucx)
pkg_check_modules(ICU_UC REQUIRED IMPORTED_TARGET icu-uc)

# Debian ships CAF 0.17 without a CMake package.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
find_library(CAF_OPENSSL_LIBRARY caf_openssl REQUIRED)  # TLS on the cluster's control plane
add_library(troupe_caf INTERFACE)
target_include_directories(troupe_caf SYSTEM INTERFACE ${CAF_INCLUDE_DIR})
target_link_libraries(troupe_caf INTERFACE ${CAF_CORE_LIBRARY} ${CAF_IO_LIBRARY} ${CAF_OPENSSL_LIBRARY} Threads::Threads)
