// edgetrust factory init | provision | sign-csr
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "commands.h"
#include "edgetrust/pki/csr.h"
#include "edgetrust/pki/pkcs11.h"
#include "factory.h"
#include "files.h"
#include "pki_output.h"

namespace edgetrust::tools {

namespace {

constexpr int kFactoryCaDays = 25 * 365 + 6;   // outlives every birth certificate it signs
constexpr int kBirthCertDays = 20 * 365 + 5;   // a device's whole service life
constexpr char kDefaultKeyLabel[] = "edgetrust-factory-ca";
constexpr int kMaxSequence = 999999;

Error Context(const std::string& what, const Error& e) {
  return MakeError(e.code, what + ": " + e.message);
}

std::optional<UsageError> CheckPinOptions(const ParsedArgs& args) {
  if (args.Has("pin") && args.Has("pin-env")) {
    return UsageError{"give --pin or --pin-env, not both"};
  }
  return std::nullopt;
}

CommandOutcome FactoryInit(const ParsedArgs& args) {
  const std::string dir = AbsolutePath(args.Get("dir"));
  const std::string name = args.Get("manufacturer");
  const bool force = args.Has("force");
  const bool token = args.Has("pkcs11-module") || args.Has("token");
  if (!IsValidName(name)) {
    return UsageError{"invalid manufacturer name '" + name +
                      "' (letters, digits, '.', '_', '-'; up to 64)"};
  }
  if (auto u = CheckPinOptions(args)) return *u;
  if (token && !(args.Has("pkcs11-module") && args.Has("token"))) {
    return UsageError{"a PKCS#11 key needs both --pkcs11-module and --token"};
  }
  if (token && !args.Has("pin") && !args.Has("pin-env")) {
    return UsageError{"a PKCS#11 key needs --pin or --pin-env VAR"};
  }
  if (!token && (args.Has("pin") || args.Has("pin-env") || args.Has("key-label"))) {
    return UsageError{"--pin, --pin-env and --key-label only apply with --pkcs11-module"};
  }

  FactoryConfig config;
  config.manufacturer = name;
  std::vector<std::string> outputs{dir + "/ca.pem", dir + "/factory.yaml"};
  if (token) {
    config.key_file.clear();
    config.pkcs11_module = AbsolutePath(args.Get("pkcs11-module"));
    config.token_label = args.Get("token");
    config.key_label = args.Get("key-label", kDefaultKeyLabel);
    config.pin_env = args.Get("pin-env");
  } else {
    outputs.push_back(dir + "/ca.key");
  }
  if (auto s = RefuseExisting(outputs, force); !s.ok()) return s.error();
  if (auto s = MakeDirectories(dir, 0755); !s.ok()) return s.error();

  std::optional<pki::PrivateKey> key;
  if (token) {
    auto pin = ResolvePin(args.Get("pin"), args.Get("pin-env"), "");
    if (!pin.ok()) return pin.error();
    auto t = pki::Pkcs11Token::Open(config.pkcs11_module, config.token_label, *pin);
    if (!t.ok()) return Context("token " + config.token_label, t.error());
    auto generated = t->GenerateKey(config.key_label);
    if (!generated.ok() && generated.error().code == ErrorCode::kAlreadyExists && force) {
      generated = t->FindKey(config.key_label);
    }
    if (!generated.ok()) {
      if (generated.error().code == ErrorCode::kAlreadyExists) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "token " + config.token_label + " already holds a key labelled " +
                             config.key_label + " (choose --key-label, or --force to reuse it)");
      }
      return Context("token " + config.token_label, generated.error());
    }
    key.emplace(std::move(generated).value());
  } else {
    auto generated = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
    if (!generated.ok()) return Context("CA key", generated.error());
    key.emplace(std::move(generated).value());
  }
  auto ca = pki::CreateSelfSignedCa(*key, {.cn = name + " manufacturer CA", .o = name},
                                    kFactoryCaDays);
  if (!ca.ok()) return Context("manufacturer CA", ca.error());
  if (!token) {
    if (auto s = WriteKeyFile(dir + "/ca.key", *key, force); !s.ok()) return s.error();
  }
  if (auto s = WriteCertFile(dir + "/ca.pem", *ca, force); !s.ok()) return s.error();
  if (auto s = WriteFileAtomic(dir + "/factory.yaml", FactoryConfigYaml(config), kPublicFileMode,
                               force);
      !s.ok()) {
    return s.error();
  }
  std::cout << "factory for " << name << " initialised in " << dir << "\n"
            << "  CA   " << dir << "/ca.pem  (" << ca->subject.ToString() << ", sha256 "
            << ShortFingerprint(ca->fingerprint) << "…, until " << FormatDate(ca->not_after)
            << ")\n";
  if (token) {
    std::cout << "  key  in token " << config.token_label << " (" << config.pkcs11_module
              << "), label " << config.key_label << "\n";
  } else {
    std::cout << "  key  " << dir << "/ca.key (0600)\n";
  }
  std::cout << "give ca.pem to each site: edgetrust site add-manufacturer --dir SITE --name "
            << name << " --ca " << dir << "/ca.pem\n";
  return std::monostate{};
}

pki::DistinguishedName BirthSubject(const std::string& id, const FactorySigner& f,
                                    const std::string& model) {
  return {.cn = id, .o = f.config.manufacturer, .ou = model};
}

Result<pki::Certificate> IssueBirth(const FactorySigner& f, const pki::DistinguishedName& subject,
                                    Bytes public_key_der, int days) {
  pki::IssueRequest req;
  req.subject = subject;
  req.public_key_der = std::move(public_key_der);
  int64_t now = UnixNow();
  req.not_before = now - kBackdateSeconds;
  req.not_after = now + days * kSecondsPerDay;
  req.extended_usage = pki::ExtendedUsage::kClientAuth;
  return pki::IssueCertificate(f.ca, f.key, req);
}

std::string ManifestRow(const pki::Certificate& cert, const std::string& model) {
  return cert.subject.cn + "," + HexEncode(cert.serial) + "," + HexEncode(cert.fingerprint) + "," +
         model + "\n";
}

// Appends rows as devices are made, so a crash mid-run leaves a manifest that matches the
// devices on disk.
class ManifestWriter {
 public:
  static Result<ManifestWriter> Open(const std::string& path) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return MakeError(ErrorCode::kIo, path + ": " + std::strerror(errno));
    struct stat st{};
    fstat(fd, &st);
    ManifestWriter w(fd, path);
    if (st.st_size == 0) ET_RETURN_IF_ERROR(w.Append("id,serial,sha256,model\n"));
    return w;
  }
  ManifestWriter(ManifestWriter&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) {
    o.fd_ = -1;
  }
  ManifestWriter(const ManifestWriter&) = delete;
  ManifestWriter& operator=(const ManifestWriter&) = delete;
  ManifestWriter& operator=(ManifestWriter&&) = delete;
  ~ManifestWriter() {
    if (fd_ >= 0) close(fd_);
  }

  Status Append(const std::string& text) {
    if (write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return MakeError(ErrorCode::kIo, path_ + ": " + std::strerror(errno));
    }
    return OkStatus();
  }
  Status Sync() {
    if (fsync(fd_) != 0) return MakeError(ErrorCode::kIo, path_ + ": " + std::strerror(errno));
    return OkStatus();
  }

 private:
  ManifestWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

class ProgressBar {
 public:
  explicit ProgressBar(int64_t total) : total_(total), enabled_(isatty(STDERR_FILENO) == 1) {}
  void Update(int64_t done) {
    if (!enabled_) return;
    int width = 40;
    int filled = static_cast<int>(done * width / std::max<int64_t>(total_, 1));
    std::fprintf(stderr, "\r[%.*s%*s] %lld/%lld", filled,
                 "########################################", width - filled, "",
                 static_cast<long long>(done), static_cast<long long>(total_));
    std::fflush(stderr);
  }
  void Finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  int64_t total_;
  bool enabled_;
};

CommandOutcome FactoryProvision(const ParsedArgs& args) {
  const std::string factory_dir = AbsolutePath(args.Get("factory"));
  const std::string out = AbsolutePath(args.Get("out"));
  const std::string prefix = args.Get("prefix");
  const std::string model = args.Get("model");
  const std::string firmware = args.Get("firmware");
  const int64_t count = args.GetInt("count", 1);
  const int64_t start = args.GetInt("start", 1);
  if (!IsValidDeviceId(prefix + "000000")) {
    return UsageError{"invalid --prefix '" + prefix +
                      "': <prefix><6 digits> must be a device id (letters, digits, '.', '_', '-')"};
  }
  if (!IsValidName(model)) return UsageError{"invalid --model '" + model + "'"};
  if (auto u = CheckPinOptions(args)) return *u;
  if (!firmware.empty() && firmware.find_first_of("\n\r") != std::string::npos) {
    return UsageError{"invalid --firmware"};
  }

  auto factory = OpenFactory(factory_dir, args.Get("pin"), args.Get("pin-env"));
  if (!factory.ok()) return factory.error();
  if (auto s = MakeDirectories(out, 0755); !s.ok()) return s.error();
  auto manifest = ManifestWriter::Open(out + "/manifest.csv");
  if (!manifest.ok()) return manifest.error();

  ProgressBar progress(count);
  std::vector<std::string> made;
  int64_t seq = start;
  int64_t skipped = 0;
  Status failure;
  while (static_cast<int64_t>(made.size()) < count) {
    if (seq > kMaxSequence) {
      failure = MakeError(ErrorCode::kResourceExhausted,
                          "device sequence exhausted at " + prefix + "999999");
      break;
    }
    char digits[24];
    std::snprintf(digits, sizeof digits, "%06lld", static_cast<long long>(seq++));
    const std::string id = prefix + digits;
    const std::string dir = out + "/" + id;
    if (FileExists(dir)) {
      ++skipped;
      continue;
    }
    auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
    if (!key.ok()) {
      failure = Context(id, key.error());
      break;
    }
    auto spki = key->PublicKeyDer();
    if (!spki.ok()) {
      failure = Context(id, spki.error());
      break;
    }
    auto cert = IssueBirth(*factory, BirthSubject(id, *factory, model), std::move(*spki),
                           kBirthCertDays);
    if (!cert.ok()) {
      failure = Context(id + ": birth certificate", cert.error());
      break;
    }
    if (mkdir(dir.c_str(), 0755) != 0) {
      failure = MakeError(ErrorCode::kIo, dir + ": " + std::strerror(errno));
      break;
    }
    // One syncfs at the end instead of an fsync per file: 20x faster for big batches, and a
    // crash before it loses only devices nobody has been given yet.
    failure = WriteKeyFile(dir + "/birth.key", *key, false, std::nullopt, Durability::kDeferred);
    if (failure.ok()) {
      failure = WriteCertFile(dir + "/birth.pem", *cert, false, Durability::kDeferred);
    }
    if (failure.ok() && !firmware.empty()) {
      failure = WriteFileAtomic(dir + "/firmware", firmware + "\n", kPublicFileMode, false,
                                Durability::kDeferred);
    }
    if (failure.ok()) failure = manifest->Append(ManifestRow(*cert, model));
    if (!failure.ok()) break;
    made.push_back(id);
    progress.Update(static_cast<int64_t>(made.size()));
  }
  progress.Finish();
  if (auto s = manifest->Sync(); failure.ok() && !s.ok()) failure = s;
  if (auto s = SyncFilesystem(out); failure.ok() && !s.ok()) failure = s;
  if (!made.empty()) {
    std::cout << "provisioned " << made.size() << " device" << (made.size() == 1 ? "" : "s")
              << " of " << factory->config.manufacturer << " (" << made.front()
              << (made.size() > 1 ? " … " + made.back() : "") << ") in " << out;
    if (skipped > 0) std::cout << ", skipped " << skipped << " existing";
    std::cout << "\nmanifest: " << out << "/manifest.csv\n";
  }
  if (!failure.ok()) return failure.error();
  return std::monostate{};
}

Result<pki::Csr> LoadCsr(const std::string& path) {
  ET_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  auto csr = text.find("-----BEGIN") != std::string::npos ? pki::ParseCsrPem(text)
                                                           : pki::ParseCsrDer(AsBytes(text));
  if (!csr.ok()) return Context(path, csr.error());
  return csr;
}

CommandOutcome FactorySignCsr(const ParsedArgs& args) {
  const std::string factory_dir = AbsolutePath(args.Get("factory"));
  const std::string out = args.Get("out");
  const int days = static_cast<int>(args.GetInt("days", kBirthCertDays));
  if (auto u = CheckPinOptions(args)) return *u;
  if (auto s = RefuseExisting({out}, args.Has("force")); !s.ok()) return s.error();
  auto csr = LoadCsr(args.Get("csr"));
  if (!csr.ok()) return csr.error();
  if (!IsValidDeviceId(csr->subject.cn)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     args.Get("csr") + ": CN '" + csr->subject.cn +
                         "' is not a valid device id (letters, digits, '.', '_', '-'; up to 64)");
  }
  std::string model = args.Get("model", csr->subject.ou);
  if (model.empty()) {
    return UsageError{"the CSR names no model (OU): give --model"};
  }
  if (!IsValidName(model)) return UsageError{"invalid model '" + model + "'"};
  auto factory = OpenFactory(factory_dir, args.Get("pin"), args.Get("pin-env"));
  if (!factory.ok()) return factory.error();
  auto cert = IssueBirth(*factory, BirthSubject(csr->subject.cn, *factory, model),
                         csr->public_key_der, days);
  if (!cert.ok()) return Context("birth certificate", cert.error());
  if (auto s = WriteCertFile(out, *cert, args.Has("force")); !s.ok()) return s.error();
  if (args.Has("manifest")) {
    auto manifest = ManifestWriter::Open(args.Get("manifest"));
    if (!manifest.ok()) return manifest.error();
    if (auto s = manifest->Append(ManifestRow(*cert, model)); !s.ok()) return s.error();
    if (auto s = manifest->Sync(); !s.ok()) return s.error();
  }
  std::cout << "issued birth certificate " << out << " for " << cert->subject.ToString()
            << " (serial " << HexEncode(cert->serial) << ", sha256 " << HexEncode(cert->fingerprint)
            << ", until " << FormatDate(cert->not_after) << ")\n";
  return std::monostate{};
}

const OptionSpec kPinOption{"pin", "PIN",
                            "token PIN (visible in the process list: prefer --pin-env)"};
const OptionSpec kPinEnvOption{"pin-env", "VAR", "read the token PIN from environment variable VAR"};

}  // namespace

std::vector<CommandSpec> FactoryCommands() {
  return {
      {.path = "factory init",
       .summary = "create a manufacturer CA (key in a file or in a PKCS#11 token)",
       .description =
           "Creates DIR/ca.pem, a self-signed manufacturer CA (ECDSA P-256, 25 years) that signs\n"
           "birth certificates, and DIR/factory.yaml. Without PKCS#11 options the key is\n"
           "DIR/ca.key (0600). With --pkcs11-module and --token the key pair is generated inside\n"
           "the token (non-extractable), no ca.key is written, and factory.yaml records the\n"
           "module, token label and key label. The PIN is never written: factory.yaml keeps\n"
           "only the name given with --pin-env, so later commands read the same variable.",
       .options = {{"dir", "DIR", "factory directory to create", true},
                   {"manufacturer", "NAME", "manufacturer name (the O of birth certificates)", true},
                   {"pkcs11-module", "LIB", "PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so"},
                   {"token", "LABEL", "token label"},
                   kPinOption,
                   kPinEnvOption,
                   {"key-label", "L", std::string("key label in the token (default ") +
                                          kDefaultKeyLabel + ")"},
                   {"force", "", "overwrite existing files (and reuse an existing token key)"}},
       .run = FactoryInit},
      {.path = "factory provision",
       .summary = "make devices: a new key and a birth certificate each, and manifest.csv",
       .description =
           "Makes COUNT devices with ids <prefix><6-digit sequence> from --start (default 1),\n"
           "skipping ids already present in OUT. Each gets OUT/<id>/birth.key (new P-256 key,\n"
           "0600) and OUT/<id>/birth.pem (CN=<id>, O=<manufacturer>, OU=<model>, clientAuth,\n"
           "20 years), and a row in OUT/manifest.csv (id,serial,sha256,model; hex) for\n"
           "`edgetrust site import-manifest`. --firmware writes OUT/<id>/firmware (the initial\n"
           "version). With a PKCS#11 factory every signature is made by the token.",
       .options = {{"factory", "DIR", "factory directory (made by factory init)", true},
                   {"count", "N", "number of devices to make", true, false, IntRange{1, 1000000}},
                   {"prefix", "P", "device id prefix, e.g. acme-", true},
                   {"model", "M", "device model (the OU of birth certificates)", true},
                   {"out", "DIR", "output directory", true},
                   {"start", "K", "first sequence number (default 1)", false, false,
                    IntRange{0, kMaxSequence}},
                   {"firmware", "V", "initial firmware version, written to OUT/<id>/firmware"},
                   kPinOption,
                   kPinEnvOption},
       .run = FactoryProvision},
      {.path = "factory sign-csr",
       .summary = "issue a birth certificate for a CSR made by a device's secure element",
       .description =
           "For devices whose secure element makes its own key: verifies the CSR's signature,\n"
           "requires its CN to be a valid device id, and issues a birth certificate\n"
           "(CN=<id>, O=<manufacturer>, OU=<model>, clientAuth) to FILE. The model is --model,\n"
           "else the CSR's OU. --manifest appends the device's row to a manifest.csv.",
       .options = {{"factory", "DIR", "factory directory (made by factory init)", true},
                   {"csr", "FILE", "PKCS#10 request (PEM or DER)", true},
                   {"out", "FILE", "birth certificate to write (PEM)", true},
                   {"model", "M", "device model (default: the CSR's OU)"},
                   {"days", "N", "validity in days (default 7305, 20 years)", false, false,
                    IntRange{1, kFactoryCaDays}},
                   {"manifest", "FILE", "append the device to this manifest.csv"},
                   kPinOption,
                   kPinEnvOption,
                   {"force", "", "overwrite FILE"}},
       .run = FactorySignCsr},
  };
}

}  // namespace edgetrust::tools
