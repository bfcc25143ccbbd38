#include "engine/block_hash.hpp"

#include <openssl/sha.h>

#include <cstring>

namespace troupe {
namespace {

void put_u64(unsigned char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t get_u64(const unsigned char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

}  // namespace

BlockHash hash_block(const BlockHash& parent, uint64_t extra_key, const TokenSpan& tokens, int64_t begin,
                     int64_t block_size) {
  // [parent hi | parent lo | extra key | token ids], little-endian.
  std::vector<unsigned char> bytes(24 + 4 * size_t(block_size));
  put_u64(bytes.data(), parent.hi);
  put_u64(bytes.data() + 8, parent.lo);
  put_u64(bytes.data() + 16, extra_key);
  for (int64_t i = 0; i < block_size; ++i) {
    const uint32_t t = static_cast<uint32_t>(tokens[begin + i]);
    unsigned char* p = bytes.data() + 24 + 4 * i;
    p[0] = static_cast<unsigned char>(t);
    p[1] = static_cast<unsigned char>(t >> 8);
    p[2] = static_cast<unsigned char>(t >> 16);
    p[3] = static_cast<unsigned char>(t >> 24);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(bytes.data(), bytes.size(), digest);
  return BlockHash{get_u64(digest), get_u64(digest + 8)};
}

void extend_block_hashes(std::vector<BlockHash>& hashes, const TokenSpan& tokens, int64_t block_size,
                         uint64_t extra_key) {
  const int64_t num_full = tokens.size() / block_size;
  for (int64_t b = int64_t(hashes.size()); b < num_full; ++b) {
    const BlockHash parent = b == 0 ? BlockHash{} : hashes[b - 1];
    hashes.push_back(hash_block(parent, extra_key, tokens, b * block_size, block_size));
  }
}

}  // namespace troupe
