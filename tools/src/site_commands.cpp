// edgetrust site init | add-manufacturer | import-manifest
#include <arpa/inet.h>
#include <dirent.h>

#include <iostream>
#include <sstream>

#include "commands.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/policies/policy.h"
#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"
#include "files.h"
#include "mosquitto_conf.h"
#include "trust_dir.h"
#include "pki_output.h"

namespace edgetrust::tools {

namespace {

constexpr int kSiteCaDays = 3650;
constexpr int kDefaultCertDays = 825;
constexpr char kGatewayCn[] = "edgetrust-gateway";
constexpr char kAdminCn[] = "ops-admin";

bool IsIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool IsValidHostName(const std::string& host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '*';
    if (!ok) return false;
  }
  return true;
}

// Every file of a site directory that `site init` writes.
struct SiteFiles {
  explicit SiteFiles(const std::string& dir)
      : site_ca_pem(dir + "/site-ca.pem"),
        site_ca_key(dir + "/site-ca.key"),
        broker_pem(dir + "/broker.pem"),
        broker_key(dir + "/broker.key"),
        gateway_pem(dir + "/gateway.pem"),
        gateway_key(dir + "/gateway.key"),
        admin_pem(dir + "/admin.pem"),
        admin_key(dir + "/admin.key"),
        trust_pem(dir + "/trust.pem"),
        trust_dir(dir + "/trust.d"),
        policy(dir + "/policy.yaml"),
        mosquitto_conf(dir + "/mosquitto.conf"),
        store(dir + "/store") {}

  std::vector<std::string> All() const {
    return {site_ca_pem, site_ca_key, broker_pem, broker_key, gateway_pem, gateway_key,
            admin_pem,   admin_key,   trust_pem,  policy,     mosquitto_conf};
  }

  std::string site_ca_pem, site_ca_key, broker_pem, broker_key, gateway_pem, gateway_key,
      admin_pem, admin_key, trust_pem, trust_dir, policy, mosquitto_conf, store;
};

struct IssuedLeaf {
  pki::Certificate cert;
  pki::PrivateKey key;
};

Result<IssuedLeaf> IssueLeaf(const pki::Certificate& ca, const pki::PrivateKey& ca_key,
                             pki::IssueRequest request, int days) {
  ET_ASSIGN_OR_RETURN(auto key, pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256));
  ET_ASSIGN_OR_RETURN(request.public_key_der, key.PublicKeyDer());
  int64_t now = UnixNow();
  request.not_before = now - kBackdateSeconds;
  request.not_after = now + days * kSecondsPerDay;
  ET_ASSIGN_OR_RETURN(auto cert, pki::IssueCertificate(ca, ca_key, request));
  return IssuedLeaf{std::move(cert), std::move(key)};
}

Error Context(const std::string& what, const Error& e) {
  return MakeError(e.code, what + ": " + e.message);
}

// Opens (creating) the store once so its files exist with the right owner before the broker
// starts; records the principal certificates so a revocation by fingerprint knows them.
Status InitStore(const SiteFiles& files, const std::vector<const pki::Certificate*>& principals,
                 const std::optional<Owner>& owner) {
  {
    auto store = storage::Store::Open({.path = files.store});
    if (!store.ok()) return Context(files.store, store.error());
    auto txn = store->BeginWrite();
    if (!txn.ok()) return Context(files.store, txn.error());
    for (const pki::Certificate* c : principals) {
      storage::CertificateRecord rec;
      rec.fingerprint.assign(c->fingerprint.begin(), c->fingerprint.end());
      rec.device_id = c->subject.cn;
      rec.kind = storage::CertificateKind::kPrincipal;
      rec.issuer_id.assign(c->issuer_id.begin(), c->issuer_id.end());
      rec.serial = c->serial;
      rec.not_before = c->not_before;
      rec.not_after = c->not_after;
      rec.der = c->der;
      if (auto s = storage::PutCertificate(*txn, rec); !s.ok()) return Context(files.store, s.error());
    }
    if (auto s = txn->Commit(); !s.ok()) return Context(files.store, s.error());
  }
  if (!owner) return OkStatus();
  // The plugin opens the store read-only, but LMDB still writes its reader table in lock.mdb.
  ET_RETURN_IF_ERROR(ChangeOwner(files.store, *owner));
  DIR* d = opendir(files.store.c_str());
  if (d == nullptr) return MakeError(ErrorCode::kIo, files.store + ": cannot list");
  Status result;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (auto s = ChangeOwner(files.store + "/" + name, *owner); !s.ok()) {
      result = s;
      break;
    }
  }
  closedir(d);
  return result;
}

CommandOutcome SiteInit(const ParsedArgs& args) {
  const std::string dir = AbsolutePath(args.Get("dir"));
  const std::string site = args.Get("site");
  const bool force = args.Has("force");
  const int port = static_cast<int>(args.GetInt("port", 8883));
  const int cert_days = static_cast<int>(args.GetInt("cert-days", kDefaultCertDays));
  if (!IsValidName(site)) {
    return UsageError{"invalid site id '" + site + "' (letters, digits, '.', '_', '-'; up to 64)"};
  }
  std::vector<std::string> dns{"localhost"};
  std::vector<std::string> ips{"127.0.0.1"};
  for (const auto& h : args.GetAll("host")) {
    if (IsIpAddress(h)) {
      if (std::find(ips.begin(), ips.end(), h) == ips.end()) ips.insert(ips.end() - 1, h);
    } else if (IsValidHostName(h)) {
      if (std::find(dns.begin(), dns.end(), h) == dns.end()) dns.insert(dns.end() - 1, h);
    } else {
      return UsageError{"invalid --host '" + h + "'"};
    }
  }
  // The hosts given first, then localhost / 127.0.0.1.
  std::string broker_cn = dns.front();

  SiteFiles files(dir);
  if (auto s = RefuseExisting(files.All(), force); !s.ok()) return s.error();
  if (auto s = MakeDirectories(dir, 0755); !s.ok()) return s.error();

  auto ca_key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  if (!ca_key.ok()) return Context("site CA key", ca_key.error());
  auto ca = pki::CreateSelfSignedCa(*ca_key, {.cn = site + " site CA", .o = site}, kSiteCaDays);
  if (!ca.ok()) return Context("site CA", ca.error());

  pki::IssueRequest broker_req;
  broker_req.subject = {.cn = broker_cn, .o = site};
  broker_req.extended_usage = pki::ExtendedUsage::kServerAuth;
  broker_req.dns_names = dns;
  broker_req.ip_addresses = ips;
  auto broker = IssueLeaf(*ca, *ca_key, broker_req, cert_days);
  if (!broker.ok()) return Context("broker certificate", broker.error());

  pki::IssueRequest gateway_req;
  gateway_req.subject = {.cn = kGatewayCn, .o = site};
  gateway_req.extended_usage = pki::ExtendedUsage::kClientAuth;
  auto gateway = IssueLeaf(*ca, *ca_key, gateway_req, cert_days);
  if (!gateway.ok()) return Context("gateway certificate", gateway.error());

  pki::IssueRequest admin_req;
  admin_req.subject = {.cn = kAdminCn, .o = site};
  admin_req.extended_usage = pki::ExtendedUsage::kClientAuth;
  auto admin = IssueLeaf(*ca, *ca_key, admin_req, cert_days);
  if (!admin.ok()) return Context("admin certificate", admin.error());

  auto policy = policies::StarterPolicyYaml(site, files.site_ca_pem, kGatewayCn, kAdminCn);
  if (!policy.ok()) return Context("policy.yaml", policy.error());

  std::string plugin = ResolvePluginPath(args.Get("plugin"));
  std::string conf = MosquittoConfText({.site_id = site,
                                        .port = port,
                                        .cafile = files.trust_pem,
                                        .capath = files.trust_dir,
                                        .certfile = files.broker_pem,
                                        .keyfile = files.broker_key,
                                        .plugin = plugin,
                                        .store = files.store,
                                        .policy = files.policy});

  std::optional<Owner> owner = BrokerOwner();
  std::vector<Status> steps;
  // Keys first: a certificate on disk always has its key beside it.
  steps.push_back(WriteKeyFile(files.site_ca_key, *ca_key, force));
  steps.push_back(WriteCertFile(files.site_ca_pem, *ca, force));
  steps.push_back(WriteKeyFile(files.broker_key, broker->key, force, owner));
  steps.push_back(WriteCertFile(files.broker_pem, broker->cert, force));
  steps.push_back(WriteKeyFile(files.gateway_key, gateway->key, force));
  steps.push_back(WriteCertFile(files.gateway_pem, gateway->cert, force));
  steps.push_back(WriteKeyFile(files.admin_key, admin->key, force));
  steps.push_back(WriteCertFile(files.admin_pem, admin->cert, force));
  steps.push_back(WriteFileAtomic(files.trust_pem, pki::CertificateToPem(ca->der),
                                  kPublicFileMode, force));
  steps.push_back(WriteTrustDirectory(files.trust_dir, {ca->der}));
  steps.push_back(WriteFileAtomic(files.policy, *policy, kPublicFileMode, force));
  steps.push_back(WriteFileAtomic(files.mosquitto_conf, conf, kPublicFileMode, force));
  for (const auto& s : steps) {
    if (!s.ok()) return s.error();
  }
  if (auto s = InitStore(files, {&gateway->cert, &admin->cert}, owner); !s.ok()) return s.error();

  std::cout << "site " << site << " initialised in " << dir << "\n"
            << "  site CA      " << files.site_ca_pem << "  (sha256 "
            << ShortFingerprint(ca->fingerprint) << "…, until " << FormatDate(ca->not_after)
            << ")\n"
            << "  broker       " << files.broker_pem << "  (DNS ";
  for (size_t i = 0; i < dns.size(); ++i) std::cout << (i ? "," : "") << dns[i];
  std::cout << "; IP ";
  for (size_t i = 0; i < ips.size(); ++i) std::cout << (i ? "," : "") << ips[i];
  std::cout << ")\n"
            << "  gateway      " << files.gateway_pem << "  (CN " << kGatewayCn << ")\n"
            << "  admin        " << files.admin_pem << "  (CN " << kAdminCn << ")\n"
            << "  policy       " << files.policy << "\n"
            << "  store        " << files.store << "\n"
            << "  mosquitto    " << files.mosquitto_conf << "  (listener " << port << ")\n"
            << "next: edgetrust site add-manufacturer --dir " << dir
            << " --name NAME --ca CA.pem, then mosquitto -c " << files.mosquitto_conf << "\n";
  if (!FileExists(plugin)) {
    std::cerr << "edgetrust: warning: plugin " << plugin
              << " does not exist yet; mosquitto will not start until it is installed\n";
  }
  return std::monostate{};
}

// trust.pem and trust.d are derived: the site CA then every manufacturer CA of the policy, in
// name order.
Status RebuildTrust(const SiteFiles& files, const policies::Policy& policy) {
  ET_ASSIGN_OR_RETURN(auto site_ca, LoadCertificate(policy.trust.site_ca));
  std::string bundle = pki::CertificateToPem(site_ca.der);
  std::vector<Bytes> ders = {site_ca.der};
  for (const auto& [name, path] : policy.trust.manufacturers) {
    ET_ASSIGN_OR_RETURN(auto ca, LoadCertificate(path));
    bundle += pki::CertificateToPem(ca.der);
    ders.push_back(ca.der);
  }
  ET_RETURN_IF_ERROR(WriteTrustDirectory(files.trust_dir, ders));
  return WriteFileAtomic(files.trust_pem, bundle, kPublicFileMode, /*force=*/true);
}

CommandOutcome SiteAddManufacturer(const ParsedArgs& args) {
  const std::string dir = AbsolutePath(args.Get("dir"));
  const std::string name = args.Get("name");
  const bool force = args.Has("force");
  if (!IsValidName(name)) {
    return UsageError{"invalid manufacturer name '" + name +
                      "' (letters, digits, '.', '_', '-'; up to 64)"};
  }
  SiteFiles files(dir);
  auto ca = LoadCertificate(args.Get("ca"));
  if (!ca.ok()) return ca.error();
  if (!ca->is_ca) {
    return MakeError(ErrorCode::kInvalidArgument,
                     args.Get("ca") + ": not a CA certificate (" + ca->subject.ToString() + ")");
  }
  auto text = ReadTextFile(files.policy);
  if (!text.ok()) return text.error();
  auto current = policies::ParsePolicy(*text, files.policy, dir);
  if (!current.ok()) return current.error();
  if (current->trust.manufacturers.count(name) > 0 && !force) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "manufacturer " + name + " is already trusted by " + files.policy +
                         " (use --force to replace its CA)");
  }
  const std::string ca_copy = dir + "/manufacturer-" + name + ".pem";
  auto updated = policies::AddManufacturerToPolicyYaml(*text, name, ca_copy);
  if (!updated.ok()) {
    return MakeError(updated.error().code, files.policy + ": " + updated.error().message);
  }
  auto next = policies::ParsePolicy(*updated, files.policy, dir);
  if (!next.ok()) return next.error();

  if (auto s = WriteFileAtomic(ca_copy, pki::CertificateToPem(ca->der), kPublicFileMode, force);
      !s.ok()) {
    return s.error();
  }
  if (*updated != *text) {
    if (auto s = WriteFileAtomic(files.policy, *updated, kPublicFileMode, true); !s.ok()) {
      return s.error();
    }
  }
  if (auto s = RebuildTrust(files, *next); !s.ok()) return s.error();
  std::cout << "manufacturer " << name << " trusted: " << ca_copy << " (" << ca->subject.ToString()
            << ", sha256 " << ShortFingerprint(ca->fingerprint) << "…)\n"
            << "updated " << files.policy << ", " << files.trust_pem << " and " << files.trust_dir
            << "; send SIGHUP to mosquitto (its plugin rereads the policy; TLS finds the CA in "
               "trust.d) and to the gateway\n";
  return std::monostate{};
}

// manifest.csv: header `id,serial,sha256,model`, hex fields.
Result<std::vector<storage::AllowlistEntry>> ParseManifest(const std::string& path,
                                                           const std::string& text,
                                                           const std::string& manufacturer) {
  std::vector<storage::AllowlistEntry> rows;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  bool header_seen = false;
  auto bad = [&](const std::string& why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path + ":" + std::to_string(line_no) + ": " + why);
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> fields;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ',')) fields.push_back(field);
    if (!line.empty() && line.back() == ',') fields.push_back("");
    if (!header_seen) {
      if (line != "id,serial,sha256,model") {
        return bad("expected the header 'id,serial,sha256,model'");
      }
      header_seen = true;
      continue;
    }
    if (fields.size() != 4) {
      return bad("expected 4 fields (id,serial,sha256,model), found " +
                 std::to_string(fields.size()));
    }
    storage::AllowlistEntry e;
    e.device_id = fields[0];
    if (!IsValidDeviceId(e.device_id)) return bad("invalid device id '" + fields[0] + "'");
    auto serial = HexDecode(fields[1]);
    if (!serial || serial->empty() || serial->size() > 20) {
      return bad("invalid serial '" + fields[1] + "' (hex, 1 to 20 bytes)");
    }
    auto fp = HexDecode(fields[2]);
    if (!fp || fp->size() != 32) return bad("invalid sha256 '" + fields[2] + "' (64 hex digits)");
    if (!IsValidName(fields[3])) return bad("invalid model '" + fields[3] + "'");
    e.serial = std::move(*serial);
    e.fingerprint = std::move(*fp);
    e.model = fields[3];
    e.manufacturer = manufacturer;
    for (const auto& r : rows) {
      if (r.device_id == e.device_id) return bad("device " + e.device_id + " listed twice");
    }
    rows.push_back(std::move(e));
  }
  if (!header_seen) {
    return MakeError(ErrorCode::kInvalidArgument, path + ": empty manifest");
  }
  return rows;
}

CommandOutcome SiteImportManifest(const ParsedArgs& args) {
  const std::string store_dir = AbsolutePath(args.Get("store"));
  const std::string path = args.Get("manifest");
  const std::string manufacturer = args.Get("manufacturer");
  if (!IsValidName(manufacturer)) return UsageError{"invalid manufacturer name '" + manufacturer + "'"};
  auto text = ReadTextFile(path);
  if (!text.ok()) return text.error();
  auto rows = ParseManifest(path, *text, manufacturer);
  if (!rows.ok()) return rows.error();
  if (!FileExists(store_dir)) {
    return MakeError(ErrorCode::kNotFound, store_dir + ": no store here (made by edgetrust site init)");
  }
  auto store = storage::Store::Open({.path = store_dir});
  if (!store.ok()) return Context(store_dir, store.error());
  auto txn = store->BeginWrite();
  if (!txn.ok()) return Context(store_dir, txn.error());
  int created = 0, updated = 0, unchanged = 0, kept = 0;
  for (const auto& row : *rows) {
    auto outcome = storage::ImportManifestRow(*txn, row, manufacturer, "cli");
    if (!outcome.ok()) return Context("device " + row.device_id, outcome.error());
    switch (*outcome) {
      case storage::ImportOutcome::kCreated: ++created; break;
      case storage::ImportOutcome::kUpdated: ++updated; break;
      case storage::ImportOutcome::kUnchanged: ++unchanged; break;
      case storage::ImportOutcome::kKeptLaterState: ++kept; break;
    }
  }
  if (auto s = txn->Commit(); !s.ok()) return Context(store_dir, s.error());
  std::cout << "imported " << rows->size() << " devices of " << manufacturer << " from " << path
            << ": " << created << " new, " << updated << " updated, " << unchanged
            << " unchanged, " << kept << " already enrolled\n";
  return std::monostate{};
}

}  // namespace

std::vector<CommandSpec> SiteCommands() {
  return {
      {.path = "site init",
       .summary = "create a site: CA, broker/gateway/admin certificates, policy, store, mosquitto.conf",
       .description =
           "Creates the site directory DIR: site-ca.pem/.key (the site CA), broker.pem/.key (TLS\n"
           "server certificate; SAN: every --host, localhost, 127.0.0.1), gateway.pem/.key\n"
           "(CN edgetrust-gateway), admin.pem/.key (CN ops-admin), trust.pem (what mosquitto\n"
           "trusts: the site CA plus every manufacturer CA added later), policy.yaml (a starter\n"
           "policy), mosquitto.conf (TLS listener and plugin lines) and an empty store/.\n"
           "Private keys are 0600; run as root, broker.key and store/ are handed to the\n"
           "`mosquitto` user the broker drops to. An existing store/ is kept, never wiped.\n"
           "With --force every file is replaced: a new site CA invalidates every certificate\n"
           "the old one issued, and manufacturers must be added again.",
       .options = {{"dir", "DIR", "site directory to create", true},
                   {"site", "ID", "site id (letters, digits, '.', '_', '-')", true},
                   {"host", "NAME", "extra broker host name or IP address for the certificate",
                    false, true},
                   {"port", "PORT", "TLS listener port (default 8883)", false, false,
                    IntRange{1, 65535}},
                   {"plugin", "PATH",
                    "mosquitto_edgetrust.so (default: beside this program, else the installed one)"},
                   {"cert-days", "N",
                    "validity of the broker, gateway and admin certificates (default 825; the "
                    "site CA gets 3650)",
                    false, false, IntRange{1, kSiteCaDays}},
                   {"force", "", "overwrite existing files"}},
       .run = SiteInit},
      {.path = "site add-manufacturer",
       .summary = "trust a manufacturer CA: copy it, add it to policy.yaml, trust.pem and trust.d",
       .description =
           "Copies the manufacturer's CA certificate to DIR/manufacturer-NAME.pem, adds it under\n"
           "trust.manufacturers in DIR/policy.yaml and rebuilds DIR/trust.pem and DIR/trust.d\n"
           "(site CA + every manufacturer CA; trust.d is the hashed directory mosquitto.conf\n"
           "names as capath). Refuses a certificate that is not a CA, and a name already\n"
           "trusted unless --force (which replaces that manufacturer's CA). Afterwards send\n"
           "SIGHUP to mosquitto and to the gateway: no restart, no session dropped.",
       .options = {{"dir", "DIR", "site directory (made by site init)", true},
                   {"name", "NAME", "manufacturer name, as in birth certificates' O", true},
                   {"ca", "FILE", "the manufacturer's CA certificate (PEM or DER)", true},
                   {"force", "", "replace the CA of a manufacturer already trusted"}},
       .run = SiteAddManufacturer},
      {.path = "site import-manifest",
       .summary = "import a factory manifest.csv into the store (devices become `manufactured`)",
       .description =
           "Reads manifest.csv (header id,serial,sha256,model; hex serial and SHA-256 of each\n"
           "birth certificate) and, in one transaction, records every device as `manufactured`\n"
           "with its allowlist entry. Devices already enrolled keep their state. A malformed\n"
           "row fails the import with its line number and nothing is imported.",
       .options = {{"store", "DIR", "store directory (e.g. SITE/store)", true},
                   {"manifest", "FILE", "manifest.csv written by factory provision", true},
                   {"manufacturer", "NAME", "manufacturer the devices come from", true}},
       .run = SiteImportManifest},
  };
}

}  // namespace edgetrust::tools
