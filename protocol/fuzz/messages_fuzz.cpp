// Any bytes as every device message: decoders return an Error or a value, never throw or crash,
// and whatever decodes re-encodes to something that decodes to the same thing.
#include <cstdint>
#include <cstdlib>

#include "edgetrust/protocol/messages.h"

using namespace edgetrust;
using namespace edgetrust::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView in(data, size);
  if (auto m = DecodeEnrollRequest(in); m.ok()) {
    auto again = DecodeEnrollRequest(EncodeEnrollRequest(*m));
    if (!again.ok() || again->csr != m->csr || again->rid != m->rid) std::abort();
  }
  if (auto m = DecodeEnrollResponse(in); m.ok()) {
    if (!DecodeEnrollResponse(EncodeEnrollResponse(*m)).ok()) std::abort();
  }
  if (auto m = DecodeStateMessage(in); m.ok()) {
    if (!DecodeStateMessage(EncodeStateMessage(*m)).ok()) std::abort();
  }
  if (auto m = DecodeOtaOffer(in); m.ok()) {
    if (!DecodeOtaOffer(EncodeOtaOffer(*m)).ok()) std::abort();
  }
  (void)DecodeOtaGet(in);
  (void)DecodeOtaChunk(in);
  (void)DecodeOtaStatus(in);
  if (auto m = DecodeLifecycleCommand(in); m.ok()) {
    (void)LifecycleSigningBytes("dev-1", *m);
  }
  (void)PeekRequestId(in);
  return 0;
}
