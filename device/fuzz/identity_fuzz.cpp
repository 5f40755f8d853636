// Any bytes as the device's identity file (operational.pem): ParseIdentity returns an Error or an
// identity (never throws, hangs or crashes), and what it returns survives being written back:
// FormatIdentity then ParseIdentity gives the same identity, give or take the newline that ends
// each PEM block in the file.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "edgetrust/device/state_dir.h"

using namespace edgetrust;
using namespace edgetrust::device;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

bool SameBlock(const std::string& written, const std::string& read) {
  return read == written || read == written + "\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto first = internal::ParseIdentity(text);
  if (!first.ok()) {
    Check(first.error().code == ErrorCode::kDataLoss);
    return 0;
  }
  Check(!first->cert_pem.empty() && !first->key_pem.empty());
  auto second = internal::ParseIdentity(internal::FormatIdentity(*first));
  Check(second.ok());
  Check(SameBlock(first->cert_pem, second->cert_pem));
  Check(SameBlock(first->key_pem, second->key_pem));
  Check(SameBlock(first->lifecycle_ca_pem, second->lifecycle_ca_pem));
  Check(second->site == first->site);
  // Written once, the file is a fixed point.
  auto third = internal::ParseIdentity(internal::FormatIdentity(*second));
  Check(third.ok() && *third == *second);
  return 0;
}
