// The one audited header of flag operations between host and device.
//
// Every flag word that two agents share (the host CPU and the GPU through
// pinned, mapped host memory; or two device kernels through device memory) is
// read and written through these functions and nowhere else. A flag word is a
// uint32_t or uint64_t with exactly one writer; it is never reset, only
// advanced (sequence numbers), so no read-modify-write is ever needed. Plain
// data (batch descriptors, output records) is not accessed through here: it is
// published by a store_release of the flag that guards it and read after a
// load_acquire of that flag.
//
// The pattern, always the same:
//   writer: plain stores of the payload, then store_release(flag, seq)
//   reader: seq = load_acquire(flag), then plain loads of the payload
// The release orders the payload stores before the flag store; the acquire
// orders the flag load before the payload loads. A reader that sees `seq`
// therefore sees the payload written for `seq`.
//
// Scopes. *_sys functions are for words that the host and the device share
// (::cuda::thread_scope_system: on the device, ld.acquire.sys / st.release.sys;
// on the host, ordinary C++ atomics). *_dev functions are for words that only
// device threads share, in device memory (::cuda::thread_scope_device: cheaper,
// and wrong for host memory the CPU reads or writes).
//
// Rules for callers (see device_scheduler/README.md for the protocol):
// - Only the field's single writer calls a store on it; a writer may read its
//   own field back with load_relaxed (it sees its own last store), but keeping
//   a private copy is cheaper across PCIe.
// - No read-modify-write atomics on pinned host memory: PCIe atomics are not
//   guaranteed, and one writer per field makes them unnecessary.
// - No `volatile` spins: a wait loop calls load_acquire (or load_relaxed and
//   then load_acquire once the value it waits for has appeared).
// - The pointer must be naturally aligned (4 bytes for uint32_t, 8 for
//   uint64_t); the control block's static_asserts guarantee it for its fields.
//
// Built on ::cuda::atomic_ref from libcu++ (CCCL, shipped with the CUDA toolkit),
// which compiles in device code under nvcc and in host code under g++/clang
// (where it lowers to the compiler's __atomic builtins, which
// ThreadSanitizer understands).
#pragma once

#include <cuda/atomic>

#include <cstdint>

#ifndef QLLM_HD
#if defined(__CUDACC__)
#define QLLM_HD __host__ __device__
#else
#define QLLM_HD
#endif
#endif

namespace qllm::sync {

namespace detail {

// atomic_ref needs a non-const reference even to load; the loads below never
// write through it. Restricted to the two flag widths.
template <class T, ::cuda::thread_scope Scope>
QLLM_HD inline ::cuda::atomic_ref<T, Scope> ref(const T* p) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "flag words are 32 or 64 bits");
  return ::cuda::atomic_ref<T, Scope>(*const_cast<T*>(p));
}

}  // namespace detail

// ---- System scope: host <-> device through pinned, mapped host memory ----

// Reader of a flag written by the other side. Called before reading the
// payload the flag guards: every load after it (in program order) sees at
// least what the writer stored before its matching store_release.
QLLM_HD inline uint32_t load_acquire_sys(const uint32_t* p) {
  return detail::ref<uint32_t, ::cuda::thread_scope_system>(p).load(::cuda::std::memory_order_acquire);
}
QLLM_HD inline uint64_t load_acquire_sys(const uint64_t* p) {
  return detail::ref<uint64_t, ::cuda::thread_scope_system>(p).load(::cuda::std::memory_order_acquire);
}

// Writer of a flag (its only writer). Called after the payload is written:
// every store before it (in program order) is visible to a reader whose
// load_acquire returns this value or a later one.
QLLM_HD inline void store_release_sys(uint32_t* p, uint32_t v) {
  detail::ref<uint32_t, ::cuda::thread_scope_system>(p).store(v, ::cuda::std::memory_order_release);
}
QLLM_HD inline void store_release_sys(uint64_t* p, uint64_t v) {
  detail::ref<uint64_t, ::cuda::thread_scope_system>(p).store(v, ::cuda::std::memory_order_release);
}

// A single-copy-atomic read with no ordering: a value that is never torn,
// and nothing more. For a writer reading back its own field, for counters
// that guard no payload (statistics), or for a cheap first look inside a wait
// loop that is followed by load_acquire before any payload is read.
QLLM_HD inline uint32_t load_relaxed_sys(const uint32_t* p) {
  return detail::ref<uint32_t, ::cuda::thread_scope_system>(p).load(::cuda::std::memory_order_relaxed);
}
QLLM_HD inline uint64_t load_relaxed_sys(const uint64_t* p) {
  return detail::ref<uint64_t, ::cuda::thread_scope_system>(p).load(::cuda::std::memory_order_relaxed);
}

// A single-copy-atomic write with no ordering, by the field's only writer:
// for initialising a flag before the other side starts (the kernel launch or
// thread start orders it) or for counters that guard no payload.
QLLM_HD inline void store_relaxed_sys(uint32_t* p, uint32_t v) {
  detail::ref<uint32_t, ::cuda::thread_scope_system>(p).store(v, ::cuda::std::memory_order_relaxed);
}
QLLM_HD inline void store_relaxed_sys(uint64_t* p, uint64_t v) {
  detail::ref<uint64_t, ::cuda::thread_scope_system>(p).store(v, ::cuda::std::memory_order_relaxed);
}

// ---- Device scope: device <-> device through device memory ----
// Same contracts as above, for words only GPU threads touch (for example a
// count the router kernel wrote and the scheduler kernel reads). Never for
// pinned host memory: the host would not be ordered against them.

QLLM_HD inline uint32_t load_acquire_dev(const uint32_t* p) {
  return detail::ref<uint32_t, ::cuda::thread_scope_device>(p).load(::cuda::std::memory_order_acquire);
}
QLLM_HD inline uint64_t load_acquire_dev(const uint64_t* p) {
  return detail::ref<uint64_t, ::cuda::thread_scope_device>(p).load(::cuda::std::memory_order_acquire);
}
QLLM_HD inline void store_release_dev(uint32_t* p, uint32_t v) {
  detail::ref<uint32_t, ::cuda::thread_scope_device>(p).store(v, ::cuda::std::memory_order_release);
}
QLLM_HD inline void store_release_dev(uint64_t* p, uint64_t v) {
  detail::ref<uint64_t, ::cuda::thread_scope_device>(p).store(v, ::cuda::std::memory_order_release);
}
QLLM_HD inline uint32_t load_relaxed_dev(const uint32_t* p) {
  return detail::ref<uint32_t, ::cuda::thread_scope_device>(p).load(::cuda::std::memory_order_relaxed);
}
QLLM_HD inline uint64_t load_relaxed_dev(const uint64_t* p) {
  return detail::ref<uint64_t, ::cuda::thread_scope_device>(p).load(::cuda::std::memory_order_relaxed);
}
QLLM_HD inline void store_relaxed_dev(uint32_t* p, uint32_t v) {
  detail::ref<uint32_t, ::cuda::thread_scope_device>(p).store(v, ::cuda::std::memory_order_relaxed);
}
QLLM_HD inline void store_relaxed_dev(uint64_t* p, uint64_t v) {
  detail::ref<uint64_t, ::cuda::thread_scope_device>(p).store(v, ::cuda::std::memory_order_relaxed);
}

}  // namespace qllm::sync
