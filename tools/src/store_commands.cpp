// edgetrust revoke | claim | device list | device show: offline commands on the store.
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/storage/tables.h"
#include "files.h"
#include "pki_output.h"

namespace edgetrust::tools {

namespace {

constexpr char kActor[] = "cli";

Error Context(const std::string& what, const Error& e) {
  return MakeError(e.code, what + ": " + e.message);
}

Result<storage::Store> OpenStore(const std::string& dir, bool read_only) {
  if (!FileExists(dir)) {
    return MakeError(ErrorCode::kNotFound,
                     dir + ": no store here (it is made by edgetrust site init)");
  }
  auto store = storage::Store::Open({.path = dir, .read_only = read_only});
  if (!store.ok()) return Context(dir, store.error());
  return store;
}

CommandOutcome Revoke(const ParsedArgs& args) {
  const std::string store_dir = AbsolutePath(args.Get("store"));
  const std::string reason = args.Get("reason", "revoked by operator");
  const bool by_device = args.Has("device");
  const bool by_fingerprint = args.Has("fingerprint");
  if (by_device == by_fingerprint) return UsageError{"give exactly one of --device or --fingerprint"};
  if (args.Has("all") && !by_device) return UsageError{"--all goes with --device"};
  std::optional<Bytes> fingerprint;
  if (by_fingerprint) {
    fingerprint = HexDecode(args.Get("fingerprint"));
    if (!fingerprint || fingerprint->size() != 32) {
      return UsageError{"--fingerprint must be a SHA-256 in hex (64 digits, ':' allowed)"};
    }
  }
  const std::string device = args.Get("device");
  if (by_device && !IsValidDeviceId(device)) return UsageError{"invalid device id '" + device + "'"};

  auto store = OpenStore(store_dir, false);
  if (!store.ok()) return store.error();
  auto txn = store->BeginWrite();
  if (!txn.ok()) return Context(store_dir, txn.error());

  if (by_fingerprint) {
    auto known = storage::FindCertificate(*txn, *fingerprint);
    if (!known.ok()) return Context(store_dir, known.error());
    auto seq = storage::RevokeCertificate(*txn, *fingerprint, reason, kActor);
    if (!seq.ok()) return Context("revoke", seq.error());
    if (auto s = txn->Commit(); !s.ok()) return Context(store_dir, s.error());
    std::cout << "revoked certificate " << HexEncode(*fingerprint);
    if (*known) {
      std::cout << " (" << storage::CertificateKindName((*known)->kind) << " of "
                << ((*known)->device_id.empty() ? "-" : (*known)->device_id) << ")";
    } else {
      std::cout << " (not known to the store: revoked by fingerprint only)";
    }
    std::cout << ", log seq " << *seq << "\n";
    return std::monostate{};
  }

  auto record = storage::FindDevice(*txn, device);
  if (!record.ok()) return Context(store_dir, record.error());
  if (!*record) return MakeError(ErrorCode::kNotFound, "device " + device + ": not in the store");
  const bool all = args.Has("all");
  const storage::DeviceState new_state =
      all ? storage::DeviceState::kCompromised : (*record)->state;
  auto revoked = storage::RevokeDevice(
      *txn, device, reason, kActor,
      all ? storage::RevokeScope::kAllIncludingBirth : storage::RevokeScope::kOperationalOnly,
      new_state);
  if (!revoked.ok()) return Context("device " + device, revoked.error());
  std::vector<std::string> kinds;
  for (const auto& fp : *revoked) {
    auto known = storage::FindCertificate(*txn, fp);
    kinds.emplace_back(known.ok() && *known ? storage::CertificateKindName((*known)->kind) : "");
  }
  if (auto s = txn->Commit(); !s.ok()) return Context(store_dir, s.error());
  std::cout << "revoked " << revoked->size() << " certificate" << (revoked->size() == 1 ? "" : "s")
            << " of device " << device << (all ? " (all, including birth)" : " (operational)")
            << "; state " << storage::DeviceStateName(new_state) << "\n";
  bool cloud = false;
  for (size_t i = 0; i < revoked->size(); ++i) {
    std::cout << "  " << HexEncode((*revoked)[i]) << (kinds[i].empty() ? "" : "  " + kinds[i]) << "\n";
    cloud = cloud || kinds[i] == "cloud";
  }
  if (cloud) {
    std::cout << "the gateway destroys the keys of its cloud certificates; the cloud still trusts them\n"
                 "until you revoke them there as well (in AWS IoT: update-certificate --new-status REVOKED)\n";
  }
  return std::monostate{};
}

CommandOutcome Claim(const ParsedArgs& args) {
  const std::string store_dir = AbsolutePath(args.Get("store"));
  const std::string device = args.Get("device");
  const std::string code = args.Get("code");
  if (!IsValidDeviceId(device)) return UsageError{"invalid device id '" + device + "'"};
  if (code.empty()) return UsageError{"--code must not be empty"};
  auto store = OpenStore(store_dir, false);
  if (!store.ok()) return store.error();
  auto txn = store->BeginWrite();
  if (!txn.ok()) return Context(store_dir, txn.error());
  if (auto s = storage::RegisterClaim(*txn, device, code, kActor); !s.ok()) {
    return Context("device " + device, s.error());
  }
  if (auto s = txn->Commit(); !s.ok()) return Context(store_dir, s.error());
  std::cout << "claim code registered for " << device << " (stored as its SHA-256)\n";
  return std::monostate{};
}

std::string Short(const Bytes& fp) { return fp.empty() ? "-" : ShortFingerprint(fp); }

CommandOutcome DeviceList(const ParsedArgs& args) {
  const std::string store_dir = AbsolutePath(args.Get("store"));
  std::optional<storage::DeviceState> only;
  if (args.Has("state")) {
    auto s = storage::ParseDeviceState(args.Get("state"));
    if (!s.ok()) return UsageError{"unknown --state '" + args.Get("state") + "'"};
    only = *s;
  }
  auto store = OpenStore(store_dir, true);
  if (!store.ok()) return store.error();
  auto txn = store->BeginRead();
  if (!txn.ok()) return Context(store_dir, txn.error());
  std::cout << std::left << std::setw(24) << "ID" << std::setw(18) << "STATE" << std::setw(14)
            << "MANUFACTURER" << std::setw(14) << "MODEL" << std::setw(14) << "GROUP"
            << std::setw(18) << "OPERATIONAL" << "EXPIRES\n";
  std::string after;
  size_t shown = 0;
  for (;;) {
    auto page = storage::ListDevices(*txn, after, 512);
    if (!page.ok()) return Context(store_dir, page.error());
    for (const auto& d : *page) {
      if (only && d.state != *only) continue;
      ++shown;
      std::cout << std::setw(24) << d.id << std::setw(18) << storage::DeviceStateName(d.state)
                << std::setw(14) << (d.manufacturer.empty() ? "-" : d.manufacturer)
                << std::setw(14) << (d.model.empty() ? "-" : d.model) << std::setw(14)
                << (d.group.empty() ? "-" : d.group) << std::setw(18)
                << Short(d.operational_fingerprint)
                << (d.operational_not_after > 0 ? FormatDate(d.operational_not_after) : "-")
                << "\n";
    }
    if (page->size() < 512) break;
    after = page->back().id;
  }
  std::cout << shown << " device" << (shown == 1 ? "" : "s") << "\n";
  return std::monostate{};
}

CommandOutcome DeviceShow(const ParsedArgs& args) {
  const std::string store_dir = AbsolutePath(args.Get("store"));
  const std::string id = args.Get("device");
  if (!IsValidDeviceId(id)) return UsageError{"invalid device id '" + id + "'"};
  auto store = OpenStore(store_dir, true);
  if (!store.ok()) return store.error();
  auto txn = store->BeginRead();
  if (!txn.ok()) return Context(store_dir, txn.error());
  auto device = storage::FindDevice(*txn, id);
  if (!device.ok()) return Context(store_dir, device.error());
  if (!*device) return MakeError(ErrorCode::kNotFound, "device " + id + ": not in the store");
  const storage::DeviceRecord& d = **device;
  auto field = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::cout << "id            " << d.id << "\n"
            << "state         " << storage::DeviceStateName(d.state) << "\n"
            << "manufacturer  " << field(d.manufacturer) << "\n"
            << "model         " << field(d.model) << "\n"
            << "group         " << field(d.group) << "\n"
            << "firmware      " << field(d.fw) << "\n"
            << "birth         " << (d.birth_fingerprint.empty() ? "-" : HexEncode(d.birth_fingerprint))
            << "\n"
            << "operational   "
            << (d.operational_fingerprint.empty() ? "-" : HexEncode(d.operational_fingerprint))
            << (d.operational_not_after > 0 ? "  until " + FormatDate(d.operational_not_after) : "")
            << (d.operational_unconfirmed ? "  (unconfirmed: not seen in use yet)" : "")
            << "\n"
            << "claim code    " << (d.claim_code_sha256.empty() ? "none" : "registered") << "\n"
            << "created       " << (d.created_at > 0 ? FormatDate(d.created_at) : "-") << "\n"
            << "updated       " << (d.updated_at > 0 ? FormatDate(d.updated_at) : "-") << "\n";
  auto certs = storage::ListDeviceCertificates(*txn, id);
  if (!certs.ok()) return Context(store_dir, certs.error());
  std::cout << "certificates  " << certs->size() << "\n";
  for (const auto& c : *certs) {
    auto revoked = storage::IsFingerprintRevoked(*txn, c.fingerprint);
    bool is_revoked = revoked.ok() && *revoked;
    std::cout << "  " << std::left << std::setw(12) << storage::CertificateKindName(c.kind)
              << Short(c.fingerprint) << "  serial " << HexEncode(c.serial) << "  "
              << FormatDate(c.not_before) << " .. " << FormatDate(c.not_after)
              << (is_revoked ? "  REVOKED" : "") << "\n";
  }
  return std::monostate{};
}

}  // namespace

std::vector<CommandSpec> StoreCommands() {
  return {
      {.path = "revoke",
       .summary = "revoke a device's certificates or one certificate, straight into the store",
       .description =
           "Writes the revocation and its log entry into the store in one transaction; the\n"
           "broker plugin picks it up from the revocation log on its next tick and disconnects\n"
           "the certificate. --device ID revokes every operational certificate of the device and\n"
           "leaves its state as it is (it may enroll again with its birth certificate if the\n"
           "policy allows). --device ID --all revokes every certificate, the birth certificate\n"
           "too, and sets the state to `compromised`: nothing of the device connects again.\n"
           "--fingerprint revokes one certificate by the SHA-256 of its DER (known to the store\n"
           "or not).",
       .options = {{"store", "DIR", "store directory (e.g. SITE/store)", true},
                   {"device", "ID", "device whose certificates to revoke"},
                   {"all", "", "with --device: every certificate incl. birth; state compromised"},
                   {"fingerprint", "HEX", "SHA-256 of the certificate's DER"},
                   {"reason", "TEXT", "recorded in the revocation log and audit"}},
       .run = Revoke},
      {.path = "claim",
       .summary = "register a device's claim code (for groups with enrollment mode claim)",
       .description =
           "Stores SHA-256(CODE) on the device (creating a `manufactured` record when it is\n"
           "unknown). A group with `enrollment: {mode: claim}` then enrolls the device only when\n"
           "its enroll request carries this code.",
       .options = {{"store", "DIR", "store directory (e.g. SITE/store)", true},
                   {"device", "ID", "device id", true},
                   {"code", "CODE", "the claim code (e.g. printed on the device's label)", true}},
       .run = Claim},
      {.path = "device list",
       .summary = "list the devices in the store",
       .description = "One line per device: state, manufacturer, model, group, operational\n"
                      "certificate (first 8 bytes of its SHA-256) and its expiry. Read-only.",
       .options = {{"store", "DIR", "store directory (e.g. SITE/store)", true},
                   {"state", "STATE",
                    "only devices in this state (manufactured, active, transfer_pending, retired, "
                    "compromised)"}},
       .run = DeviceList},
      {.path = "device show",
       .summary = "show one device and its certificates",
       .description = "Every field of the device record and each of its certificates with its\n"
                      "validity and whether it is revoked. Read-only.",
       .options = {{"store", "DIR", "store directory (e.g. SITE/store)", true},
                   {"device", "ID", "device id", true}},
       .run = DeviceShow},
  };
}

}  // namespace edgetrust::tools
