// What a client asks for and what the engine reports back.
#pragma once

#include "device_scheduler/policy.h"
#include "engine/cpu/sampling.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qllm {

using sched::PriorityClass;

struct Request {
  uint64_t id = 0;
  PriorityClass cls = PriorityClass::BE;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<int32_t> stop_ids;  // sampling one of these ends the request (not emitted)
  double arrival_s = 0;           // engine clock
};

// Stop: a stop id was sampled; Length: max_tokens reached; Cancelled: the
// client (or a shutdown) cancelled it.
enum class Finish : uint8_t { None, Stop, Length, Cancelled };

// One sampled token (or the end of a request).
struct TokenEvent {
  uint64_t id = 0;
  int32_t token = -1;  // -1 when the event only reports the end (a stop id)
  double time_s = 0;
  Finish finish = Finish::None;
};

// Per-request timing kept by the engine (engine clock, seconds).
struct RequestTiming {
  uint64_t id = 0;
  PriorityClass cls = PriorityClass::BE;
  double arrival_s = 0, first_scheduled_s = -1, first_token_s = -1, finish_s = -1;
  std::vector<double> token_times_s;
  int prompt_tokens = 0, output_tokens = 0, preemptions = 0;
  Finish finish = Finish::None;
};

}  // namespace qllm
