#include "plugin_site.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <stdexcept>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "edgetrust/common/bytes.h"
#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::testing {
namespace {

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error(what + ": " + r.error().ToString());
  return std::move(r).value();
}

void Must(Status s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error(what + ": " + s.error().ToString());
}

void WriteKey(const std::string& path, const pki::PrivateKey& key) {
  WriteFile(path, Must(key.ToPem(), "key pem"));
  ::chmod(path.c_str(), 0644);  // the broker (user mosquitto) reads its key; test keys only
}

}  // namespace

std::string Credentials::fingerprint_hex() const { return HexEncode(cert.fingerprint); }

void GiveToMosquitto(const std::string& path) {
  const passwd* pw = ::getpwnam("mosquitto");
  if (pw == nullptr) return;
  namespace fs = std::filesystem;
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) return;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      (void)::chown(e.path().c_str(), pw->pw_uid, pw->pw_gid);
    }
  }
}

void PluginSite::MakeCa(const std::string& file, const std::string& cn, pki::Certificate* cert,
                        std::optional<pki::PrivateKey>* key) {
  key->emplace(Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "ca key"));
  *cert = Must(pki::CreateSelfSignedCa(**key, {cn, "edgetrust tests", ""}, 3650), "ca " + cn);
  Must(pki::WriteCertificateFile(Path(file + ".pem"), pki::CertificateToPem(cert->der), true), "write ca");
  WriteKey(Path(file + ".key"), **key);
}

PluginSite::PluginSite(size_t store_map_size) {
  MakeCa("site-ca", "test site CA", &site_ca_, &site_key_);
  MakeCa("acme-ca", "acme manufacturer CA", &acme_ca_, &acme_key_);
  MakeCa("rogue-ca", "rogue CA", &rogue_ca_, &rogue_key_);
  MakeCa("outsider-ca", "outsider CA", &outsider_ca_, &outsider_key_);
  // What mosquitto trusts: the policy's CAs plus one the policy does not name.
  WriteFile(Path("trust.pem"), pki::CertificateToPem(site_ca_.der) +
                                   pki::CertificateToPem(acme_ca_.der) +
                                   pki::CertificateToPem(rogue_ca_.der));

  auto broker_key = Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "broker key");
  pki::IssueRequest req;
  req.subject = {"localhost", "edgetrust tests", ""};
  req.public_key_der = Must(broker_key.PublicKeyDer(), "spki");
  req.not_before = UnixNow() - 3600;
  req.not_after = UnixNow() + 86400;
  req.extended_usage = pki::ExtendedUsage::kServerAuth;
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1"};
  auto broker = Must(pki::IssueCertificate(site_ca_, *site_key_, req), "broker cert");
  Must(pki::WriteCertificateFile(Path("broker.pem"), pki::CertificateToPem(broker.der), true), "write");
  WriteKey(Path("broker.key"), broker_key);

  WriteFile(Path("policy.yaml"), PolicyYaml());

  storage::StoreOptions opts;
  opts.path = Path("store");
  opts.map_size = store_map_size;
  store_.emplace(Must(storage::Store::Open(opts), "store"));
  GiveToMosquitto(Path("store"));
}

std::string PluginSite::PolicyYaml() const {
  return "site: plugin-test\n"
         "trust:\n"
         "  site_ca: " + Path("site-ca.pem") + "\n"
         "  manufacturers: { acme: " + Path("acme-ca.pem") + " }\n"
         "principals: { gateway: [edgetrust-gateway], admin: [ops-admin] }\n"
         "groups:\n"
         "  - name: thermostats\n"
         "    match: { manufacturer: acme, model: \"thermo-*\" }\n"
         "    enrollment: { mode: auto, reenroll: true }\n"
         "  - name: locks\n"
         "    match: { manufacturer: acme, model: \"lock-*\" }\n"
         "    enrollment: { mode: allowlist }\n"
         "  - name: others\n"
         "    match: { manufacturer: acme, model: \"*\" }\n"
         "    enrollment: { mode: auto, reenroll: false }\n";
}

std::string PluginSite::BrokerConfig(int port, const std::string& store_dir,
                                     bool require_certificate) const {
  return "per_listener_settings false\n"
         "allow_anonymous false\n"
         "listener " + std::to_string(port) + " 127.0.0.1\n"
         "cafile " + Path("trust.pem") + "\n"
         "certfile " + Path("broker.pem") + "\n"
         "keyfile " + Path("broker.key") + "\n"
         "require_certificate " + (require_certificate ? "true" : "false") + "\n"
         "use_identity_as_username false\n"
         "plugin " + BinPath("mosquitto_edgetrust.so") + "\n"
         "plugin_opt_store " + (store_dir.empty() ? Path("store") : store_dir) + "\n"
         "plugin_opt_policy " + Path("policy.yaml") + "\n"
         "plugin_opt_tick_ms 100\n"
         "plugin_opt_stats_interval 1\n";
}

const pki::Certificate& PluginSite::IssuerCert(Issuer i) const {
  switch (i) {
    case Issuer::kSite: return site_ca_;
    case Issuer::kAcme: return acme_ca_;
    case Issuer::kRogue: return rogue_ca_;
    case Issuer::kOutsider: return outsider_ca_;
  }
  throw std::logic_error("issuer");
}

const pki::PrivateKey& PluginSite::IssuerKey(Issuer i) const {
  switch (i) {
    case Issuer::kSite: return *site_key_;
    case Issuer::kAcme: return *acme_key_;
    case Issuer::kRogue: return *rogue_key_;
    case Issuer::kOutsider: return *outsider_key_;
  }
  throw std::logic_error("issuer");
}

Credentials PluginSite::Issue(const std::string& file, Issuer issuer, const std::string& cn,
                              const std::string& ou, int64_t not_before, int64_t not_after) {
  auto key = Must(pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256), "leaf key");
  pki::IssueRequest req;
  req.subject = {cn, issuer == Issuer::kAcme ? "acme" : "edgetrust tests", ou};
  req.public_key_der = Must(key.PublicKeyDer(), "spki");
  req.not_before = not_before ? not_before : UnixNow() - 3600;
  req.not_after = not_after ? not_after : UnixNow() + 86400;
  req.extended_usage = pki::ExtendedUsage::kClientAuth;
  Credentials c;
  c.cert = Must(pki::IssueCertificate(IssuerCert(issuer), IssuerKey(issuer), req), "issue " + cn);
  c.cert_path = Path(file + ".pem");
  c.key_path = Path(file + ".key");
  Must(pki::WriteCertificateFile(c.cert_path, pki::CertificateToPem(c.cert.der), true), "write");
  WriteKey(c.key_path, key);
  return c;
}

Credentials PluginSite::IssueHostile(const std::string& file, Issuer issuer,
                                     std::optional<std::string> cn) {
  auto fail = [](const char* what) { return std::runtime_error(std::string("openssl: ") + what); };
  std::string issuer_key_pem = Must(IssuerKey(issuer).ToPem(), "issuer key");
  std::unique_ptr<BIO, decltype(&BIO_free)> kb(
      BIO_new_mem_buf(issuer_key_pem.data(), static_cast<int>(issuer_key_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> ikey(
      PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  const Bytes& ider = IssuerCert(issuer).der;
  const unsigned char* p = ider.data();
  std::unique_ptr<X509, decltype(&X509_free)> icert(d2i_X509(nullptr, &p, static_cast<long>(ider.size())),
                                                    X509_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> leaf_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), X509_free);
  if (!ikey || !icert || !leaf_key || !x) throw fail("setup");

  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), static_cast<long>(UnixNow() & 0x7fffffff) ^ rand());
  X509_set_issuer_name(x.get(), X509_get_subject_name(icert.get()));
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("acme"), -1, -1, 0);
  if (cn) {
    // V_ASN1_UTF8STRING (not MBSTRING_*) stores the bytes as given: no length or NUL checks.
    if (!X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
                                    reinterpret_cast<const unsigned char*>(cn->data()),
                                    static_cast<int>(cn->size()), -1, 0)) {
      throw fail("cn");
    }
  }
  X509_set_pubkey(x.get(), leaf_key.get());
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, icert.get(), x.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                            std::pair{NID_key_usage, "critical,digitalSignature"},
                            std::pair{NID_ext_key_usage, "clientAuth"},
                            std::pair{NID_authority_key_identifier, "keyid:always"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (ext == nullptr) throw fail("extension");
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), ikey.get(), EVP_sha256()) == 0) throw fail("sign");

  Credentials c;
  c.cert_path = Path(file + ".pem");
  c.key_path = Path(file + ".key");
  int len = i2d_X509(x.get(), nullptr);
  Bytes der(static_cast<size_t>(len));
  unsigned char* out = der.data();
  i2d_X509(x.get(), &out);
  WriteFile(c.cert_path, pki::CertificateToPem(der));
  std::unique_ptr<BIO, decltype(&BIO_free)> ob(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(ob.get(), leaf_key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(ob.get(), &data);
  WriteFile(c.key_path, std::string(data, static_cast<size_t>(n)));
  auto parsed = pki::ParseCertificateDer(der);
  if (parsed.ok()) {
    c.cert = std::move(parsed).value();
  } else {
    c.cert.der = der;
  }
  return c;
}

void PluginSite::PutDevice(storage::DeviceRecord device) {
  auto txn = Must(store_->BeginWrite(), "begin");
  Must(storage::PutDevice(txn, device), "put device");
  Must(txn.Commit(), "commit");
}

void PluginSite::PutCertificate(const Credentials& c, const std::string& device_id,
                                storage::CertificateKind kind) {
  storage::CertificateRecord r;
  r.fingerprint.assign(c.cert.fingerprint.begin(), c.cert.fingerprint.end());
  r.device_id = device_id;
  r.kind = kind;
  r.issuer_id.assign(c.cert.issuer_id.begin(), c.cert.issuer_id.end());
  r.serial = c.cert.serial;
  r.not_before = c.cert.not_before;
  r.not_after = c.cert.not_after;
  r.der = c.cert.der;
  auto txn = Must(store_->BeginWrite(), "begin");
  Must(storage::PutCertificate(txn, r), "put certificate");
  Must(txn.Commit(), "commit");
}

void PluginSite::RevokeFingerprint(const pki::Certificate& cert) {
  auto txn = Must(store_->BeginWrite(), "begin");
  storage::RevocationRecord r;
  r.fingerprint.assign(cert.fingerprint.begin(), cert.fingerprint.end());
  r.device_id = cert.subject.cn;
  r.reason = "test";
  Must(storage::AppendRevocation(txn, r), "revoke");
  Must(txn.Commit(), "commit");
}

void PluginSite::RevokeSerial(const pki::Certificate& cert) {
  auto txn = Must(store_->BeginWrite(), "begin");
  storage::RevocationRecord r;
  r.issuer_id.assign(cert.issuer_id.begin(), cert.issuer_id.end());
  r.serial = cert.serial;
  r.reason = "test";
  Must(storage::AppendRevocation(txn, r), "revoke");
  Must(txn.Commit(), "commit");
}

}  // namespace edgetrust::testing
