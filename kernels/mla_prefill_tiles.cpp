// The tensor-core MLA prefill's work list (mla_prefill.hpp): query tiles of each sequence, the
// ones that see the most keys first, so the last wave of CTAs is made of short tiles.
#include <algorithm>
#include <cstdint>

#include "kernels/mla_prefill.hpp"

namespace troupe::kernels {

std::vector<int32_t> mla_prefill_tiles(const std::vector<MlaPrefillSeq>& seqs, int64_t tile_rows) {
  if (tile_rows < 1) return {};
  struct Tile {
    int64_t token0, num_rows, pos0, key0;
  };
  std::vector<Tile> tiles;
  for (const MlaPrefillSeq& s : seqs) {
    if (s.num_new < 1 || s.ctx < s.num_new || s.q_begin < 0 || s.key_begin < 0 || s.ctx > INT32_MAX ||
        s.q_begin + s.num_new > INT32_MAX || s.key_begin + s.ctx > INT32_MAX)
      return {};
    for (int64_t i = 0; i < s.num_new; i += tile_rows)
      tiles.push_back({s.q_begin + i, std::min(tile_rows, s.num_new - i), s.ctx - s.num_new + i,
                       s.key_begin});
  }
  std::stable_sort(tiles.begin(), tiles.end(), [](const Tile& a, const Tile& b) {
    return a.pos0 + a.num_rows > b.pos0 + b.num_rows;
  });
  std::vector<int32_t> flat;
  flat.reserve(tiles.size() * 4);
  for (const Tile& t : tiles)
    for (int64_t v : {t.token0, t.num_rows, t.pos0, t.key0}) flat.push_back(int32_t(v));
  return flat;
}

}  // namespace troupe::kernels
