// A site for plugin tests, made with the project's own pki and storage code: a site CA, a
// trusted manufacturer CA ("acme"), a CA in mosquitto's cafile that the policy does not name
// ("rogue"), the broker's server certificate, the two principals, a policy and a store.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/storage/records.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::testing {

enum class Issuer { kSite, kAcme, kRogue, kOutsider };

struct Credentials {
  std::string cert_path;
  std::string key_path;
  pki::Certificate cert;
  std::string fingerprint_hex() const;
};

class PluginSite {
 public:
  explicit PluginSite(size_t store_map_size = size_t{64} << 20);

  const std::string& dir() const { return dir_.path(); }
  std::string Path(const std::string& name) const { return dir_ / name; }

  // A leaf certificate, key and PEM files named <file>.pem / <file>.key.
  Credentials Issue(const std::string& file, Issuer issuer, const std::string& cn,
                    const std::string& ou = "thermo-1", int64_t not_before = 0,
                    int64_t not_after = 0);
  // A leaf with raw subject CN bytes (NUL, '/', 65+ chars…) or no CN at all, made with OpenSSL
  // because our own pki rightly refuses to issue such names.
  Credentials IssueHostile(const std::string& file, Issuer issuer, std::optional<std::string> cn);

  TlsFiles Tls(const Credentials& c) const { return {Path("trust.pem"), c.cert_path, c.key_path}; }

  storage::Store& store() { return *store_; }
  void PutDevice(storage::DeviceRecord device);
  // Records `c` in the certificates table as `kind` of `device_id` (what the gateway does at
  // enrollment and renewal).
  void PutCertificate(const Credentials& c, const std::string& device_id,
                      storage::CertificateKind kind = storage::CertificateKind::kOperational);
  void RevokeFingerprint(const pki::Certificate& cert);
  void RevokeSerial(const pki::Certificate& cert);

  // Policy text the site starts with; tests may rewrite policy.yaml.
  std::string PolicyYaml() const;
  // mosquitto.conf body: one TLS listener with the plugin.
  std::string BrokerConfig(int port, const std::string& store_dir = {},
                           bool require_certificate = true) const;

  const pki::Certificate& site_ca() const { return site_ca_; }

 private:
  const pki::Certificate& IssuerCert(Issuer i) const;
  const pki::PrivateKey& IssuerKey(Issuer i) const;
  void MakeCa(const std::string& file, const std::string& cn, pki::Certificate* cert,
              std::optional<pki::PrivateKey>* key);

  TempDir dir_;
  pki::Certificate site_ca_, acme_ca_, rogue_ca_, outsider_ca_;
  std::optional<pki::PrivateKey> site_key_, acme_key_, rogue_key_, outsider_key_;
  std::optional<storage::Store> store_;
};

// Chowns a path (recursively) to the broker's user so mosquitto can read and lock it.
void GiveToMosquitto(const std::string& path);

}  // namespace edgetrust::testing
