// How fast a checkpoint loads against how fast its disk reads, measured in the same run.
//
//   1. writes a Llama-3-8B-shaped bf16 checkpoint of --layers layers (about 0.44 GB a layer plus
//      2.1 GB of embeddings and LM head) in shards of about 2 GB, with an index, under --dir;
//   2. evicts its files from the page cache (posix_fadvise DONTNEED; the resident share left is
//      measured with mincore and printed: on tmpfs nothing can be evicted and the "disk" is RAM);
//   3. the disk's rate: every file read once with 4 threads of 16 MiB preads; evicted again;
//   4. troupe's load (load_model on --device, weights in the backend's dtype) from the cold
//      files: `load_rate`, fraction = load rate / disk rate (goal 0.8);
//   5. the same load again with the files cached: `load_rate_warm`, what the copy, conversion and
//      upload cost alone.
// usage: load_bench [--dir DIR] [--layers N] [--device cpu|cuda] [--out PATH] [--keep]
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/backend_factory.hpp"
#include "models/model_loader.hpp"
#include "runtime/bench_record.hpp"
#include "runtime/config.hpp"
#include "runtime/dtype.hpp"
#include "runtime/safetensors_writer.hpp"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct Args {
  std::string dir = ".load_bench";
  int64_t layers = 8;
  std::string device = "cuda";
  std::string out;
  bool keep = false;
  std::string command;
};

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// bf16 bytes of small random values (a repeated 1 MiB pattern: the disk does not care).
std::vector<uint8_t> bf16_bytes(int64_t numel, std::mt19937& rng) {
  static std::vector<uint8_t> pattern;
  if (pattern.empty()) {
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    pattern.resize(1 << 20);
    for (size_t i = 0; i < pattern.size(); i += 2) {
      const uint16_t bits = troupe::f32_to_bf16(u(rng));
      std::memcpy(&pattern[i], &bits, 2);
    }
  }
  std::vector<uint8_t> out(size_t(numel) * 2);
  const size_t shift = size_t(rng() % 1024) * 2;
  for (size_t i = 0; i < out.size(); ++i) out[i] = pattern[(i + shift) % pattern.size()];
  return out;
}

troupe::Status write_checkpoint(const Args& a, uint64_t* bytes) {
  const int64_t hidden = 4096, inter = 14336, heads = 32, kv_heads = 8, head_dim = 128, vocab = 128256;
  fs::create_directories(a.dir);
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
                           {"hidden_size", hidden}, {"intermediate_size", inter}, {"num_hidden_layers", a.layers},
                           {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads},
                           {"max_position_embeddings", 8192}, {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
                           {"vocab_size", vocab}, {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"},
                           {"bos_token_id", 1}, {"eos_token_id", 2}};
  std::ofstream(a.dir + "/config.json") << config.dump(2);
  std::mt19937 rng(7);
  std::vector<std::vector<std::pair<std::string, std::vector<int64_t>>>> shards(1);
  uint64_t in_shard = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    uint64_t n = 2;
    for (int64_t d : shape) n *= uint64_t(d);
    if (in_shard > 0 && in_shard + n > (2ull << 30)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().emplace_back(name, std::move(shape));
    in_shard += n;
  };
  add("model.embed_tokens.weight", {vocab, hidden});
  for (int64_t l = 0; l < a.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hidden});
    add(p + "self_attn.q_proj.weight", {heads * head_dim, hidden});
    add(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden});
    add(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden});
    add(p + "self_attn.o_proj.weight", {hidden, heads * head_dim});
    add(p + "post_attention_layernorm.weight", {hidden});
    add(p + "mlp.gate_proj.weight", {inter, hidden});
    add(p + "mlp.up_proj.weight", {inter, hidden});
    add(p + "mlp.down_proj.weight", {hidden, inter});
  }
  add("model.norm.weight", {hidden});
  add("lm_head.weight", {vocab, hidden});
  nlohmann::json weight_map = nlohmann::json::object();
  *bytes = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<troupe::NamedTensor> tensors;
    for (auto& [tensor, shape] : shards[s]) {
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      tensors.push_back({tensor, troupe::DType::bf16, shape, bf16_bytes(numel, rng)});
      *bytes += uint64_t(numel) * 2;
      weight_map[tensor] = name;
    }
    TROUPE_TRY(troupe::write_safetensors(a.dir + "/" + name, tensors));
  }
  std::ofstream(a.dir + "/model.safetensors.index.json")
      << nlohmann::json{{"metadata", {{"total_size", *bytes}}}, {"weight_map", weight_map}}.dump();
  return troupe::Status::success();
}

std::vector<std::string> weight_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Drops the files' pages from the page cache; returns the share still resident (mincore).
double evict(const std::vector<std::string>& files) {
  uint64_t pages = 0, resident = 0;
  const long page = sysconf(_SC_PAGESIZE);
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    struct stat st {};
    ::fstat(fd, &st);
    if (st.st_size > 0) {
      void* map = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
      if (map != MAP_FAILED) {
        std::vector<unsigned char> v(size_t((st.st_size + page - 1) / page));
        if (::mincore(map, size_t(st.st_size), v.data()) == 0)
          for (unsigned char c : v) resident += c & 1;
        pages += v.size();
        ::munmap(map, size_t(st.st_size));
      }
    }
    ::close(fd);
  }
  return pages ? double(resident) / double(pages) : 0.0;
}

// Reads every file once: 4 threads of 16 MiB preads over all files' chunks. Bytes per second.
double disk_read_rate(const std::vector<std::string>& files) {
  struct Chunk { size_t file; uint64_t offset, size; };
  std::vector<Chunk> chunks;
  uint64_t total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const uint64_t size = fs::file_size(files[i]);
    for (uint64_t off = 0; off < size; off += 16ull << 20) chunks.push_back({i, off, std::min<uint64_t>(16ull << 20, size - off)});
    total += size;
  }
  std::atomic<size_t> next{0};
  const auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<char> buf(16 << 20);
      std::vector<int> fds(files.size(), -1);
      for (size_t c; (c = next++) < chunks.size();) {
        const Chunk& k = chunks[c];
        if (fds[k.file] < 0) fds[k.file] = ::open(files[k.file].c_str(), O_RDONLY);
        uint64_t done = 0;
        while (done < k.size) {
          const ssize_t n = ::pread(fds[k.file], buf.data(), k.size - done, off_t(k.offset + done));
          if (n <= 0) break;
          done += uint64_t(n);
        }
      }
      for (int fd : fds)
        if (fd >= 0) ::close(fd);
    });
  }
  for (auto& t : threads) t.join();
  return double(total) / seconds_since(start);
}

std::string filesystem_of(const std::string& dir) {
  struct statfs s {};
  if (::statfs(dir.c_str(), &s) != 0) return "unknown";
  switch (uint64_t(s.f_type)) {
    case 0x01021994: return "tmpfs";
    case 0x794c7630: return "overlayfs";
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)s.f_type);
      return buf;
    }
  }
}

int run(int argc, char** argv) {
  Args a;
  for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--keep") { a.keep = true; continue; }
    if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", k.c_str()); return 2; }
    const std::string v = argv[++i];
    if (k == "--dir") a.dir = v;
    else if (k == "--layers") a.layers = std::max<int64_t>(1, std::atoll(v.c_str()));
    else if (k == "--device") a.device = v;
    else if (k == "--out") a.out = v;
    else { std::fprintf(stderr, "usage: load_bench [--dir DIR] [--layers N] [--device cpu|cuda] [--out PATH] [--keep]\n"); return 2; }
  }
  uint64_t bytes = 0;
  auto start = clock_type::now();
  if (auto s = write_checkpoint(a, &bytes); !s.ok()) { std::fprintf(stderr, "writing: %s\n", s.error().message.c_str()); return 1; }
  const double write_s = seconds_since(start);
  const auto files = weight_files(a.dir);
  const std::string fs_type = filesystem_of(a.dir);
  std::printf("checkpoint: %.2f GB in %zu shards on %s, written in %.1f s\n", bytes / 1e9, files.size(), fs_type.c_str(), write_s);

  const double resident0 = evict(files);
  const double disk = disk_read_rate(files);
  const double resident1 = evict(files);
  std::printf("disk read: %.2f GB/s (resident before: %.0f%%, after eviction: %.0f%%)\n", disk / 1e9, 100 * resident0,
              100 * resident1);

  troupe::Config config;
  config.device = a.device;
  config.model = a.dir;  // weights held in the checkpoint's dtype (bf16), as `troupe serve` holds them
  auto backend = troupe::backends::make_backend(config);
  if (!backend.ok()) { std::fprintf(stderr, "backend: %s\n", backend.error().message.c_str()); return 1; }
  double cold = 0, warm = 0;
  for (int pass = 0; pass < 2; ++pass) {
    start = clock_type::now();
    auto model = troupe::load_model(a.dir, *backend.value());
    const double s = seconds_since(start);
    if (!model.ok()) { std::fprintf(stderr, "load: %s\n", model.error().message.c_str()); return 1; }
    (pass == 0 ? cold : warm) = double(bytes) / s;
    std::printf("load (%s): %.1f s, %.2f GB/s\n", pass == 0 ? "cold" : "cached", s, double(bytes) / s / 1e9);
  }
  if (!a.keep) fs::remove_all(a.dir);

  const std::string where = "on " + fs_type + ", " + std::to_string(files.size()) + " shards";
  std::vector<troupe::BenchRecord> records;
  records.push_back({"load_rate", cold / 1e9, "GB/s", disk / 1e9, cold / disk,
                     "troupe's load_model of a Llama-3-8B-shaped bf16 checkpoint from evicted files against the same "
                     "files read by 4 threads of 16 MiB preads, " + where,
                     {{"bytes", double(bytes)}, {"resident_after_eviction", resident1}}});
  records.push_back({"load_rate_warm", warm / 1e9, "GB/s", std::nullopt, std::nullopt,
                     "the same load with the files in the page cache (copy, conversion, upload only)",
                     {{"bytes", double(bytes)}}});
  records.push_back({"disk_read_rate", disk / 1e9, "GB/s", std::nullopt, std::nullopt, "the limit above, " + where, {}});
  auto path = troupe::write_bench_records(records, "load", a.out, a.command);
  if (!path.ok()) { std::fprintf(stderr, "%s\n", path.error().message.c_str()); return 1; }
  std::printf("wrote %s\n", path->c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
