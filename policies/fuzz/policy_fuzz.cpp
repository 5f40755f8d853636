// Any bytes as a policy: ParsePolicy must return (never throw, hang or crash), and a policy that
// parses must survive AddManufacturerToPolicyYaml and still parse afterwards.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "edgetrust/policies/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = edgetrust::policies::ParsePolicy(text, "fuzz");
  if (!policy.ok()) return 0;
  auto edited = edgetrust::policies::AddManufacturerToPolicyYaml(text, "fuzz-maker", "/fuzz.pem");
  if (edited.ok() && !edgetrust::policies::ParsePolicy(*edited, "fuzz").ok()) std::abort();
  return 0;
}
