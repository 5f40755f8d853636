// msgpack encoding of the stored records: maps with short string keys; unknown keys ignored.
#pragma once

#include <string>

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

// kDataLoss when `data` is not a well-formed record.
Status Decode(ByteView data, DeviceRecord* r);
Status Decode(ByteView data, CertificateRecord* r);
Status Decode(ByteView data, RevocationRecord* r);
Status Decode(ByteView data, FirmwareManifest* r);
Status Decode(ByteView data, OutboxMessage* r);
Status Decode(ByteView data, AuditRecord* r);
Status Decode(ByteView data, AllowlistEntry* r);

}  // namespace edgetrust::storage::internal
