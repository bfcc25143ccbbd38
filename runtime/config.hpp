#pragma once
// The one configuration struct of troupe. Config files (configs/*.toml) map 1:1 onto these fields
// (the key is the command-line flag's long name); the command line overrides the file.
#include <cstdint>
#include <string>

#include "runtime/result.hpp"

namespace troupe {

struct Config {
  // Model.
  std::string model;                 // Hugging Face model folder
  std::string served_model_name;     // name clients send as `model`; defaults to the folder name
  std::string load_format = "auto";  // auto | dummy (random weights from config.json)
  std::string device = "auto";       // auto | cpu | cuda
  std::string dtype = "auto";        // GPU weights: auto (bfloat16 for bf16 checkpoints) | float32 | bfloat16
  int64_t max_model_len = 0;         // 0: the model's max_position_embeddings

  // Engine and scheduler.
  int64_t max_num_seqs = 256;             // sequences in one engine step
  int64_t max_num_batched_tokens = 8192;  // prefill token budget of one step
  int64_t block_size = 16;                // tokens per KV-cache block
  int64_t num_kv_blocks = 0;              // 0: sized from memory (see gpu_memory_utilization)
  double gpu_memory_utilization = 0.9;    // fraction of GPU memory troupe may use
  int64_t cpu_kv_cache_mb = 512;          // KV-cache size on the CPU backend
  int64_t num_threads = 0;                // CPU backend threads; 0: all cores
  bool enforce_eager = false;             // no CUDA graphs
  int64_t seed = 0;

  // HTTP front door.
  std::string host = "127.0.0.1";
  int64_t http_port = 8000;
  std::string api_key;  // also TROUPE_API_KEY
  std::string reasoning_parser;  // "" | deepseek_r1
  int64_t max_body_bytes = 16 << 20;

  // Cluster.
  int64_t cluster_port = 7400;  // `troupe head --port`
  std::string join;             // `troupe worker --join HOST:PORT`
  std::string token;            // shared join token, also TROUPE_TOKEN
  int64_t tensor_parallel_size = 1;
  int64_t pipeline_parallel_size = 1;
  int64_t replicas = 1;
  int64_t worker_index = -1;  // LWS_WORKER_INDEX
  int64_t first_device = 0;   // GPU of tensor-parallel rank 0 (set per stage by `serve --pp`)
  bool supervise = true;      // `troupe worker` restarts its crashed child process

  std::string log_level = "info";
  std::string config_file;  // the --config file these values came from, if any

  // Checks every field; the error names the field and the bad value.
  Status validate() const;
};

}  // namespace troupe
