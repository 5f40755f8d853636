// msgpack encoding of the stored records: maps with short string keys; unknown keys ignored.
#pragma once

#include <string>
#include <string_view>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/storage/records.h"

namespace edgetrust::storage::internal {

std::string Encode(const DeviceRecord& r);
std::string Encode(const CertificateRecord& r);
std::string Encode(const RevocationRecord& r);  // the log entry; its seq is the key
std::string Encode(const FirmwareManifest& r);
std::string Encode(const OutboxMessage& r);     // seq and upstream are in the key
std::string Encode(const AuditRecord& r);       // seq is the key
std::string Encode(const AllowlistEntry& r);

// kDataLoss when `data` is not a well-formed record. The device record, read on every device
// event by the gateway, is walked in place (no msgpack-c object tree); the rest go through
// msgpack-c. Both accept the same records.
Status Decode(ByteView data, DeviceRecord* r);
Status Decode(ByteView data, CertificateRecord* r);
Status Decode(ByteView data, RevocationRecord* r);
Status Decode(ByteView data, FirmwareManifest* r);
Status Decode(ByteView data, OutboxMessage* r);
Status Decode(ByteView data, AuditRecord* r);
Status Decode(ByteView data, AllowlistEntry* r);

// In-place decoders for the plugin's hot path: they walk the msgpack bytes without msgpack-c's
// zone and without allocating, and read only what they fill. They accept exactly the records
// the full decoders accept, as far as the fields they read are concerned.
struct DeviceAuthViewWriter {
  // `*out` is written only on success.
  static Status Decode(ByteView data, DeviceAuthView* out);
};
// The kind and owner of a stored certificate; `*device_id` points into `data`.
Status DecodeCertificateOwner(ByteView data, CertificateKind* kind, std::string_view* device_id);

}  // namespace edgetrust::storage::internal
