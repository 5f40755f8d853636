// Any bytes as a topic or filter for every role: no crash, and the checks agree with each other
// (a role may only publish topic names, and what it may subscribe it may also receive when the
// filter is a plain name).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "edgetrust/protocol/topics.h"

using namespace edgetrust::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  for (Role r : {Role::kEnrolling, Role::kDevice, Role::kGateway, Role::kAdmin}) {
    bool pub = MayPublish(r, "et", "dev-1", s);
    bool sub = MaySubscribe(r, "et", "dev-1", s);
    bool recv = MayReceive(r, "et", "dev-1", s);
    if (pub && !IsValidTopicName(s)) std::abort();
    if (IsValidTopicName(s) && sub != recv) std::abort();
  }
  if (auto t = ParseDeviceTopic("et", s)) {
    if (BuildTopic("et", t->device_id, t->kind, t->channel) != s) std::abort();
  }
  return 0;
}
