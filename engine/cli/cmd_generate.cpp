// qllm generate: one prompt in, text streamed to the terminal.
//
// Runs the CPU reference forward pass: prefill in chunks of
// scheduler.prefill_chunk tokens, then one decode step per token. (`qllm
// run` and `qllm serve` run on the configured dispatcher.)
#include "engine/cli/commands.h"
#include "engine/common/error.h"
#include "engine/config/engine_config.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/reference_model.h"
#include "engine/cpu/sampling.h"
#include "engine/model/builtin.h"
#include "engine/model/checkpoint.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/device_info.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>

namespace qllm::cli {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

Run add_generate(CLI::App& app) {
  struct Opts {
    EngineOptions engine;
    std::string prompt;
    bool chat = false, ignore_eos = false, show_ids = false, quiet = false;
    int max_tokens = -1, top_k = -1;
    double temperature = -1, top_p = -1;
    int64_t seed = -1;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add_to(app);
  app.add_option("-p,--prompt", o->prompt, "prompt text (default: read stdin)");
  app.add_flag("--chat", o->chat, "wrap the prompt as a user message with the checkpoint's chat template");
  app.add_option("-n,--max-tokens", o->max_tokens, "tokens to generate (default: sampling.max_tokens)");
  app.add_option("--temperature", o->temperature, "0 = greedy (default: sampling.temperature)");
  app.add_option("--top-p", o->top_p, "nucleus threshold (default: sampling.top_p)");
  app.add_option("--top-k", o->top_k, "top-k (default: sampling.top_k)");
  app.add_option("--seed", o->seed, "sampling seed (default: sampling.seed)");
  app.add_flag("--ignore-eos", o->ignore_eos, "keep going past end-of-sequence tokens");
  app.add_flag("--show-ids", o->show_ids, "print the prompt and generated token ids");
  app.add_flag("-q,--quiet", o->quiet, "only the generated text");
  return [o]() -> int {
    EngineConfig cfg = o->engine.load();
    if (o->max_tokens > 0) cfg.sampling_max_tokens = o->max_tokens;
    SamplingParams sp;
    sp.temperature = o->temperature >= 0 ? o->temperature : cfg.sampling_temperature;
    sp.top_p = o->top_p > 0 ? o->top_p : cfg.sampling_top_p;
    sp.top_k = o->top_k >= 0 ? o->top_k : int(cfg.sampling_top_k);
    sp.seed = uint64_t(o->seed >= 0 ? o->seed : cfg.sampling_seed);
    cpu::set_num_threads(int(cfg.cpu_threads));

    auto note = [&](const std::string& s) {
      if (!o->quiet) std::fprintf(stderr, "%s\n", s.c_str());
    };
    // Dispatcher: the CPU reference runs everywhere; the GPU dispatchers are
    // selected here once they exist.
    const auto devs = cuda::query_devices();
    if (cfg.scheduler_dispatcher != "cpu")
      note(devs.devices.empty()
               ? fmt::format("dispatcher {}: no CUDA device ({}), using cpu", cfg.scheduler_dispatcher, devs.why_none)
               : fmt::format("dispatcher {}: qllm generate runs the cpu reference (qllm run and qllm serve "
                             "use the GPU dispatchers)", cfg.scheduler_dispatcher));

    const auto dir = resolve_model_path(cfg.model_path, !o->quiet);
    CheckpointOptions copts;
    copts.progress = !o->quiet;
    const auto ck = Checkpoint::open(dir, copts);
    const auto tok = Tokenizer::from_file(dir);
    const auto& d = ck.desc();
    note(fmt::format("model {} ({}, {} layers, {} experts, top-{})", dir.string(), d.architecture,
                     d.layers, d.num_experts, d.top_k));

    std::string prompt = o->prompt;
    if (prompt.empty()) prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    std::vector<int32_t> ids;
    if (o->chat) {
      const auto tc = load_tokenizer_config(dir / "tokenizer_config.json");
      nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
      msgs.push_back({{"role", "user"}, {"content", prompt}});
      ids = tok.encode(apply_chat_template(tc, msgs, true), /*add_special=*/false);
    } else {
      ids = tok.encode(prompt, /*add_special=*/true);
    }
    if (ids.empty()) fail("the prompt is empty after tokenization");
    const int max_len = int(std::min<int64_t>(cfg.model_max_seq_len, d.max_positions));
    if (int(ids.size()) >= max_len)
      fail("the prompt has {} tokens; model.max_seq_len allows {}", ids.size(), max_len);
    const int budget = int(std::min<int64_t>(cfg.sampling_max_tokens, max_len - int64_t(ids.size())));

    const auto t_load = Clock::now();
    const cpu::ReferenceModel model(ck);
    auto cache = model.new_cache(int(ids.size()) + budget);
    note(fmt::format("weights converted to fp32 in {:.2f} s; prompt {} tokens; dispatcher cpu",
                     secs(t_load, Clock::now()), ids.size()));
    if (o->show_ids) {
      std::string s;
      for (auto id : ids) s += fmt::format("{} ", id);
      note("prompt ids: " + s);
    }

    const auto stops = d.stop_token_ids();
    const auto t0 = Clock::now();
    std::vector<float> logits;
    const size_t chunk = size_t(cfg.scheduler_prefill_chunk);
    for (size_t b = 0; b < ids.size(); b += chunk) {
      const size_t e = std::min(ids.size(), b + chunk);
      logits = model.forward(cache, std::span(ids).subspan(b, e - b));
    }
    const auto t1 = Clock::now();
    StreamDecoder stream(tok);
    std::vector<int32_t> out;
    std::string finish = "length";
    for (int step = 0; step < budget; ++step) {
      const int32_t next = sample_token(logits, sp, uint64_t(step));
      out.push_back(next);
      if (!o->ignore_eos && std::find(stops.begin(), stops.end(), next) != stops.end()) {
        finish = "stop";
        break;
      }
      std::fputs(stream.push(next).c_str(), stdout);
      std::fflush(stdout);
      if (step + 1 < budget) logits = model.forward(cache, std::span(&next, 1));
    }
    std::fputs(stream.flush().c_str(), stdout);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    const auto t2 = Clock::now();
    if (o->show_ids) {
      std::string s;
      for (auto id : out) s += fmt::format("{} ", id);
      note("generated ids: " + s);
    }
    note(fmt::format("prefill {} tokens in {:.3f} s ({:.0f} tok/s); decode {} tokens in {:.3f} s "
                     "({:.1f} tok/s); finish: {}",
                     ids.size(), secs(t0, t1), double(ids.size()) / std::max(1e-9, secs(t0, t1)),
                     out.size(), secs(t1, t2), double(out.size()) / std::max(1e-9, secs(t1, t2)),
                     finish));
    return 0;
  };
}

}  // namespace qllm::cli
