#include "bench/decode_steps.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <new>

#include "bench/bench_log.hpp"
#include "bench/device_ceilings.hpp"

namespace troupe::bench {

using Clock = std::chrono::steady_clock;

namespace {

std::string take_backend_error(Backend& backend) {
  if (auto* profiling = dynamic_cast<ProfilingBackend*>(&backend)) return take_backend_error(profiling->inner());
  auto* cuda = dynamic_cast<cuda::CudaBackend*>(&backend);
  return cuda ? cuda->take_error() : std::string();
}

// Sequences of one decode/prefill batch with their own blocks in one cache.
struct Batch {
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch fb;
};

// `num_seqs` sequences of `num_new` tokens each, ending at context `context`.
void fill_batch(Batch& b, int64_t num_seqs, int64_t num_new, int64_t context, int64_t vocab) {
  b.fb = ForwardBatch();
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t i = 0; i < num_new; ++i) {
      b.fb.token_ids.push_back(int32_t((s * 7919 + (context - num_new + i) * 104729) % vocab));
      b.fb.positions.push_back(int32_t(context - num_new + i));
    }
    b.fb.seqs.push_back({int32_t(num_new), int32_t(context), &b.tables[size_t(s)], true});
  }
}


}  // namespace

StepTimes run_steps(Model& model, Backend& backend, int64_t num_seqs, int64_t num_new, int64_t context,
                    int64_t warm, int64_t steps, double budget_s, ProfilingBackend* profiler,
                    std::vector<OpProfile>* profile) {
  StepTimes out;
  const int64_t block_size = 16;
  const int64_t max_context = context + warm + steps;
  const int64_t per_seq = (max_context + block_size - 1) / block_size;
  KvCacheSpec spec = model.kv_cache_spec(num_seqs * per_seq, block_size);
  size_t free_bytes = 0, total_bytes = 0;
  const bool known = backend.memory_info(&free_bytes, &total_bytes);  // false on the CPU
  const ModelConfig& c = model.config();
  const int64_t activations =
      num_seqs * num_new * (6 * c.hidden_size + 4 * c.intermediate_size + c.vocab_size) * 4 + (int64_t(1) << 30);
  if (known && spec.total_bytes() + activations > int64_t(free_bytes)) {
    say("  skipped: needs %.1f GiB (KV %.1f GiB), %.1f GiB free", double(spec.total_bytes() + activations) / (1 << 30),
        double(spec.total_bytes()) / (1 << 30), double(free_bytes) / (1 << 30));
    out.ok = false;
    return out;
  }
  try {
    auto cache = backend.create_kv_cache(spec);
    if (!cache.ok()) {
      say("  KV cache: %s", cache.error().message.c_str());
      out.ok = false;
      return out;
    }
    Batch b;
    b.tables.resize(size_t(num_seqs));
    for (int64_t s = 0; s < num_seqs; ++s)
      for (int64_t i = 0; i < per_seq; ++i) b.tables[size_t(s)].push_back(int32_t(s * per_seq + i));
    const Clock::time_point begin = Clock::now();
    for (int64_t step = 0; step < warm + steps; ++step) {
      fill_batch(b, num_seqs, num_new, context + step, c.vocab_size);
      const bool profiled = profiler != nullptr && step + 1 == warm + steps;
      if (profiled) {
        if (backend.device() == Device::cuda) cudaDeviceSynchronize();
        profiler->start();
      }
      const Clock::time_point t0 = Clock::now();
      auto logits = model.forward(b.fb, cache.value(), LogitsMode::last_token);
      const double host_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (profiled && logits.ok()) profiler->argmax(logits.value());
      if (backend.device() == Device::cuda) cudaDeviceSynchronize();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (profiled) *profile = profiler->stop();
      const std::string err = take_backend_error(backend);
      if (!logits.ok() || !err.empty()) {
        say("  step %lld failed: %s", (long long)step, logits.ok() ? err.c_str() : logits.error().message.c_str());
        out.ok = false;
        return out;
      }
      if (step == 0) {
        for (float v : backend.to_host(logits.value()).to_f32_vector()) out.finite = out.finite && std::isfinite(v);
        if (!out.finite) say("  warning: non-finite logits");
      }
      if (step >= warm) {
        out.ms.push_back(ms);
        out.host_ms.push_back(host_ms);
      }
      const double spent = std::chrono::duration<double>(Clock::now() - begin).count();
      if (spent > budget_s || remaining_s() < 10) {
        say("  stopping after %lld steps (%.1f s spent)", (long long)(step + 1), spent);
        break;
      }
    }
  } catch (const std::bad_alloc&) {
    say("  out of GPU memory");
    take_backend_error(backend);
    out.ok = false;
  }
  return out;
}

double linear_ms_per_step(cuda::CudaBackend& backend, const ModelConfig& c, double bw_gbs) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  struct Op {
    const char* name;
    int64_t out, in, per_step;  // per_step: how often it runs in one step
  };
  // The model's products at one token: q/k/v and gate/up run fused (models/attention.hpp, mlp.hpp).
  const std::vector<Op> ops = {{"qkv_proj", q + 2 * kv, h, c.num_hidden_layers},
                               {"o_proj", h, q, c.num_hidden_layers},
                               {"gate_up_proj", 2 * inter, h, c.num_hidden_layers},
                               {"down_proj", h, inter, c.num_hidden_layers},
                               {"lm_head", c.vocab_size, h, 1}};
  double total = 0;
  try {
    for (const Op& op : ops) {
      Tensor w = backend.empty(backend.weight_dtype(), {op.out, op.in});
      Tensor x = backend.empty(DType::f32, {1, op.in});
      Tensor y = backend.empty(DType::f32, {1, op.out});
      cudaMemset(w.raw(), 0, w.nbytes());
      cudaMemset(x.raw(), 0, x.nbytes());
      const double ms = time_events_ms(20, [&] { backend.linear(x, w, Tensor(), y); });
      const std::string err = backend.take_error();
      if (!err.empty()) {
        say("  linear %s failed: %s", op.name, err.c_str());
        return 0;
      }
      const double gbs = double(w.nbytes()) / (ms * 1e-3) / 1e9;
      say("  %-12s [%6lld x %6lld] %8.4f ms  %7.1f GB/s (%4.0f%% of HBM)  x %lld per step = %8.3f ms", op.name,
          (long long)op.out, (long long)op.in, ms, gbs, bw_gbs > 0 ? 100 * gbs / bw_gbs : 0.0, (long long)op.per_step,
          ms * double(op.per_step));
      total += ms * double(op.per_step);
    }
  } catch (const std::bad_alloc&) {
    say("  out of GPU memory");
    backend.take_error();
    return 0;
  }
  return total;
}

namespace {

// "linear 6144x4096" -> "linear_6144x4096".
std::string metric_name(std::string op) {
  for (char& ch : op)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return op;
}

}  // namespace

void profile_step(Model& model, ProfilingBackend& profiler, int64_t num_new, int64_t context, int64_t warm,
                  const std::string& prefix, const std::string& what, double unprofiled_ms, int64_t num_seqs) {
  say("%s, op by op (CUDA events around every backend call):", what.c_str());
  std::vector<OpProfile> ops;
  StepTimes t = run_steps(model, profiler, num_seqs, num_new, context, warm, 1, 30, &profiler, &ops);
  if (!t.ok || t.ms.empty() || ops.empty()) {
    say("  profile failed");
    return;
  }
  const double step_ms = t.ms.back();
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.gpu_ms > b.gpu_ms; });
  double sum_ms = 0, host_ms = 0;
  int64_t calls = 0;
  for (const auto& op : ops) {
    sum_ms += op.gpu_ms;
    host_ms += op.host_ms;
    calls += op.calls;
  }
  const std::string& step_kind = what;
  const std::string limit_note = "limit = the profiled step's wall time, " + std::to_string(step_ms) +
                                 " ms (the unprofiled median step: " + std::to_string(unprofiled_ms) + " ms)";
  for (const auto& op : ops) {
    say("  %-24s %5lld calls %9.4f ms GPU (%5.1f%%)  %8.4f ms host inside the calls", op.name.c_str(),
        (long long)op.calls, op.gpu_ms, 100 * op.gpu_ms / step_ms, op.host_ms);
    add_record({prefix + metric_name(op.name), op.gpu_ms, "ms", step_ms, op.gpu_ms / step_ms,
                op.name + ": CUDA-event time of its " + std::to_string(op.calls) + " calls summed over " + step_kind +
                    "; " + limit_note,
                {{"calls", double(op.calls)}, {"host_ms", op.host_ms}}});
  }
  const double rest = step_ms - sum_ms;
  say("  ops %.3f ms of the %.3f ms step (%lld calls); unaccounted %.3f ms; host between calls %.3f ms", sum_ms,
      step_ms, (long long)calls, rest, profiler.host_gap_ms());
  add_record({prefix + "unaccounted", rest, "ms", step_ms, rest / step_ms,
              "step wall time minus the summed op times (" + std::to_string(sum_ms) + " ms over " +
                  std::to_string(calls) + " calls): launch gaps, host work, synchronization, event overhead; " +
                  step_kind + "; " + limit_note,
              {{"ops_ms", sum_ms}, {"calls", double(calls)}, {"unprofiled_step_ms", unprofiled_ms}}});
  add_record({prefix + "host_gap", profiler.host_gap_ms(), "ms", step_ms, profiler.host_gap_ms() / step_ms,
              "host time between backend calls (the model's own work: metadata, checks, tensor handles); it "
              "overlaps GPU work while the GPU is behind, so it is not part of the sum; host time inside the calls " +
                  std::to_string(host_ms) + " ms; " + step_kind + "; " + limit_note,
              {{"host_inside_calls_ms", host_ms}}});
}

}  // namespace troupe::bench
