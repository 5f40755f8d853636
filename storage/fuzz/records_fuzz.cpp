// Any bytes as every stored record, as a corrupted or foreign store would hand them back: each
// decoder returns kDataLoss or a record (never throws, hangs, crashes or asks for more memory
// than the bytes could describe), a record re-encodes to bytes that decode to the same record,
// and the in-place decoders of the plugin's hot path agree with the full ones.
#include <cstdint>
#include <cstdlib>
#include <tuple>

#include "codec.h"

using namespace edgetrust;
using namespace edgetrust::storage;
using namespace edgetrust::storage::internal;

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

auto Fields(const DeviceRecord& r) {
  return std::tie(r.id, r.state, r.manufacturer, r.model, r.group, r.birth_fingerprint,
                  r.operational_fingerprint, r.operational_not_after, r.operational_unconfirmed,
                  r.fw, r.claim_code_sha256, r.created_at, r.updated_at);
}
auto Fields(const CertificateRecord& r) {
  return std::tie(r.fingerprint, r.device_id, r.kind, r.issuer_id, r.serial, r.not_before,
                  r.not_after, r.der);
}
auto Fields(const RevocationRecord& r) {
  return std::tie(r.fingerprint, r.issuer_id, r.serial, r.device_id, r.reason, r.ts);
}
auto Fields(const FirmwareManifest& r) {
  return std::tie(r.image_id, r.version, r.size, r.chunk_size, r.sha256, r.sig, r.key_id,
                  r.channel, r.created_at);
}
auto Fields(const OutboxMessage& r) {
  return std::tie(r.device_id, r.channel, r.payload, r.qos, r.ts);
}
auto Fields(const AuditRecord& r) { return std::tie(r.ts, r.actor, r.action, r.device_id, r.detail); }
auto Fields(const AllowlistEntry& r) {
  return std::tie(r.device_id, r.serial, r.fingerprint, r.model, r.manufacturer);
}

// Decodes `in` as a T; when that works, the re-encoded record must decode to the same fields.
template <typename T>
bool RoundTrip(ByteView in, T* out) {
  Status s = Decode(in, out);
  if (!s.ok()) {
    Check(s.error().code == ErrorCode::kDataLoss);
    return false;
  }
  const std::string bytes = Encode(*out);
  T again;
  Check(Decode(AsBytes(bytes), &again).ok());
  Check(Fields(again) == Fields(*out));
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView in(data, size);

  DeviceRecord device;
  const bool device_ok = RoundTrip(in, &device);
  DeviceAuthView view;
  Status view_status = DeviceAuthViewWriter::Decode(in, &view);
  if (!view_status.ok()) Check(view_status.error().code == ErrorCode::kDataLoss);
  if (device_ok && device.birth_fingerprint.size() <= 32 &&
      device.operational_fingerprint.size() <= 32) {
    // The view reads a subset of the fields: whatever the full decoder takes, it takes too.
    Check(view_status.ok());
    Check(view.state() == device.state);
    Check(Bytes(view.birth_fingerprint().begin(), view.birth_fingerprint().end()) ==
          device.birth_fingerprint);
    Check(Bytes(view.operational_fingerprint().begin(), view.operational_fingerprint().end()) ==
          device.operational_fingerprint);
    Check(view.operational_unconfirmed() == device.operational_unconfirmed);
    const bool fit = device.manufacturer.size() <= DeviceAuthView::kMaxName &&
                     device.model.size() <= DeviceAuthView::kMaxName;
    Check(view.names_fit() == fit);
    if (fit) Check(view.manufacturer() == device.manufacturer && view.model() == device.model);
  }

  CertificateRecord cert;
  const bool cert_ok = RoundTrip(in, &cert);
  CertificateKind kind;
  std::string_view owner;
  Status owner_status = DecodeCertificateOwner(in, &kind, &owner);
  if (!owner_status.ok()) Check(owner_status.error().code == ErrorCode::kDataLoss);
  if (cert_ok) Check(owner_status.ok() && kind == cert.kind && owner == cert.device_id);

  RevocationRecord revocation;
  (void)RoundTrip(in, &revocation);
  FirmwareManifest manifest;
  (void)RoundTrip(in, &manifest);
  OutboxMessage message;
  (void)RoundTrip(in, &message);
  AuditRecord audit;
  (void)RoundTrip(in, &audit);
  AllowlistEntry allow;
  (void)RoundTrip(in, &allow);
  return 0;
}
