// The two identities a device holds: the birth certificate from the factory (files, never
// modified) and the operational certificate from the site (in the state directory).
#pragma once

#include <optional>
#include <string>

#include "edgetrust/common/result.h"
#include "edgetrust/device/state_dir.h"
#include "edgetrust/pki/certificate.h"

namespace edgetrust::device {

struct BirthIdentity {
  pki::Certificate cert;
  std::string cert_file;
  std::string key_file;
  std::string device_id;  // subject CN
  std::string model;      // subject OU
};

// Loads and checks the birth certificate and key files: the CN must be a valid device id and the key
// must match the certificate.
Result<BirthIdentity> LoadBirthIdentity(const std::string& cert_file, const std::string& key_file);

struct OperationalIdentity {
  pki::Certificate cert;
  std::string key_pem;
  std::string site;
  std::optional<pki::Certificate> lifecycle_ca;
};

// Checks a stored identity: certificate and key parse, the key matches the certificate, its CN is
// `device_id`. kDataLoss otherwise (the caller falls back to the birth certificate). Expiry is not
// checked here: an expired identity is still the one to renew from or to replace.
Result<OperationalIdentity> CheckIdentity(const StoredIdentity& stored, const std::string& device_id);

// The stored form of an issued identity (PEM texts, lifecycle CA relabelled).
StoredIdentity ToStored(const pki::Certificate& cert, const std::string& key_pem,
                        const std::string& site, const Bytes& lifecycle_ca_der);

// "2026-02-21T10:00:00Z"
std::string FormatUtc(int64_t unix_seconds);

}  // namespace edgetrust::device
