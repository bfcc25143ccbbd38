// What the order of a GEMV's weight reads costs: kernels/stream_tiles reads a [rows, K] FP8 weight
// of each decode shape as a tiled GEMV does (a warp's tile of rows, `chunk` bytes of each row a
// step, tiles optionally starting at turned columns), against kernels/stream_read's contiguous pass
// over the same bytes, both against the HBM limit measured here. No arithmetic: a gap between the
// two is the order's, and a GEMV slower than its order's pass loses the rest in its own loop.
//   hbm_pattern_<shape>_contiguous, hbm_pattern_<shape>_r<rows>_c<chunk>_rot<R>: GB/s.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_log.hpp"
#include "bench/device_ceilings.hpp"
#include "kernels/stream_read.hpp"
#include "kernels/stream_tiles.hpp"

namespace troupe {
namespace {

using bench::cuda_ok;
using bench::say;

struct Shape {
  const char* name;
  int64_t rows, row_bytes;
};
// FP8 weights of the decode steps measured in gpu_decode_bench and dsv3_model_bench.
constexpr Shape kShapes[] = {
    {"llama3_8b_qkv", 6144, 4096},      {"llama3_8b_o", 4096, 4096},   {"llama3_8b_gate_up", 28672, 4096},
    {"llama3_8b_down", 4096, 14336},    {"r1_o", 7168, 16384},         {"r1_dense_gate_up", 36864, 7168},
    {"r1_dense_down", 7168, 18432},     {"r1_q_b", 24576, 1536},
};

struct Variant {
  int rows, chunk, rotation;
};
constexpr Variant kVariants[] = {{16, 64, 0},  {16, 128, 0}, {16, 128, 1}, {16, 128, 5}, {16, 256, 0},
                                 {16, 256, 1}, {8, 256, 0},  {8, 512, 0},  {8, 512, 1},  {4, 512, 0}};

constexpr size_t kArena = size_t(2) << 30;  // launches read copies in turn, so none hits L2
constexpr int kReps = 30;

template <class Launch>
double gbs_of(const Shape& s, Launch launch) {
  const size_t bytes = size_t(s.rows * s.row_bytes);
  const size_t copies = std::max<size_t>(1, kArena / bytes);
  size_t next = 0;
  bool ok = true;
  const double ms = bench::time_events_ms(kReps, [&] {
    ok = ok && cuda_ok(launch(size_t(next) * bytes), "stream launch");
    next = (next + 1) % copies;
  });
  return ok && ms > 0 ? double(bytes) / (ms * 1e-3) / 1e9 : 0;
}

void record(const std::string& metric, double gbs, double bw, const std::string& note) {
  if (gbs <= 0) return;
  BenchRecord r{metric, gbs, "GB/s", {}, {}, note};
  if (bw > 0) r.limit = bw, r.fraction_of_limit = gbs / bw;
  bench::add_record(r);
}

int run(int argc, char** argv) {
  std::string command, out;
  double time_limit = 120;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--out") out = argv[i + 1];
    else if (k == "--time-limit") time_limit = std::atof(argv[i + 1]);
    else say("unknown flag %s", k.c_str());
  }
  bench::init_log("hbm_pattern", out, command, time_limit);
  bench::start_watchdog();
  cudaDeviceProp prop{};
  if (!cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  bench::set_log_device(prop.name);
  const double bw = bench::measure_bandwidth();
  if (bw > 0) bench::add_record({"hbm_bandwidth", bw, "GB/s", {}, {}, "the HBM limit (bench/README.md)"});

  uint8_t* arena = nullptr;
  uint32_t* partials = nullptr;
  if (!cuda_ok(cudaMalloc(&arena, kArena), "cudaMalloc arena") ||
      !cuda_ok(cudaMalloc(&partials, 65536 * sizeof(uint32_t)), "cudaMalloc partials"))
    return 1;
  cudaMemset(arena, 0x5a, kArena);
  const int tile_blocks = 2 * prop.multiProcessorCount;  // two CTAs of 8 warps an SM, as the FP8 GEMV
  for (const Shape& s : kShapes) {
    if (bench::remaining_s() < 10) break;
    const std::string stem = std::string("hbm_pattern_") + s.name;
    const size_t words = size_t(s.rows * s.row_bytes) / 16;
    const double contiguous = gbs_of(s, [&](size_t offset) {
      return kernels::launch_stream_read(arena + offset, words, partials, 4 * prop.multiProcessorCount, nullptr);
    });
    record(stem + "_contiguous", contiguous, bw,
           "kernels/stream_read over the weight's bytes (4 CTAs of 512 threads an SM), median of 30 launches "
           "timed alone, copies in turn; limit = HBM bandwidth measured here");
    for (const Variant& v : kVariants) {
      const double gbs = gbs_of(s, [&](size_t offset) {
        return kernels::launch_stream_tiles(arena + offset, s.rows, s.row_bytes, v.rows, v.chunk, v.rotation,
                                            partials, tile_blocks, nullptr);
      });
      char name[96];
      std::snprintf(name, sizeof name, "_r%d_c%d_rot%d", v.rows, v.chunk, v.rotation);
      record(stem + name, gbs, bw,
             "kernels/stream_tiles: " + std::to_string(v.rows) + "-row tiles a warp, " + std::to_string(v.chunk) +
                 " bytes a row a step, 3 steps in flight, tiles turned by " + std::to_string(v.rotation) +
                 " steps each, 2 CTAs of 8 warps an SM; median of 30 launches timed alone, copies in turn; "
                 "limit = HBM bandwidth measured here");
      say("  %-20s r%-2d c%-3d rot%d  %.0f GB/s (contiguous %.0f)", s.name, v.rows, v.chunk, v.rotation, gbs,
          contiguous);
    }
  }
  cudaFree(arena);
  cudaFree(partials);
  bench::finish(0);
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { return troupe::run(argc, argv); }
