// The GPU memory layouts and the memory planner (engine/gpu/layout.h,
// memory_plan.h), on the CPU: byte counts at the real shapes of Mixtral-8x7B,
// OLMoE-1B-7B and Qwen3-30B-A3B and at the tiny presets, against numbers
// computed by hand from the shapes (written out below), the layout's fusions
// (QKV rows, gate|up rows) and alignment, how many layers fit, the message
// when they do not, and the host-side bf16 conversion of the weight upload.
#include "engine/common/dtype.h"
#include "engine/common/progress.h"
#include "engine/gpu/device_weights.h"
#include "engine/gpu/layout.h"
#include "engine/gpu/memory_plan.h"
#include "engine/model/make_model.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <tuple>

using namespace qllm;
using namespace qllm::gpu;

namespace {

using u64 = uint64_t;

ModelDesc desc_of(const std::string& arch, const std::string& preset) {
  Progress::set_enabled(false);
  MakeModelOptions o;
  o.arch = arch;
  o.preset = preset;
  o.dry_run = true;
  o.progress = false;
  return plan_model(o).desc;
}

struct WeightCase {
  const char* arch;
  const char* preset;
  u64 global, moe_layer, dense_layer, total;
};

// Hand-computed, bf16 (2 bytes), every matrix rounded up to 256 bytes:
//
// mixtral-8x7b: H 4096, 32 layers, qd 4096, kvd 1024, V 32000, 8 experts of 14336
//   global  = 32000*4096*2 (embed) + 4096*2 (final norm) + 32000*4096*2 (LM head) = 524,296,192
//   layer   = 2 * 4096*2 (norms) + 6144*4096*2 (qkv) + 4096*4096*2 (o) + 8*4096*2 (router)
//             + 8 * (2*14336*4096*2 + 4096*14336*2) (experts)               = 2,902,540,288
//   total   = 524,296,192 + 32 * 2,902,540,288                             = 93,405,585,408
// olmoe-1b-7b: H 2048, 16 layers, qd = kvd = 2048, V 50304, 64 experts of 1024, full-width QK norm
//   global  = 2 * 50304*2048*2 + 2048*2                                      = 412,094,464
//   layer   = 2*4096 + 6144*2048*2 + 2048*2048*2 + 2*2048*2 (q/k norm) + 64*2048*2
//             + 64 * (2*1024*2048*2 + 2048*1024*2)                          = 839,139,328
//   total   = 412,094,464 + 16 * 839,139,328                               = 13,838,323,712
// qwen3-30b-a3b: H 2048, 48 layers, qd 4096, kvd 512, V 151936, 128 experts of 768, per-head QK norm
//   global  = 2 * 151936*2048*2 + 2048*2                                     = 1,244,663,808
//   layer   = 2*4096 + 5120*2048*2 + 2048*4096*2 + 2*256 (q/k norm [128]) + 128*2048*2
//             + 128 * (2*768*2048*2 + 2048*768*2)                           = 1,246,241,280
//   total   = 1,244,663,808 + 48 * 1,246,241,280                           = 61,064,245,248
// tiny mixtral: H 64, 2 layers, qd 64, kvd 32, V 512, 4 experts of 128; norms [64] = 128 B -> 256
//   global  = 65536 + 256 + 65536 = 131,328
//   layer   = 256 + 256 + 128*64*2 + 64*64*2 + 4*64*2 + 4 * (2*128*64*2 + 64*128*2) = 222,208
// tiny qwen3_moe: H 64, 3 layers (layer 1 dense, width 192), qd 128, kvd 64, 8 experts of 128
//   MoE layer   = 512 + 256*64*2 + 64*128*2 + 256 + 256 + 8*64*2 + 8 * (32768 + 16384) = 444,416
//   dense layer = 512 + 32768 + 16384 + 512 + 2*192*64*2 + 64*192*2                 = 123,904
// tiny olmoe: H 64, 2 layers, qd 64, kvd 32, 8 experts of 128, norms [64] and [32] -> 256 each
//   layer   = 512 + 16384 + 8192 + 512 + 1024 + 8 * 49152 = 419,840
const WeightCase kWeightCases[] = {
    {"mixtral", "mixtral-8x7b", 524'296'192, 2'902'540'288, 0, 93'405'585'408},
    {"olmoe", "olmoe-1b-7b", 412'094'464, 839'139'328, 0, 13'838'323'712},
    {"qwen3_moe", "qwen3-30b-a3b", 1'244'663'808, 1'246'241'280, 0, 61'064'245'248},
    {"mixtral", "tiny", 131'328, 222'208, 0, 131'328 + 2 * 222'208},
    {"qwen3_moe", "tiny", 131'328, 444'416, 123'904, 131'328 + 2 * 444'416 + 123'904},
    {"olmoe", "tiny", 131'328, 419'840, 0, 131'328 + 2 * 419'840},
};

TEST(GpuWeightLayout, BytesAgainstHandComputedCounts) {
  for (const auto& c : kWeightCases) {
    SCOPED_TRACE(std::string(c.arch) + " " + c.preset);
    const ModelDesc d = desc_of(c.arch, c.preset);
    const WeightLayout w = plan_weight_layout(d);
    EXPECT_EQ(w.global_bytes, c.global);
    for (int l = 0; l < d.layers; ++l)
      EXPECT_EQ(w.layer_bytes(l), d.is_moe_layer(l) ? c.moe_layer : c.dense_layer) << "layer " << l;
    EXPECT_EQ(w.total_bytes, c.total);
    // At the real shapes every tensor is a multiple of 256 bytes: no padding,
    // the same bytes as the parameter count says.
    if (std::string(c.preset) != "tiny") {
      EXPECT_EQ(w.total_bytes, u64(d.param_bytes(DType::BF16).total()));
    }
  }
}

TEST(GpuWeightLayout, F32DoublesTheRealShapes) {
  const ModelDesc d = desc_of("mixtral", "mixtral-8x7b");
  EXPECT_EQ(plan_weight_layout(d, DType::F32).total_bytes, 2 * u64(93'405'585'408));
}

TEST(GpuWeightLayout, FusedMatricesAlignedAndEveryTensorOnce) {
  for (const char* arch : {"mixtral", "qwen3_moe", "olmoe"}) {
    SCOPED_TRACE(arch);
    ModelDesc d = desc_of(arch, "tiny");
    for (bool tied : {false, true}) {
      d.tie_word_embeddings = tied;
      const WeightLayout w = plan_weight_layout(d);
      const u64 H = u64(d.hidden), qd = u64(d.q_dim()), kvd = u64(d.kv_dim());
      // Every checkpoint tensor (per-expert layout) is a piece, once, in the
      // allocation's order, without overlaps.
      std::set<std::tuple<int, int, int>> want, got;
      for (const auto& s : d.tensor_specs(ExpertLayout::PerExpert)) want.insert({int(s.role), s.layer, s.expert});
      u64 end = 0;
      for (const auto& p : w.pieces) {
        EXPECT_TRUE(got.insert({int(p.role), p.layer, p.expert}).second) << role_name(p.role);
        EXPECT_GE(p.offset, end) << role_name(p.role) << " overlaps";
        end = p.offset + u64(p.numel()) * 2;
      }
      EXPECT_LE(end, w.total_bytes);
      EXPECT_EQ(got, want);
      EXPECT_EQ(w.tied, tied);
      if (tied) {
        EXPECT_EQ(w.lm_head, w.embed);
      } else {
        EXPECT_NE(w.lm_head, w.embed);
      }

      std::map<std::tuple<int, int, int>, u64> at;
      for (const auto& p : w.pieces) at[{int(p.role), p.layer, p.expert}] = p.offset;
      auto off = [&](TensorRole r, int l, int e = -1) { return at.at({int(r), l, e}); };
      for (int l = 0; l < d.layers; ++l) {
        const auto& L = w.layers[size_t(l)];
        for (u64 o : {L.input_norm, L.post_norm, L.qkv, L.o}) EXPECT_EQ(o % kAlign, 0u);
        EXPECT_EQ(off(TensorRole::QProj, l), L.qkv);
        EXPECT_EQ(off(TensorRole::KProj, l), L.qkv + qd * H * 2);
        EXPECT_EQ(off(TensorRole::VProj, l), L.qkv + (qd + kvd) * H * 2);
        EXPECT_EQ(L.qk_norm, d.qk_norm != QkNorm::None);
        const bool moe = d.is_moe_layer(l);
        EXPECT_EQ(L.moe, moe);
        EXPECT_EQ(L.mlps, moe ? d.num_experts : 1);
        EXPECT_EQ(L.ffn, moe ? d.expert_ffn : d.dense_ffn);
        for (int m = 0; m < L.mlps; ++m) {
          const u64 gu = L.gate_up[size_t(m)], dn = L.down[size_t(m)];
          EXPECT_EQ(gu % kAlign, 0u);
          EXPECT_EQ(dn % kAlign, 0u);
          const int e = moe ? m : -1;
          EXPECT_EQ(off(moe ? TensorRole::ExpertGate : TensorRole::DenseGate, l, e), gu);
          EXPECT_EQ(off(moe ? TensorRole::ExpertUp : TensorRole::DenseUp, l, e), gu + u64(L.ffn) * H * 2);
          EXPECT_EQ(off(moe ? TensorRole::ExpertDown : TensorRole::DenseDown, l, e), dn);
        }
      }
    }
  }
}

TEST(GpuWeightLayout, KeepLayersIsAPrefix) {
  const ModelDesc d = desc_of("mixtral", "mixtral-8x7b");
  const ModelDesc k = keep_layers(d, 26);
  EXPECT_EQ(k.layers, 26);
  EXPECT_EQ(k.is_moe.size(), 26u);
  EXPECT_EQ(plan_weight_layout(k).total_bytes, 524'296'192 + 26 * u64(2'902'540'288));
  EXPECT_EQ(keep_layers(d, 0).layers, 32);
  EXPECT_EQ(keep_layers(d, 40).layers, 32);
  const ModelDesc q = keep_layers(desc_of("qwen3_moe", "tiny"), 2);
  EXPECT_EQ(q.is_moe, (std::vector<bool>{true, false}));
}

// Mixtral-8x7B with T = 256 tokens and S = 32 sequences per step, 4096
// positions in blocks of 16 (256 blocks per sequence), 8 sampling blocks,
// 132 multiprocessors, 32 MiB GEMM workspace: R = 256, Rl = 32, Fm = 14336.
TEST(GpuSlotLayout, MixtralShapeHandComputed) {
  const ModelDesc d = desc_of("mixtral", "mixtral-8x7b");
  const SlotShape sh{.max_tokens = 256, .max_seqs = 32, .max_seq_len = 4096, .block_size = 16,
                     .sampling_blocks = 8, .sm_count = 132};
  const SlotLayout s = plan_slot_layout(d, sh, u64(32) << 20);
  EXPECT_EQ(s.rows_alloc, 256);
  EXPECT_EQ(s.logit_alloc, 32);
  EXPECT_EQ(s.qkv_width, 6144);
  EXPECT_EQ(s.ffn_max, 14336);
  // metadata: 3 scalars (256 each), tokens/pos/seq 1024 each, kv_slot 2048,
  // tables 32*256*4, logit_rows 128 -> 256, sampling 32*40
  EXPECT_EQ(s.step.tables.bytes, 32u * 256 * 4);
  EXPECT_EQ(s.step.bytes, 3u * 256 + 3 * 1024 + 2048 + 32768 + 256 + 1280);
  EXPECT_EQ(s.x.bytes, 256u * 4096 * 4);
  EXPECT_EQ(s.normed.bytes, 256u * 4096 * 2);
  EXPECT_EQ(s.qkv.bytes, 256u * 6144 * 2);
  EXPECT_EQ(s.attn_out.bytes, 256u * 4096 * 2);
  EXPECT_EQ(s.router_logits.bytes, 256u * 8 * 4);
  EXPECT_EQ(s.topk_ids.bytes, 256u * 2 * 4);
  EXPECT_EQ(s.counts.bytes, 8u * 4);
  EXPECT_EQ(s.offsets.bytes, 9u * 4);
  EXPECT_EQ(s.list_rows.bytes, 256u * 2 * 4);
  EXPECT_EQ(s.expert_in.bytes, 256u * 4096 * 2);
  EXPECT_EQ(s.gate_up.bytes, 256u * 2 * 14336 * 2);
  EXPECT_EQ(s.act.bytes, 256u * 14336 * 2);
  EXPECT_EQ(s.down.bytes, 256u * 4096 * 4);
  EXPECT_EQ(s.head_in.bytes, 32u * 4096 * 2);
  EXPECT_EQ(s.logits.bytes, 32u * 32000 * 4);
  EXPECT_EQ(s.tokens_out.bytes, 32u * 4);
  EXPECT_EQ(s.sampling_ws.bytes, 8u * 32000 * 16);
  EXPECT_EQ(s.gemm_ws.bytes, u64(32) << 20);
  // attention_decode splits per row bucket: blocks = rows * 8 kv heads; want
  // ceil(2*132 / blocks), at most min(64, 4096/256 = 16). The workspace is the
  // largest rows * 32 heads * splits * (128 + 2) * 4: 32 rows with 2 splits.
  EXPECT_EQ(s.decode_splits, (std::vector<int>{16, 16, 9, 5, 3, 2, 1, 1, 1}));
  EXPECT_EQ(s.attn_ws.bytes, 32u * 32 * 2 * 130 * 4);
  // Sum of the regions above rounded up to 256 each (every one but counts,
  // offsets, tokens_out and error is a multiple of 256 already).
  EXPECT_EQ(s.bytes, 82'977'024u);
  u64 end = 0;
  for (const auto& [name, r] : s.regions()) {
    EXPECT_EQ(r.offset % kAlign, 0u) << name;
    EXPECT_GE(r.offset, end) << name << " overlaps";
    end = r.end();
  }
  EXPECT_LE(end, s.bytes);
}

TEST(GpuSlotLayout, RowsRoundUpToTheBucketAndDenseWidthCounts) {
  // Qwen3 tiny: dense width 192 > expert width 128; 48 tokens -> R = 64.
  const ModelDesc d = desc_of("qwen3_moe", "tiny");
  const SlotShape sh{.max_tokens = 48, .max_seqs = 5, .max_seq_len = 100, .block_size = 16};
  const SlotLayout s = plan_slot_layout(d, sh, 1 << 20);
  EXPECT_EQ(s.rows_alloc, 64);
  EXPECT_EQ(s.logit_alloc, 8);
  EXPECT_EQ(s.ffn_max, 192);
  EXPECT_EQ(s.gate_up.bytes, 64u * 2 * 192 * 2);
  EXPECT_EQ(s.step.rows_cap, 48);  // per-row metadata: T entries, not R
  EXPECT_EQ(s.step.max_blocks_per_seq, 7);
  EXPECT_EQ(s.step.tokens.bytes, 48u * 4);
  EXPECT_EQ(s.decode_splits.size(), 7u);  // buckets 1 .. 64
}

TEST(GpuKvLayout, BytesPerLayer) {
  const ModelDesc d = desc_of("mixtral", "mixtral-8x7b");
  const KvLayout k = plan_kv_layout(d, 512, 16);
  EXPECT_EQ(k.slots(), 512 * 16);
  EXPECT_EQ(k.layer_bytes(), 512u * 16 * 1024 * 2 * 2);
  EXPECT_EQ(k.total_bytes(), 32 * k.layer_bytes());
  EXPECT_EQ(k.v_offset(3) - k.k_offset(3), 512u * 16 * 1024 * 2);
  EXPECT_EQ(k.layer_bytes() / 16 / 512, u64(d.kv_bytes_per_token(DType::BF16)) / 32);
}

TEST(GpuMemoryPlan, MixtralOnAn80GbGpu) {
  const ModelDesc d = desc_of("mixtral", "mixtral-8x7b");
  MemoryParams p;
  p.slots = 2;
  p.slot = SlotShape{.max_tokens = 256, .max_seqs = 32, .max_seq_len = 4096, .block_size = 16,
                     .sampling_blocks = 8, .sm_count = 132};
  p.kv_blocks = 512;
  const DeviceMemoryPlan m = plan_device_memory(d, p);
  EXPECT_EQ(m.weight_bytes, 93'405'585'408u);
  EXPECT_EQ(m.kv_layer_bytes, 33'554'432u);
  EXPECT_EQ(m.kv_bytes, 32 * 33'554'432u);
  EXPECT_EQ(m.slot_bytes, 82'977'024u);
  EXPECT_EQ(m.gemm_context_bytes, u64(32) << 20);
  EXPECT_EQ(m.total_bytes, 93'405'585'408u + 32 * 33'554'432u + 2 * 82'977'024u + (u64(32) << 20));
  // fixed = 524,296,192 + 2 * 82,977,024 + 33,554,432 = 723,804,672; a layer
  // with its KV is 2,936,094,720: (78e9 - fixed) / that = 26.3.
  EXPECT_EQ(m.fixed_bytes(), 723'804'672u);
  EXPECT_EQ(m.layers_that_fit(78'000'000'000), 26);
  EXPECT_EQ(m.layers_that_fit(723'804'672 + 26 * u64(2'936'094'720)), 26);
  EXPECT_EQ(m.layers_that_fit(723'804'672 + 26 * u64(2'936'094'720) - 1), 25);
  EXPECT_EQ(m.layers_that_fit(723'804'671), 0);
  EXPECT_EQ(m.layers_that_fit(m.total_bytes), 32);
  EXPECT_FALSE(m.fits(78'000'000'000));
  EXPECT_TRUE(m.fits(m.total_bytes));
  EXPECT_EQ(m.fit_error("Mixtral-8x7B", d, 78'000'000'000),
            "Mixtral-8x7B bf16 weights need 93.4 GB (with the KV cache, slot buffers and workspaces: 94.7 GB); "
            "78.0 GB free: 26 of 32 layers fit; use model.max_layers or a GPU with more memory");
  EXPECT_EQ(m.fit_error("", d, 10'000'000'000).rfind("MixtralForCausalLM bf16 weights need 93.4 GB", 0), 0u);
  EXPECT_EQ(m.fit_error("Mixtral-8x7B", d, m.total_bytes), "");
}

TEST(GpuMemoryPlan, SmallerModelsFit) {
  MemoryParams p;
  p.slot = SlotShape{.max_tokens = 256, .max_seqs = 32, .max_seq_len = 4096, .block_size = 16};
  p.kv_blocks = 4096;
  const DeviceMemoryPlan olmoe = plan_device_memory(desc_of("olmoe", "olmoe-1b-7b"), p);
  EXPECT_EQ(olmoe.weight_bytes, 13'838'323'712u);
  EXPECT_EQ(olmoe.kv_layer_bytes, 4096u * 16 * 2048 * 2 * 2);
  EXPECT_TRUE(olmoe.fits(78'000'000'000));
  EXPECT_EQ(olmoe.layers_that_fit(78'000'000'000), 16);
  const DeviceMemoryPlan qwen = plan_device_memory(desc_of("qwen3_moe", "qwen3-30b-a3b"), p);
  EXPECT_EQ(qwen.weight_bytes, 61'064'245'248u);
  EXPECT_TRUE(qwen.fits(78'000'000'000));
  // Qwen3's 151936-entry vocabulary: logits 32 * 151936 * 4, sampling 8 * 151936 * 16.
  EXPECT_EQ(qwen.slot.logits.bytes, 32u * 151936 * 4);
  EXPECT_EQ(qwen.slot.sampling_ws.bytes, 8u * 151936 * 16);
  // No KV blocks asked for: no KV bytes.
  p.kv_blocks = 0;
  EXPECT_EQ(plan_device_memory(desc_of("olmoe", "olmoe-1b-7b"), p).kv_bytes, 0u);
}

TEST(GpuMemoryPlan, FormatsDecimalGigabytes) {
  EXPECT_EQ(format_gb(93'405'585'408), "93.4 GB");
  EXPECT_EQ(format_gb(78'000'000'000), "78.0 GB");
  EXPECT_EQ(format_gb(0), "0.0 GB");
}

// ---- host conversion of the upload -----------------------------------------

MatrixView view_of(const std::vector<uint8_t>& bytes, DType t, int64_t rows, int64_t cols, int64_t stride) {
  MatrixView m;
  m.tensor = "t";
  m.dtype = t;
  m.rows = rows;
  m.cols = cols;
  m.row_stride = stride;
  m.data = bytes.data();
  return m;
}

TEST(GpuUploadConversion, F32AndF16RoundToNearestEvenBf16) {
  // 3 rows of 5 in a row stride of 7 (a slice of a fused tensor).
  const int64_t rows = 3, cols = 5, stride = 7;
  std::vector<float> f(size_t(rows * stride));
  for (size_t i = 0; i < f.size(); ++i) f[i] = (i % 2 ? -1.0f : 1.0f) * (1.0f + float(i) / 1024.0f);
  f[1] = 1.0f + 1.0f / 256.0f;   // a tie: 1 + 2^-8 rounds to even (1.0)
  f[2] = 1.0f + 3.0f / 256.0f;   // a tie: 1 + 3*2^-8 rounds to even (1 + 2^-6)
  std::vector<uint8_t> fb(f.size() * 4);
  std::memcpy(fb.data(), f.data(), fb.size());
  const MatrixView m = view_of(fb, DType::F32, rows, cols, stride);
  std::vector<uint16_t> got(size_t(rows * cols));
  to_bf16(m, 0, rows * cols, got.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_EQ(got[size_t(r * cols + c)], f32_to_bf16(f[size_t(r * stride + c)])) << r << "," << c;
  EXPECT_EQ(got[1], f32_to_bf16(1.0f));
  EXPECT_EQ(bf16_to_f32(got[2]), 1.0f + 1.0f / 64.0f);

  // A range that starts and ends inside rows.
  std::vector<uint16_t> part(7);
  to_bf16(m, 3, 7, part.data());
  for (int i = 0; i < 7; ++i) EXPECT_EQ(part[size_t(i)], got[size_t(3 + i)]) << i;

  // F16 source: through fp32, exact, then rounded to bf16.
  std::vector<uint8_t> hb(size_t(rows * cols) * 2);
  std::vector<uint16_t> h(size_t(rows * cols));
  for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(f[i] * 3.0f);
  std::memcpy(hb.data(), h.data(), hb.size());
  std::vector<uint16_t> hg(h.size());
  to_bf16(view_of(hb, DType::F16, rows, cols, cols), 0, rows * cols, hg.data());
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(hg[i], f32_to_bf16(f16_to_f32(h[i]))) << i;

  // BF16 source: the bits, copied.
  std::vector<uint16_t> b(size_t(rows * stride));
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint16_t(0x3f80 + i);
  std::vector<uint8_t> bb(b.size() * 2);
  std::memcpy(bb.data(), b.data(), bb.size());
  std::vector<uint16_t> bg(size_t(rows * cols));
  to_bf16(view_of(bb, DType::BF16, rows, cols, stride), 0, rows * cols, bg.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(bg[size_t(r * cols + c)], b[size_t(r * stride + c)]);
}

}  // namespace
