#include "cloud_identity.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "certificate_record.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::gateway {
namespace {

constexpr int64_t kBackdateSeconds = 300;  // tolerate cloud clocks slightly behind ours
constexpr std::string_view kActor = "gateway";

// Upstream names become a directory: one plain path component.
bool IsPlainName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

Status MakePrivateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return OkStatus();
  return MakeError(ErrorCode::kIo, "cannot create " + path + ": " + std::strerror(errno));
}

Result<storage::DeviceRecord> ActiveDevice(const storage::Txn& txn, const std::string& id) {
  ET_ASSIGN_OR_RETURN(auto device, storage::FindDevice(txn, id));
  if (!device) return MakeError(ErrorCode::kFailedPrecondition, "device " + id + " is unknown");
  if (device->state != storage::DeviceState::kActive) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "device " + id + " is " + std::string(storage::DeviceStateName(device->state)) +
                         ", not active");
  }
  return std::move(device).value();
}

// A kept pair that may be re-used as far as its files tell (the store's word is asked on the
// loop): nullopt when it must be replaced. Runs on a worker thread.
std::optional<pki::Certificate> KeptPair(const pki::Certificate& site_ca, const std::string& id,
                                         const forwarding::CloudIdentity& files,
                                         int64_t renew_before_seconds, int64_t now) {
  auto cert = pki::LoadCertificateFile(files.cert_file);
  if (!cert.ok()) return std::nullopt;
  if (cert->subject.cn != id) return std::nullopt;
  if (!pki::VerifyIssuedBy(*cert, site_ca).ok()) return std::nullopt;  // the site CA changed
  if (cert->not_after - renew_before_seconds <= now) return std::nullopt;
  auto key = pki::LoadPrivateKeyFile(files.key_file);
  if (!key.ok()) return std::nullopt;
  auto pub = key->PublicKeyDer();
  if (!pub.ok() || *pub != cert->public_key_der) return std::nullopt;
  struct stat st {};
  if (stat(files.key_file.c_str(), &st) != 0 || (st.st_mode & 077) != 0) return std::nullopt;
  return std::move(cert).value();
}

// Where the pair of `device_id` for `upstream` is kept, below the top directory `dir`.
forwarding::CloudIdentity FilesOf(const std::string& dir, std::string_view upstream,
                                  const std::string& device_id) {
  const std::string stem = dir + "/" + std::string(upstream) + "/" + device_id;
  forwarding::CloudIdentity files;
  files.cert_file = stem + ".pem";
  files.key_file = stem + ".key";
  return files;
}

// Whether the store still vouches for a kept certificate: recorded as this device's cloud
// certificate and not revoked.
Result<bool> StillRecorded(const storage::Txn& txn, const pki::Certificate& cert, const std::string& id) {
  const Bytes fp = ToBytes(cert.fingerprint);
  ET_ASSIGN_OR_RETURN(bool recorded,
                      storage::IsCertificateOf(txn, fp, storage::CertificateKind::kCloud, id));
  if (!recorded) return false;
  ET_ASSIGN_OR_RETURN(bool fp_revoked, storage::IsFingerprintRevoked(txn, fp));
  if (fp_revoked) return false;
  ET_ASSIGN_OR_RETURN(bool serial_revoked,
                      storage::IsSerialRevoked(txn, ToBytes(cert.issuer_id), cert.serial));
  return !serial_revoked;
}

}  // namespace

struct CloudIdentities::Job {
  uv_work_t req{};
  CloudIdentities* owner = nullptr;  // nullptr once the owner is gone: the job only frees itself
  std::string key;                   // "<upstream>/<device>"
  std::string dir;                   // the top directory (CloudIdentityOptions::dir)
  std::string upstream;
  std::string device_id;
  forwarding::CloudIdentity files;
  // Read-only on the worker. The signing key is the worker's own copy (from DER): a wolfCrypt key
  // object is not shared between threads, and the loop signs enrollments with the original.
  std::shared_ptr<const SiteAuthority> authority;
  Bytes site_key_der;
  int64_t renew_before_seconds = 0;
  int64_t cert_days = 0;
  int64_t now = 0;
  bool force_issue = false;
  bool last = false;  // nothing queued behind it: the worker thread frees its ECC cache after
  // The worker's outcome: an error, a kept pair to confirm with the store, or a new certificate
  // whose files are written.
  Status error;
  std::optional<pki::Certificate> kept;
  std::optional<pki::Certificate> issued;

  // On the worker thread: nothing here touches the store or the loop.
  void Work() {
    if (!force_issue) kept = KeptPair(authority->site_ca, device_id, files, renew_before_seconds, now);
    if (!kept) {
      auto cert = IssueNew();
      if (cert.ok()) {
        issued = std::move(cert).value();
      } else {
        error = cert.error();
      }
    }
    // A pool thread may not do ECC again for a long time: ~1 MiB per cached point otherwise.
    if (last) pki::ReleaseThreadCaches();
  }

  Result<pki::Certificate> IssueNew() {
    ET_ASSIGN_OR_RETURN(pki::PrivateKey site_key, pki::PrivateKey::FromDer(site_key_der));
    ET_ASSIGN_OR_RETURN(pki::PrivateKey key, pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256));
    pki::IssueRequest ir;
    ir.subject.cn = device_id;
    ir.subject.o = authority->policy.site;
    ir.subject.ou = upstream;
    ET_ASSIGN_OR_RETURN(ir.public_key_der, key.PublicKeyDer());
    ir.not_before = now - kBackdateSeconds;
    ir.not_after = now + cert_days * 86400;
    ir.extended_usage = pki::ExtendedUsage::kClientAuth;
    ET_ASSIGN_OR_RETURN(pki::Certificate cert,
                        pki::IssueCertificate(authority->site_ca, site_key, ir));
    // Files first: they count only once the store records the certificate, so a crash in
    // between costs one more issuance, never a kept key without its record.
    ET_RETURN_IF_ERROR(MakePrivateDir(dir));
    ET_RETURN_IF_ERROR(MakePrivateDir(dir + "/" + upstream));
    ET_RETURN_IF_ERROR(pki::WritePrivateKeyFile(files.key_file, key, /*force=*/true));
    ET_RETURN_IF_ERROR(pki::WriteCertificateFile(files.cert_file, pki::CertificateToPem(cert.der),
                                                 /*force=*/true));
    return cert;
  }
};


CloudIdentities::CloudIdentities(uv_loop_t* loop, storage::Store* store, AuthoritySource authority,
                                 CloudIdentityOptions options, std::function<void()> on_settled,
                                 IssuedHook on_issued)
    : loop_(loop),
      store_(store),
      authority_(std::move(authority)),
      options_(std::move(options)),
      on_settled_(std::move(on_settled)),
      on_issued_(std::move(on_issued)) {
  options_.cert_days = std::max(options_.cert_days, 2);
  // A renewal window as long as the validity would reissue on every open.
  options_.renew_before_days =
      std::clamp(options_.renew_before_days, 0, options_.cert_days / 2);
}

CloudIdentities::~CloudIdentities() {
  // A job on a worker cannot be called back; it frees itself when the loop gets it back.
  if (running_ != nullptr) running_->owner = nullptr;
}

Result<forwarding::CloudIdentity> CloudIdentities::Get(std::string_view upstream,
                                                       std::string_view device_id) {
  if (!IsPlainName(upstream)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream name '" + std::string(upstream) + "' cannot name a directory");
  }
  const std::string id(device_id);
  if (!IsValidDeviceId(id)) {
    return MakeError(ErrorCode::kFailedPrecondition, "'" + id + "' is not a device id");
  }
  const std::string key = std::string(upstream) + "/" + id;
  {
    ET_ASSIGN_OR_RETURN(storage::ReadTxn txn, store_->BeginRead());
    if (auto active = ActiveDevice(txn, id); !active.ok()) {
      settled_.erase(key);
      return active.error();
    }
  }
  if (auto it = settled_.find(key); it != settled_.end()) {
    Result<forwarding::CloudIdentity> answer = std::move(it->second.answer);
    settled_.erase(it);
    return answer;
  }
  if (jobs_.count(key) != 0) {
    return MakeError(ErrorCode::kUnavailable, "the cloud certificate of " + id + " is being prepared");
  }
  std::shared_ptr<const SiteAuthority> authority = authority_ ? authority_() : nullptr;
  if (!authority || !authority->site_key) {
    return MakeError(ErrorCode::kInternal, "no site CA to issue cloud certificates with");
  }
  auto job = std::make_unique<Job>();
  job->owner = this;
  job->key = key;
  job->upstream = std::string(upstream);
  job->device_id = id;
  job->dir = options_.dir;
  job->files = FilesOf(options_.dir, upstream, id);
  ET_ASSIGN_OR_RETURN(job->site_key_der, authority->site_key->ToDer());
  job->authority = std::move(authority);
  job->renew_before_seconds = int64_t{options_.renew_before_days} * 86400;
  job->cert_days = options_.cert_days;
  job->now = UnixNow();
  jobs_[key] = job.get();
  queue_.push_back(std::move(job));
  StartNext();
  return MakeError(ErrorCode::kUnavailable, "the cloud certificate of " + id + " is being prepared");
}

void CloudIdentities::StartNext() {
  // One at a time: the loop keeps a core, and the pool stays free for anyone else.
  if (running_ != nullptr || queue_.empty()) return;
  std::unique_ptr<Job> job = std::move(queue_.front());
  queue_.pop_front();
  job->last = queue_.empty();
  job->req.data = job.get();
  const int rc = uv_queue_work(
      loop_, &job->req, [](uv_work_t* req) { static_cast<Job*>(req->data)->Work(); },
      [](uv_work_t* req, int) {
        std::unique_ptr<Job> done(static_cast<Job*>(req->data));
        if (done->owner != nullptr) done->owner->Finished(std::move(done));
      });
  if (rc != 0) {
    Settle(job->key, MakeError(ErrorCode::kInternal,
                               std::string("cannot queue the cloud certificate work: ") + uv_strerror(rc)));
    return;
  }
  running_ = job.release();
}

void CloudIdentities::Finished(std::unique_ptr<Job> job) {
  running_ = nullptr;
  if (!job->error.ok()) {
    Settle(job->key, job->error.error());
  } else if (job->kept) {
    auto confirmed = Confirm(*job);
    if (confirmed.ok() && !*confirmed) {
      // The store no longer vouches for the kept pair: a new one, ahead of the queue.
      job->kept.reset();
      job->force_issue = true;
      queue_.push_front(std::move(job));
    } else if (confirmed.ok()) {
      Settle(job->key, std::move(**confirmed));
    } else {
      Settle(job->key, confirmed.error());
    }
  } else {
    auto recorded = Record(*job);
    if (!recorded.ok()) {
      // Never recorded, never to be used: no key is left behind (a revoked device's least of all).
      unlink(job->files.key_file.c_str());
      unlink(job->files.cert_file.c_str());
    }
    Settle(job->key, std::move(recorded));
  }
  StartNext();
}

Result<std::optional<forwarding::CloudIdentity>> CloudIdentities::Confirm(const Job& job) {
  ET_ASSIGN_OR_RETURN(storage::ReadTxn txn, store_->BeginRead());
  ET_RETURN_IF_ERROR(ActiveDevice(txn, job.device_id));
  ET_ASSIGN_OR_RETURN(bool good, StillRecorded(txn, *job.kept, job.device_id));
  if (!good) return std::optional<forwarding::CloudIdentity>();
  forwarding::CloudIdentity files = job.files;
  files.not_after = job.kept->not_after;
  return std::optional<forwarding::CloudIdentity>(std::move(files));
}

Result<forwarding::CloudIdentity> CloudIdentities::Record(const Job& job) {
  const pki::Certificate& cert = *job.issued;
  ET_ASSIGN_OR_RETURN(storage::WriteTxn txn, store_->BeginWrite());
  // The device may have been revoked (by the CLI) while the worker signed.
  ET_RETURN_IF_ERROR(ActiveDevice(txn, job.device_id));
  ET_RETURN_IF_ERROR(storage::PutCertificate(
      txn, CertificateRecordOf(cert, job.device_id, storage::CertificateKind::kCloud)));
  storage::AuditRecord audit;
  audit.actor = std::string(kActor);
  audit.action = "cloud_cert_issue";
  audit.device_id = job.device_id;
  audit.detail = "upstream=" + job.upstream + " cert=" + HexEncode(cert.fingerprint) +
                 " not_after=" + std::to_string(cert.not_after);
  ET_RETURN_IF_ERROR(storage::AppendAudit(txn, audit));
  ET_RETURN_IF_ERROR(txn.Commit());
  ++issued_;
  if (on_issued_) on_issued_(job.upstream, job.device_id, cert);
  forwarding::CloudIdentity files = job.files;
  files.not_after = cert.not_after;
  return files;
}

Result<std::vector<CloudIdentities::Destroyed>> CloudIdentities::Forget(const std::string& device_id) {
  std::vector<Destroyed> destroyed;
  if (!IsValidDeviceId(device_id)) return destroyed;
  std::erase_if(settled_, [&](const auto& kv) {
    return kv.first.size() > device_id.size() && kv.first.ends_with("/" + device_id);
  });
  DIR* top = opendir(options_.dir.c_str());
  if (top == nullptr) return destroyed;  // nothing was ever issued here
  std::vector<std::string> upstreams;
  while (dirent* e = readdir(top)) {
    if (IsPlainName(e->d_name)) upstreams.emplace_back(e->d_name);
  }
  closedir(top);
  ET_ASSIGN_OR_RETURN(storage::ReadTxn txn, store_->BeginRead());
  const bool active = ActiveDevice(txn, device_id).ok();
  for (const std::string& upstream : upstreams) {
    const forwarding::CloudIdentity files = FilesOf(options_.dir, upstream, device_id);
    auto cert = pki::LoadCertificateFile(files.cert_file);
    if (!cert.ok()) continue;
    if (active) {
      ET_ASSIGN_OR_RETURN(bool good, StillRecorded(txn, *cert, device_id));
      if (good) continue;
    }
    if (unlink(files.key_file.c_str()) != 0 && errno != ENOENT) {
      return MakeError(ErrorCode::kIo, "cannot remove " + files.key_file + ": " + std::strerror(errno));
    }
    unlink(files.cert_file.c_str());
    destroyed.push_back({upstream, ToBytes(cert->fingerprint)});
  }
  return destroyed;
}

void CloudIdentities::Settle(const std::string& key, Result<forwarding::CloudIdentity> answer) {
  jobs_.erase(key);
  const uint64_t now = uv_now(loop_);
  // Answers nobody came back for (the device's messages went elsewhere) do not pile up.
  constexpr uint64_t kForgetAfterMs = 10 * 60 * 1000;
  if (settled_.size() >= 1024) {
    std::erase_if(settled_, [&](const auto& kv) { return now - kv.second.at_ms > kForgetAfterMs; });
  }
  settled_.insert_or_assign(key, Settled{std::move(answer), now});
  if (on_settled_) on_settled_();
}

forwarding::CloudIdentityProvider CloudIdentities::Provider() {
  return [this](std::string_view upstream, std::string_view device_id) {
    return Get(upstream, device_id);
  };
}

}  // namespace edgetrust::gateway
