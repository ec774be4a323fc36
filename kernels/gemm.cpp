// cuBLASLt GEMM plans: descriptors and the algorithm chosen once, run() only
// enqueues cublasLtMatmul (see gemm.h for the layout mapping).
#include "kernels/gemm.h"

#include "kernels/cublas_check.h"
#include "kernels/cuda_check.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace qllm::cuda {

void cublas_failed(cublasStatus_t status, const char* expr, const char* file, int line) {
  std::fprintf(stderr, "qllm: cuBLAS error %s (%s) in %s at %s:%d\n", cublasLtGetStatusName(status),
               cublasLtGetStatusString(status), expr, file, line);
  std::fflush(stderr);
  std::abort();
}

namespace {

[[noreturn]] void gemm_misuse(const GemmShape& s, const char* what) {
  std::fprintf(stderr, "qllm: GemmPlan::run (%s): %s\n", s.str().c_str(), what);
  std::fflush(stderr);
  std::abort();
}

cudaDataType_t cuda_type(GemmOut o) { return o == GemmOut::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

void check_shape(const GemmShape& s) {
  auto bad = [&](const char* why) {
    throw std::invalid_argument("GEMM shape " + s.str() + ": " + why);
  };
  if (s.m < 1 || s.n < 1 || s.k < 1) bad("m, n and k must be at least 1");
  if (s.accumulate && s.out != GemmOut::F32) bad("accumulate needs F32 out");
  if (s.ld_x() < s.k) bad("ldx is smaller than k");
  if (s.ld_w() < s.k) bad("ldw is smaller than k");
  if (s.ld_y() < s.n) bad("ldy is smaller than n");
  if (s.align < 16 || (s.align & (s.align - 1)) != 0) bad("align must be a power of two >= 16");
}

bool aligned(const void* p, uint32_t align) {
  return (reinterpret_cast<uintptr_t>(p) & (uintptr_t(align) - 1)) == 0;
}

}  // namespace

std::vector<int> gemm_buckets(int max_rows) {
  if (max_rows < 1 || max_rows > kMaxGemmBucket)
    throw std::invalid_argument("GEMM buckets: max_rows " + std::to_string(max_rows) +
                                " is outside [1, " + std::to_string(kMaxGemmBucket) + "]");
  std::vector<int> out;
  for (int b = 1; b <= bucket_for(max_rows); b *= 2) out.push_back(b);
  return out;
}

const char* gemm_out_name(GemmOut o) { return o == GemmOut::BF16 ? "bf16" : "f32"; }

std::string GemmShape::str() const {
  std::string s = "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                  " out=" + gemm_out_name(out);
  if (accumulate) s += " acc";
  if (ldx) s += " ldx=" + std::to_string(ldx);
  if (ldw) s += " ldw=" + std::to_string(ldw);
  if (ldy) s += " ldy=" + std::to_string(ldy);
  if (align != 256) s += " align=" + std::to_string(align);
  return s;
}

// ---- GemmPlan ----------------------------------------------------------------

GemmPlan::GemmPlan(const GemmContext& ctx, const GemmShape& shape) : ctx_(ctx), shape_(shape) {
  check_shape(shape_);
  const auto& s = shape_;
  beta_ = s.accumulate ? 1.0f : 0.0f;

  QLLM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_w = CUBLAS_OP_T, trans_x = CUBLAS_OP_N;
  QLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &trans_w,
                                                   sizeof(trans_w)));
  QLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &trans_x,
                                                   sizeof(trans_x)));
  // Column-major views of the row-major engine matrices (gemm.h).
  QLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&w_layout_, CUDA_R_16BF, uint64_t(s.k), uint64_t(s.n),
                                               s.ld_w()));
  QLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&x_layout_, CUDA_R_16BF, uint64_t(s.k), uint64_t(s.m),
                                               s.ld_x()));
  QLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&y_layout_, cuda_type(s.out), uint64_t(s.n),
                                               uint64_t(s.m), s.ld_y()));

  cublasLtMatmulPreference_t pref = nullptr;
  QLLM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t max_ws = ctx_.workspace_bytes();
  QLLM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof(max_ws)));
  const uint32_t align = s.align;
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    QLLM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)));

  constexpr int kAsk = 8;
  cublasLtMatmulHeuristicResult_t results[kAsk] = {};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(ctx_.handle(), desc_, w_layout_, x_layout_, y_layout_, y_layout_,
                                     pref, kAsk, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  int pick = -1;
  if (st == CUBLAS_STATUS_SUCCESS) {
    for (int i = 0; i < found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= max_ws) {
        pick = i;
        break;
      }
    }
  }
  if (pick < 0) {
    // Free what was built before reporting: the destructor does not run.
    cublasLtMatrixLayoutDestroy(y_layout_);
    cublasLtMatrixLayoutDestroy(x_layout_);
    cublasLtMatrixLayoutDestroy(w_layout_);
    cublasLtMatmulDescDestroy(desc_);
    throw std::runtime_error("cuBLASLt has no algorithm for GEMM " + s.str() + " (heuristic: " +
                             cublasLtGetStatusName(st) + ", " + std::to_string(found) +
                             " results, workspace limit " + std::to_string(max_ws) + " B)");
  }
  algo_ = results[pick].algo;
  workspace_needed_ = results[pick].workspaceSize;
  waves_ = results[pick].wavesCount;
}

GemmPlan::~GemmPlan() {
  // Errors are ignored here: a destructor may run while the device is gone.
  cublasLtMatrixLayoutDestroy(y_layout_);
  cublasLtMatrixLayoutDestroy(x_layout_);
  cublasLtMatrixLayoutDestroy(w_layout_);
  cublasLtMatmulDescDestroy(desc_);
}

void GemmPlan::run(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y,
                   cudaStream_t stream) const {
  run_impl(x, w, y, GemmOut::BF16, ctx_.workspace(), stream);
}

void GemmPlan::run(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, cudaStream_t stream) const {
  run_impl(x, w, y, GemmOut::F32, ctx_.workspace(), stream);
}

void GemmPlan::run(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, GemmWorkspace ws,
                   cudaStream_t stream) const {
  run_impl(x, w, y, GemmOut::BF16, ws, stream);
}

void GemmPlan::run(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y, GemmWorkspace ws,
                   cudaStream_t stream) const {
  run_impl(x, w, y, GemmOut::F32, ws, stream);
}

void GemmPlan::run_impl(const void* x, const void* w, void* y, GemmOut y_type, GemmWorkspace ws,
                        cudaStream_t stream) const {
  if (y_type != shape_.out) gemm_misuse(shape_, "the output pointer's type is not the plan's out dtype");
  if (!x || !w || !y) gemm_misuse(shape_, "null pointer");
  if (!aligned(x, shape_.align) || !aligned(w, shape_.align) || !aligned(y, shape_.align))
    gemm_misuse(shape_, "a pointer is not aligned to the plan's align");
  if (ws.bytes < workspace_needed_ || (workspace_needed_ > 0 && !ws.ptr))
    gemm_misuse(shape_, "the workspace is smaller than the algorithm needs");
  QLLM_CUBLAS_CHECK(cublasLtMatmul(ctx_.handle(), desc_, &alpha_, w, w_layout_, x, x_layout_, &beta_, y,
                                   y_layout_, y, y_layout_, &algo_, ws.ptr, ws.bytes, stream));
}

std::string GemmPlan::describe() const {
  int32_t id = -1, split_k = 0;
  uint32_t tile = 0, stages = 0;
  uint16_t cluster = 0;
  size_t written = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo_, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof(id), &written);
  cublasLtMatmulAlgoConfigGetAttribute(&algo_, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile), &written);
  cublasLtMatmulAlgoConfigGetAttribute(&algo_, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof(stages),
                                       &written);
  cublasLtMatmulAlgoConfigGetAttribute(&algo_, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split_k, sizeof(split_k),
                                       &written);
  cublasLtMatmulAlgoConfigGetAttribute(&algo_, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster,
                                       sizeof(cluster), &written);
  char buf[160];
  std::snprintf(buf, sizeof(buf), "algo %d tile %u stages %u split-k %d cluster %u ws %zu B waves %.2f",
                int(id), unsigned(tile), unsigned(stages), int(split_k), unsigned(cluster),
                workspace_needed_, double(waves_));
  return buf;
}

// ---- GemmContext ---------------------------------------------------------------

GemmContext::GemmContext(size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  QLLM_CUBLAS_CHECK(cublasLtCreate(&handle_));
  if (workspace_bytes_ > 0) QLLM_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

GemmContext::~GemmContext() {
  plans_.clear();  // plans refer to the handle
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

const GemmPlan& GemmContext::plan(const GemmShape& shape) {
  auto it = plans_.find(shape);
  if (it == plans_.end()) it = plans_.emplace(shape, std::make_unique<GemmPlan>(*this, shape)).first;
  return *it->second;
}

}  // namespace qllm::cuda
