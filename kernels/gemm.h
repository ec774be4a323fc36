// The engine's GEMMs through cuBLASLt, planned once at start and run inside
// captured CUDA graphs.
//
// Everything is row-major in the engine's view, weights stored [out, in] as in
// Hugging Face checkpoints and engine/cpu/ops.h `linear`:
//
//   Y[M, N] = X[M, K] · W[N, K]ᵀ            (+ Y when accumulating)
//
// X and W are bf16; products are accumulated in fp32 (CUBLAS_COMPUTE_32F); Y is
// bf16, or fp32, optionally accumulating into what Y holds (Y = X·Wᵀ + Y: how
// attention and expert outputs are added into the fp32 residual stream).
//
// In cuBLASLt's column-major terms this is Yᵀ[N, M] = W · Xᵀ: A = W with
// transa = T (a [K, N] column-major matrix, ld K), B = X with transb = N
// ([K, M], ld K), C = D = Y ([N, M], ld N), m = N, n = M, k = K: the "TN"
// layout, the one cuBLASLt covers best.
//
// A GemmPlan is built once per GemmShape (M bucket, N, K, out dtype,
// accumulate, strides, alignment): it creates the matmul descriptor and the
// layouts and asks cublasLtMatmulAlgoGetHeuristic once; the chosen algorithm is
// kept. run() then only calls cublasLtMatmul: no allocation, no heuristic query,
// no synchronisation, an explicit workspace, so it can be captured into a graph
// instantiated for device launch (cudaGraphInstantiateFlagDeviceLaunch).
// GemmContext owns the cublasLt handle, the workspace and the plan cache.
//
// M and padding. A graph freezes M, so the engine captures one graph per token
// count bucket (bucket_for below) and pads X to the bucket's rows. The GEMM
// computes and writes all M rows of Y: row r of Y depends only on row r of X
// (and on W, and on row r of Y when accumulating), so the real rows are right
// whatever the padding rows hold. With X's padding rows zero (what the engine
// writes) the padding rows of Y come out zero (no accumulate) or unchanged
// (accumulate). Y buffers must therefore have room for the whole bucket.
//
// Concurrency. A workspace serves one GEMM at a time: GEMMs that may run at
// the same time (graphs of two slots launched fire-and-forget side by side)
// need separate workspaces, either separate GemmContexts or the run() overload
// that takes a workspace. GemmContext::plan is not thread-safe (call it at
// start); run() is const and may be called from any thread.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#if defined(__CUDACC__)
#define QLLM_HD __host__ __device__
#else
#define QLLM_HD
#endif

namespace qllm::cuda {

// ---- token-count buckets --------------------------------------------------
//
// Buckets are the powers of two 1, 2, 4, ..., kMaxGemmBucket (16384): a count
// of rows runs in the smallest bucket that holds it, so at most half of a
// bucket's rows are padding (none at 1, 2, 4, ...). The engine captures the
// buckets up to bucket_for(scheduler.max_tokens_per_step) only (256 rows by
// default: 9 buckets). Usable on the device, where the scheduler picks the
// graph from a count the router wrote.

inline constexpr int kMaxGemmBucket = 16384;
inline constexpr int kNumGemmBuckets = 15;  // 2^0 .. 2^14

// The smallest power of two ≥ rows; 0 when rows is outside [1, kMaxGemmBucket].
QLLM_HD constexpr int bucket_for(int rows) {
  if (rows < 1 || rows > kMaxGemmBucket) return 0;
  int b = 1;
  while (b < rows) b *= 2;
  return b;
}

// log2(bucket_for(rows)): the bucket's index in a table of per-bucket graphs;
// -1 when rows is outside [1, kMaxGemmBucket].
QLLM_HD constexpr int bucket_index(int rows) {
  if (rows < 1 || rows > kMaxGemmBucket) return -1;
  int i = 0;
  while ((1 << i) < rows) ++i;
  return i;
}

// The buckets a slot of at most max_rows rows per step needs: 1, 2, 4, ...,
// bucket_for(max_rows). Throws std::invalid_argument when max_rows is outside
// [1, kMaxGemmBucket].
std::vector<int> gemm_buckets(int max_rows);

// ---- plans -----------------------------------------------------------------

enum class GemmOut : uint8_t { BF16, F32 };

const char* gemm_out_name(GemmOut o);  // "bf16", "f32"

// One GEMM shape, the plan cache's key. Strides are in elements; 0 means dense
// (ldx = ldw = k, ldy = n). Every pointer given to run() must be aligned to
// `align` bytes (a power of two ≥ 16; 256, cuBLASLt's default assumption and
// what cudaMalloc returns, lets the heuristic choose from every kernel; give
// 16 for slices of larger buffers).
struct GemmShape {
  int m = 1;  // rows of X and Y: the bucket
  int n = 0;  // rows of W, columns of Y (out features)
  int k = 0;  // columns of X and W (in features)
  GemmOut out = GemmOut::BF16;
  bool accumulate = false;  // Y = X·Wᵀ + Y; F32 out only
  int64_t ldx = 0, ldw = 0, ldy = 0;
  uint32_t align = 256;

  int64_t ld_x() const { return ldx ? ldx : k; }
  int64_t ld_w() const { return ldw ? ldw : k; }
  int64_t ld_y() const { return ldy ? ldy : n; }
  double flops() const { return 2.0 * m * double(n) * k; }
  // "m=8 n=4096 k=4096 out=f32 acc" and strides/alignment when not the defaults.
  std::string str() const;
  auto operator<=>(const GemmShape&) const = default;
};

// A device buffer cuBLASLt may use as scratch during one GEMM.
struct GemmWorkspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

class GemmContext;

class GemmPlan {
 public:
  // Builds the descriptors and picks the algorithm (one heuristic query, with
  // at most ctx.workspace_bytes() of workspace). Throws std::invalid_argument
  // for a malformed shape and std::runtime_error when cuBLASLt offers no
  // algorithm for it. `ctx` must outlive the plan.
  GemmPlan(const GemmContext& ctx, const GemmShape& shape);
  ~GemmPlan();
  GemmPlan(const GemmPlan&) = delete;
  GemmPlan& operator=(const GemmPlan&) = delete;

  // Y = X·Wᵀ (+ Y) on `stream` with the context's workspace. The overload
  // must match shape().out; pointers must be aligned to shape().align. A
  // mismatch is a bug: it is reported and the process aborts.
  void run(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y,
           cudaStream_t stream) const;
  void run(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, cudaStream_t stream) const;
  // The same with a caller's workspace of at least workspace_needed() bytes.
  void run(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, GemmWorkspace ws,
           cudaStream_t stream) const;
  void run(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, GemmWorkspace ws,
           cudaStream_t stream) const;

  const GemmShape& shape() const { return shape_; }
  size_t workspace_needed() const { return workspace_needed_; }
  // The chosen algorithm: "algo 66 tile 20 stages 33 split-k 1 cluster 2 ws 0 B waves 0.54".
  std::string describe() const;

 private:
  void run_impl(const void* x, const void* w, void* y, GemmOut y_type, GemmWorkspace ws,
                cudaStream_t stream) const;

  const GemmContext& ctx_;
  GemmShape shape_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t w_layout_ = nullptr, x_layout_ = nullptr, y_layout_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  size_t workspace_needed_ = 0;
  float waves_ = 0.0f;
  float alpha_ = 1.0f, beta_ = 0.0f;
};

class GemmContext {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;

  // On the current device: a cublasLt handle and a workspace of
  // `workspace_bytes` (cudaMalloc, so 256-byte aligned).
  explicit GemmContext(size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;

  // The plan for `shape`: built (and its heuristic asked) on the first call,
  // the same object on every later call. References stay valid for the
  // context's life.
  const GemmPlan& plan(const GemmShape& shape);
  size_t num_plans() const { return plans_.size(); }

  cublasLtHandle_t handle() const { return handle_; }
  GemmWorkspace workspace() const { return {workspace_, workspace_bytes_}; }
  size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<GemmShape, std::unique_ptr<GemmPlan>> plans_;
};

}  // namespace qllm::cuda
