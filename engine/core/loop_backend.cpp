#include "engine/core/loop_backend.h"

#include "device_scheduler/loop.h"
#include "engine/common/error.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <thread>

namespace qllm {
namespace {

using Steady = std::chrono::steady_clock;

double seconds_since(Steady::time_point t0) { return std::chrono::duration<double>(Steady::now() - t0).count(); }

PassStatus status_of(uint8_t flags) {
  if (flags & sched::kRecordBadData) return PassStatus::Failed;
  if (flags & sched::kRecordShutdown) return PassStatus::Abandoned;
  if (flags & sched::kRecordCancelled) return PassStatus::Cancelled;
  return PassStatus::Done;
}

}  // namespace

LoopBackend::LoopBackend(const ModelDesc& d, sched::ControlBlock* cb, Device& dev)
    : desc_(d), cb_(cb), dev_(dev), host_(sched::make_host_end(cb)), drain_(sched::make_drain_end(cb)) {
  published_.resize(host_.n_slots);
  tokens_.resize(host_.n_slots);
  taken_s_.assign(host_.n_slots, -1);
}

size_t LoopBackend::in_flight() const {
  size_t n = 0;
  for (const auto& q : published_) n += q.size();
  return n;
}

void LoopBackend::throw_if_failed() {
  if (failure_.empty()) {
    const sched::DeviceError e = sched::host_check_error(*cb_);
    if (!e) return;
    failure_ = "device scheduler loop stopped: " + sched::format_device_error(e);
  }
  throw Error(failure_);
}

void LoopBackend::attach(const sched::PolicyParams& policy, const Clock&) {
  throw_if_failed();
  QLLM_CHECK_MSG(in_flight() == 0, "device dispatcher: a new engine while {} passes are in flight", in_flight());
  sched::host_set_policy(host_, policy);
  have_offset_ = false;  // the next drain maps onto the new engine's clock
}

void LoopBackend::publish(int slot, uint64_t pass_id, PriorityClass cls, std::span<const cpu::SeqChunk> chunks,
                          std::span<const SampleSpec> sampling) {
  throw_if_failed();
  QLLM_CHECK_MSG(slot >= 0 && uint32_t(slot) < host_.n_slots, "device dispatcher: slot {} of {}", slot,
                 host_.n_slots);
  // Two passes per slot: metadata buffer m of pass s + 2 is free once pass s
  // reported (its begin unit, if it ran, has read the buffer).
  if (published_[size_t(slot)].size() >= 2)
    fail("device dispatcher: slot {} already holds passes {} and {}", slot, published_[size_t(slot)].front(),
         published_[size_t(slot)].back());
  QLLM_CHECK_MSG(pass_id != 0, "device dispatcher: pass id 0");
  int64_t rows = 0;
  size_t wanted = 0;
  bool decode_only = !chunks.empty();
  for (const auto& c : chunks) {
    rows += int64_t(c.tokens.size());
    wanted += c.logits;
    decode_only = decode_only && c.tokens.size() == 1;
  }
  if (chunks.empty() || rows < 1) fail("device dispatcher: a pass with no tokens");
  if (chunks.size() > std::numeric_limits<uint16_t>::max())
    fail("device dispatcher: {} sequences in one pass, at most {}", chunks.size(),
         std::numeric_limits<uint16_t>::max());
  QLLM_CHECK_MSG(sampling.size() == wanted, "slot {}: {} sampling entries for {} chunks with logits", slot,
                 sampling.size(), wanted);
  sched::BatchDesc d{};
  d.pass_id = pass_id;
  d.n_rows = uint32_t(rows);
  d.n_seqs = uint16_t(chunks.size());
  d.n_sample = uint16_t(wanted);
  const int meta = int((host_.published[size_t(slot)] + 1) % 2);  // the buffer of its publish sequence
  d.meta_index = uint16_t(meta);
  int b = 0;
  while ((int64_t(1) << b) < rows) ++b;
  d.bucket = uint16_t(b);
  d.cls = cls;
  d.flags = decode_only ? sched::kBatchDecodeOnly : 0;

  const bool ls = cls == PriorityClass::LS;
  if (ls) sched::host_set_ls_pending(host_, true);
  try {
    dev_.stage(slot, meta, chunks, sampling);
  } catch (...) {
    if (ls) sched::host_set_ls_pending(host_, false);
    throw;
  }
  const bool ok = sched::host_publish_batch(host_, slot, d);
  if (ls) sched::host_set_ls_pending(host_, false);
  // The slot had at most one pass in flight, so at most one batch is
  // unconsumed: there is always room for one more.
  QLLM_CHECK_MSG(ok, "device dispatcher: slot {}'s batch buffers are full", slot);
  published_[size_t(slot)].push_back(pass_id);
}

void LoopBackend::cancel(uint64_t pass_id) {
  cancels_.push_back(pass_id);
  while (!cancels_.empty() && sched::host_request_cancel(host_, cancels_.front())) cancels_.pop_front();
}

size_t LoopBackend::drain(std::vector<PassResult>& done, std::vector<UnitRecord>* units, const Clock& clock) {
  size_t passes = 0;
  std::vector<sched::OutputRecord>& recs = drained_;  // kept between calls: collect() polls in a loop
  recs.clear();
  sched::host_drain_output(drain_, [&](const sched::OutputRecord& r) { recs.push_back(r); });
  if (recs.empty()) return 0;
  if (!have_offset_) {  // each record was written before now: an upper bound of the offset
    const double now = clock.now();
    for (const auto& r : recs) {
      const uint64_t written = r.kind == sched::RecordKind::UnitTiming ? r.t_end_ns : r.t_start_ns;
      const double off = now - double(written) * 1e-9;
      if (!have_offset_ || off < offset_s_) offset_s_ = off;
      have_offset_ = true;
    }
  }
  for (const auto& r : recs) {
    const int slot = r.slot;
    QLLM_CHECK_MSG(uint32_t(slot) < host_.n_slots, "device dispatcher: a record for slot {}", slot);
    auto& q = published_[size_t(slot)];
    switch (r.kind) {
      case sched::RecordKind::UnitTiming:
        if (units) units->push_back({slot, r.unit, to_clock(r.t_start_ns), to_clock(r.t_end_ns), r.pass_id});
        break;
      case sched::RecordKind::PassStart:
        taken_s_[size_t(slot)] = to_clock(r.t_start_ns);
        break;
      case sched::RecordKind::Token: {
        auto& t = tokens_[size_t(slot)];
        QLLM_CHECK_MSG(r.row == t.size(), "device dispatcher: slot {} token row {} after {} rows", slot, r.row,
                       t.size());
        t.push_back(r.token);
        break;
      }
      case sched::RecordKind::PassDone: {
        QLLM_CHECK_MSG(!q.empty() && q.front() == r.pass_id,
                       "device dispatcher: slot {} reported pass {}, which it was not running", slot, r.pass_id);
        q.pop_front();
        PassResult res;
        res.slot = slot;
        res.pass_id = r.pass_id;
        res.status = status_of(r.flags);
        if (res.status == PassStatus::Done) res.tokens = std::move(tokens_[size_t(slot)]);
        if (res.status == PassStatus::Failed) res.error = dev_.bad_data_message();
        res.taken_s = taken_s_[size_t(slot)];
        taken_s_[size_t(slot)] = -1;
        tokens_[size_t(slot)].clear();
        done.push_back(std::move(res));
        ++passes;
        break;
      }
      case sched::RecordKind::Invalid:
        QLLM_CHECK_MSG(false, "device dispatcher: an invalid output record (slot {})", slot);
    }
  }
  return passes;
}

void LoopBackend::collect(std::vector<PassResult>& done, std::vector<UnitRecord>& units, double timeout_s,
                          const Clock& clock) {
  throw_if_failed();
  while (!cancels_.empty() && sched::host_request_cancel(host_, cancels_.front())) cancels_.pop_front();
  const auto t0 = Steady::now();
  for (;;) {
    const size_t before = units.size();
    const size_t passes = drain(done, &units, clock);
    if (passes > 0 || units.size() > before) return;
    throw_if_failed();
    if (seconds_since(t0) >= timeout_s) {
      if (!dev_.running()) {  // exited without an error: only a shutdown does that
        drain(done, &units, clock);
        throw_if_failed();
        failure_ = "device scheduler loop is not running (it was shut down)";
        throw Error(failure_);
      }
      return;
    }
    std::this_thread::yield();
  }
}

bool LoopBackend::shutdown(double timeout_s, std::vector<PassResult>& done, const Clock& clock) {
  sched::host_request_shutdown(host_);
  const auto t0 = Steady::now();
  bool stopped = false;
  for (;;) {
    drain(done, nullptr, clock);
    if (sched::host_shutdown_acked(host_) || sched::host_check_error(*cb_) || !dev_.running()) {
      stopped = true;
      break;
    }
    if (seconds_since(t0) >= timeout_s) break;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  drain(done, nullptr, clock);  // records pushed before the acknowledgement
  if (!stopped) return false;
  for (uint32_t s = 0; s < host_.n_slots; ++s) {  // batches never taken, passes never reported
    for (uint64_t id : published_[s]) done.push_back({int(s), id, PassStatus::Abandoned, {}, {}});
    published_[s].clear();
    tokens_[s].clear();
  }
  if (failure_.empty()) {
    const sched::DeviceError e = sched::host_check_error(*cb_);
    failure_ = e ? "device scheduler loop stopped: " + sched::format_device_error(e)
                 : "device scheduler loop is not running (it was shut down)";
  }
  return true;
}

}  // namespace qllm
