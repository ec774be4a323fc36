// qllm_bench_gemm: the engine's GEMM plans (kernels/gemm.h) at the shapes of
// Mixtral-8x7B and OLMoE-1B-7B, the compute ceiling that prefill figures are
// reported against and the weight-streaming rate of small-M (decode) GEMMs.
//
//   qllm_bench_gemm [--json] [--models mixtral,olmoe] [--m 1,8,32,128,512,2048]
//                   [--iters N] [--warmup N] [--workspace-mib N]
//
// For each shape and M: a graph of R back-to-back plan.run calls is captured
// (R ≥ 20), launched `warmup` times untimed and `iters` times each timed with
// CUDA events; time per GEMM = median / R. The R calls rotate over enough
// (X, W, Y) sets that the weights they read exceed 3× the L2 size, so small
// weights are not served from L2 across calls. Inputs are synthetic bf16
// values (never zero, kernels/synthetic_fill.h).
//
// TFLOP/s = 2·M·N·K / time / 1e12. Weight GB/s = N·K·2 bytes / time / 1e9:
// the rate at which the GEMM streams its weights, to set against the copy
// ceiling (qllm_bench_copy) where M is small and the GEMM is memory-bound.
// Exits with code 2 and a message when there is no CUDA device.
#include "kernels/cuda_check.h"
#include "kernels/device_info.h"
#include "kernels/gemm.h"
#include "kernels/synthetic_fill.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using qllm::cuda::GemmOut;

struct Shape {
  const char* model;
  const char* gemm;
  int n, k;
  GemmOut out;
  bool accumulate;
};

// Mixtral-8x7B: hidden 4096, q 4096 (32 heads × 128), kv 1024 (8 × 128),
// expert ffn 14336, 8 experts, vocab 32000.
// OLMoE-1B-7B: hidden 2048, q = kv = 2048 (16 heads × 128), expert ffn 1024,
// 64 experts, vocab 50304.
// qkv is the fused q|k|v projection, gate_up one expert's fused gate|up; the
// attention output adds into the fp32 residual (accumulate); expert down,
// router and LM head write fp32.
const std::vector<Shape> kShapes = {
    {"mixtral-8x7b", "attn.qkv", 4096 + 2 * 1024, 4096, GemmOut::BF16, false},
    {"mixtral-8x7b", "attn.o", 4096, 4096, GemmOut::F32, true},
    {"mixtral-8x7b", "router", 8, 4096, GemmOut::F32, false},
    {"mixtral-8x7b", "expert.gate_up", 2 * 14336, 4096, GemmOut::BF16, false},
    {"mixtral-8x7b", "expert.down", 4096, 14336, GemmOut::F32, false},
    {"mixtral-8x7b", "lm_head", 32000, 4096, GemmOut::F32, false},
    {"olmoe-1b-7b", "attn.qkv", 3 * 2048, 2048, GemmOut::BF16, false},
    {"olmoe-1b-7b", "attn.o", 2048, 2048, GemmOut::F32, true},
    {"olmoe-1b-7b", "router", 64, 2048, GemmOut::F32, false},
    {"olmoe-1b-7b", "expert.gate_up", 2 * 1024, 2048, GemmOut::BF16, false},
    {"olmoe-1b-7b", "expert.down", 2048, 1024, GemmOut::F32, false},
    {"olmoe-1b-7b", "lm_head", 50304, 2048, GemmOut::F32, false},
};

struct Result {
  const Shape* shape;
  int m;
  int sets, reps;
  double us;  // per GEMM, median
  std::string algo;
  double tflops() const { return 2.0 * m * double(shape->n) * shape->k / (us * 1e-6) / 1e12; }
  double weight_gbps() const { return 2.0 * double(shape->n) * shape->k / (us * 1e-6) / 1e9; }
};

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    v.push_back(std::atoi(s.substr(pos, comma - pos).c_str()));
    pos = comma + 1;
  }
  return v;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "qllm_bench_gemm: %s\nusage: qllm_bench_gemm [--json] [--models mixtral,olmoe] "
               "[--m 1,8,32,128,512,2048] [--iters N] [--warmup N] [--workspace-mib N]\n",
               why.c_str());
  std::exit(1);
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  QLLM_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int iters = 20, warmup = 3, workspace_mib = 32;
  std::vector<int> ms = {1, 8, 32, 128, 512, 2048};
  std::string models = "mixtral,olmoe";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json") {
      json = true;
    } else if (a == "--models" && has_value) {
      models = argv[++i];
    } else if (a == "--m" && has_value) {
      ms = parse_ints(argv[++i]);
      for (int m : ms)
        if (m < 1 || m > qllm::cuda::kMaxGemmBucket) usage("--m values must be in [1, 16384]");
    } else if ((a == "--iters" || a == "--warmup" || a == "--workspace-mib") && has_value) {
      const int v = std::atoi(argv[++i]);
      if (v < (a == "--warmup" ? 0 : 1)) usage("bad value for " + a);
      (a == "--iters" ? iters : a == "--warmup" ? warmup : workspace_mib) = v;
    } else if (a == "-h" || a == "--help") {
      usage("GEMM plans at Mixtral-8x7B and OLMoE-1B-7B shapes");
    } else {
      usage("unknown argument " + a);
    }
  }
  std::vector<const Shape*> shapes;
  for (const auto& s : kShapes) {
    const std::string prefix = std::string(s.model).substr(0, std::string(s.model).find('-'));
    if (("," + models + ",").find("," + prefix + ",") != std::string::npos) shapes.push_back(&s);
  }
  if (shapes.empty()) usage("--models names none of mixtral, olmoe");

  const auto report = qllm::cuda::query_devices();
  if (report.devices.empty()) {
    std::fprintf(stderr, "qllm_bench_gemm: no CUDA device (%s); nothing measured\n", report.why_none.c_str());
    return 2;
  }
  const auto& dev = report.devices[0];
  QLLM_CUDA_CHECK(cudaSetDevice(dev.index));
  int l2_bytes = 0;
  QLLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev.index));

  qllm::cuda::GemmContext ctx(size_t(workspace_mib) << 20);
  cudaStream_t s = nullptr;
  QLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  QLLM_CUDA_CHECK(cudaEventCreate(&e0));
  QLLM_CUDA_CHECK(cudaEventCreate(&e1));
  const int max_m = *std::max_element(ms.begin(), ms.end());

  std::vector<Result> results;
  uint64_t key = 1;
  for (const Shape* sh : shapes) {
    const size_t w_elems = size_t(sh->n) * sh->k, x_elems = size_t(max_m) * sh->k;
    const size_t y_elems = size_t(max_m) * sh->n, y_es = sh->out == GemmOut::F32 ? 4 : 2;
    // Enough weight sets that one pass over them overflows L2 three times.
    const int sets = int(std::clamp<size_t>((3 * size_t(l2_bytes)) / (w_elems * 2) + 1, 1, 64));
    std::vector<void*> xs, wss, ys;
    for (int i = 0; i < sets; ++i) {
      xs.push_back(device_alloc(x_elems * 2));
      wss.push_back(device_alloc(w_elems * 2));
      ys.push_back(device_alloc(y_elems * y_es));
      // Values like the synthetic checkpoints: weights ±1/32, activations ±1.
      qllm::synth::SynthInit wi{key++, 0.0f, 1.0f / 32.0f}, xi{key++, 0.0f, 1.0f};
      qllm::cuda::synthetic_fill_bf16(static_cast<__nv_bfloat16*>(wss.back()), w_elems, wi, 0, s);
      qllm::cuda::synthetic_fill_bf16(static_cast<__nv_bfloat16*>(xs.back()), x_elems, xi, 0, s);
      if (sh->out == GemmOut::F32)
        qllm::cuda::synthetic_fill_f32(static_cast<float*>(ys.back()), y_elems, {key++, 0.0f, 1.0f}, 0, s);
      else
        QLLM_CUDA_CHECK(cudaMemsetAsync(ys.back(), 0, y_elems * y_es, s));
    }
    QLLM_CUDA_CHECK(cudaStreamSynchronize(s));

    for (int m : ms) {
      const auto& plan = ctx.plan({.m = m, .n = sh->n, .k = sh->k, .out = sh->out, .accumulate = sh->accumulate});
      const int reps = std::max(20, sets);
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      QLLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int r = 0; r < reps; ++r) {
        const int i = r % sets;
        const auto* x = static_cast<const __nv_bfloat16*>(xs[size_t(i)]);
        const auto* w = static_cast<const __nv_bfloat16*>(wss[size_t(i)]);
        if (sh->out == GemmOut::F32)
          plan.run(x, w, static_cast<float*>(ys[size_t(i)]), s);
        else
          plan.run(x, w, static_cast<__nv_bfloat16*>(ys[size_t(i)]), s);
      }
      QLLM_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
      QLLM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      QLLM_CUDA_CHECK(cudaGraphUpload(exec, s));
      for (int w = 0; w < warmup; ++w) QLLM_CUDA_CHECK(cudaGraphLaunch(exec, s));
      std::vector<double> t_ms;
      for (int it = 0; it < iters; ++it) {
        QLLM_CUDA_CHECK(cudaEventRecord(e0, s));
        QLLM_CUDA_CHECK(cudaGraphLaunch(exec, s));
        QLLM_CUDA_CHECK(cudaEventRecord(e1, s));
        QLLM_CUDA_CHECK(cudaEventSynchronize(e1));
        float t = 0;
        QLLM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
        t_ms.push_back(double(t));
      }
      QLLM_CUDA_CHECK(cudaGraphExecDestroy(exec));
      QLLM_CUDA_CHECK(cudaGraphDestroy(graph));
      std::sort(t_ms.begin(), t_ms.end());
      const size_t h = t_ms.size() / 2;
      const double med = t_ms.size() % 2 ? t_ms[h] : 0.5 * (t_ms[h - 1] + t_ms[h]);
      results.push_back({sh, m, sets, reps, med * 1e3 / reps, plan.describe()});
      if (!json)
        std::fprintf(stderr, "  %s %s m=%d: %.2f us\n", sh->model, sh->gemm, m, results.back().us);
    }
    for (int i = 0; i < sets; ++i) {
      QLLM_CUDA_CHECK(cudaFree(xs[size_t(i)]));
      QLLM_CUDA_CHECK(cudaFree(wss[size_t(i)]));
      QLLM_CUDA_CHECK(cudaFree(ys[size_t(i)]));
    }
  }

  if (json) {
    std::printf("{\n  \"benchmark\": \"gemm\",\n  \"device\": \"%s\",\n", json_escape(dev.name).c_str());
    std::printf("  \"compute_capability\": \"%d.%d\",\n  \"sm_count\": %d,\n  \"l2_bytes\": %d,\n", dev.cc_major,
                dev.cc_minor, dev.sm_count, l2_bytes);
    std::printf("  \"dtypes\": \"X, W bf16; fp32 accumulation (CUBLAS_COMPUTE_32F)\",\n");
    std::printf("  \"counting\": \"tflops = 2*M*N*K / s / 1e12; weight_gbps = N*K*2 bytes / s / 1e9; time per GEMM = "
                "median graph time / reps\",\n");
    std::printf("  \"warmup\": %d,\n  \"iters\": %d,\n  \"workspace_bytes\": %zu,\n  \"results\": [\n", warmup, iters,
                ctx.workspace_bytes());
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::printf("    {\"model\": \"%s\", \"gemm\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"out\": \"%s\", "
                  "\"accumulate\": %s, \"weight_sets\": %d, \"reps\": %d, \"us\": %.3f, \"tflops\": %.2f, "
                  "\"weight_gbps\": %.1f, \"algo\": \"%s\"}%s\n",
                  r.shape->model, r.shape->gemm, r.m, r.shape->n, r.shape->k, qllm::cuda::gemm_out_name(r.shape->out),
                  r.shape->accumulate ? "true" : "false", r.sets, r.reps, r.us, r.tflops(), r.weight_gbps(),
                  json_escape(r.algo).c_str(), i + 1 < results.size() ? "," : "");
    }
    std::printf("  ]\n}\n");
  } else {
    std::printf("GEMM plans on %s (%d SMs, L2 %d MiB): Y[M,N] = X[M,K]·W[N,K]^T, bf16 in, fp32 accumulate\n",
                dev.name.c_str(), dev.sm_count, l2_bytes >> 20);
    std::printf("median of %d graph launches after %d warm-up launches; weight GB/s shown for M <= 128\n\n", iters,
                warmup);
    std::printf("%-13s %-15s %5s %6s %6s %-8s %10s %9s %10s\n", "model", "gemm", "M", "N", "K", "out", "us",
                "TFLOP/s", "weight GB/s");
    for (const auto& r : results) {
      char gbps[32] = "";
      if (r.m <= 128) std::snprintf(gbps, sizeof(gbps), "%.1f", r.weight_gbps());
      std::printf("%-13s %-15s %5d %6d %6d %-8s %10.2f %9.1f %10s\n", r.shape->model, r.shape->gemm, r.m, r.shape->n,
                  r.shape->k,
                  (std::string(qllm::cuda::gemm_out_name(r.shape->out)) + (r.shape->accumulate ? "+acc" : "")).c_str(),
                  r.us, r.tflops(), gbps);
    }
  }

  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(s);
  return 0;
}
