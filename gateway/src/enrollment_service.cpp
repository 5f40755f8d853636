#include "edgetrust/gateway/enrollment_service.h"

#include <algorithm>

#include "certificate_record.h"
#include "edgetrust/pki/csr.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/protocol/messages.h"
#include "edgetrust/storage/lifecycle.h"
#include "edgetrust/storage/tables.h"

namespace edgetrust::gateway {
namespace {

using protocol::TopicKind;
using storage::DeviceState;

// A fast path for repeats only (the store answers them too): about 0.6 KB each, so this bounds
// the gateway's memory whatever the fleet size.
constexpr size_t kMaxRememberedAnswers = 4096;
constexpr int64_t kBackdateSeconds = 300;  // tolerate device clocks slightly behind ours
constexpr std::string_view kActor = "gateway";

std::string Short(ByteView fp) { return HexEncode(fp.first(std::min<size_t>(fp.size(), 8))); }

struct Refusal {
  std::string_view err;
  std::string msg;
};

Outcome Refuse(const DeviceRequest& req, std::string_view rid, const Refusal& r) {
  Outcome o;
  bool enroll = req.kind == TopicKind::kEnrollReq;
  o.reply = Reply{
      protocol::BuildTopic(req.prefix, req.device_id,
                           enroll ? TopicKind::kEnrollRes : TopicKind::kCertRes),
      protocol::EncodeErrorResponse(rid, r.err, r.msg)};
  o.level = LogLevel::kWarn;
  o.event = enroll ? "enroll_refused" : "renew_refused";
  o.fields = {{"device", req.device_id}, {"rid", std::string(rid)}, {"err", std::string(r.err)},
              {"msg", r.msg}};
  return o;
}

std::string ResponseTopic(const DeviceRequest& req) {
  return protocol::BuildTopic(
      req.prefix, req.device_id,
      req.kind == TopicKind::kEnrollReq ? TopicKind::kEnrollRes : TopicKind::kCertRes);
}

// The request's CSR: checked ahead (CheckCsr) or here.
Result<pki::Csr> CsrOf(const DeviceRequest& req, ByteView csr_der) {
  return req.csr ? *req.csr : pki::ParseCsrDer(csr_der);
}

Outcome Granted(const DeviceRequest& req, const protocol::EnrollRequest& m,
                const SiteAuthority& authority, const Bytes& cert_der) {
  protocol::EnrollResponse res;
  res.rid = m.rid;
  res.ok = true;
  res.cert = cert_der;
  res.chain = {authority.site_ca.der};
  res.site = authority.policy.site;
  res.lifecycle_ca = authority.site_ca.der;
  Outcome o;
  o.reply = Reply{ResponseTopic(req), protocol::EncodeEnrollResponse(res)};
  o.rid = m.rid;
  o.cert = cert_der;
  return o;
}

// The stamp must name exactly the certificate the request says the device connected with.
std::optional<Refusal> CheckStamp(const DeviceRequest& req, const Bytes& presented_der) {
  if (req.stamp.empty()) return Refusal{protocol::kErrBirthMismatch, "no et-cert-sha256 stamp"};
  std::string actual = HexEncode(pki::Sha256(presented_der));
  std::string stamp = req.stamp;
  std::transform(stamp.begin(), stamp.end(), stamp.begin(), ::tolower);
  if (actual != stamp) {
    return Refusal{protocol::kErrBirthMismatch,
                   "the certificate in the request is not the one this connection presented"};
  }
  return std::nullopt;
}

// Operational certificates of the device not revoked yet (current and, during a renewal, the
// one before it).
Result<std::vector<storage::CertificateRecord>> LiveOperational(const storage::Txn& txn,
                                                                std::string_view id) {
  ET_ASSIGN_OR_RETURN(auto all, storage::ListDeviceCertificates(txn, id));
  std::vector<storage::CertificateRecord> live;
  for (auto& c : all) {
    if (c.kind != storage::CertificateKind::kOperational) continue;
    ET_ASSIGN_OR_RETURN(bool revoked, storage::IsFingerprintRevoked(txn, c.fingerprint));
    if (!revoked) live.push_back(std::move(c));
  }
  return live;
}

// The device's current operational certificate if the CSR is for its key and it is not due
// for renewal: the answer to a request that was already granted (lost answer, restart).
Result<std::optional<pki::Certificate>> AlreadyGranted(const storage::Txn& txn,
                                                       const storage::DeviceRecord& device,
                                                       const pki::Csr& csr, int renew_before_days,
                                                       int64_t now) {
  if (device.operational_fingerprint.empty()) return std::optional<pki::Certificate>();
  ET_ASSIGN_OR_RETURN(auto rec, storage::FindCertificate(txn, device.operational_fingerprint));
  if (!rec) return std::optional<pki::Certificate>();
  ET_ASSIGN_OR_RETURN(bool revoked, storage::IsFingerprintRevoked(txn, rec->fingerprint));
  if (revoked) return std::optional<pki::Certificate>();
  auto cert = pki::ParseCertificateDer(rec->der);
  if (!cert.ok()) return std::optional<pki::Certificate>();
  if (cert->public_key_der != csr.public_key_der) return std::optional<pki::Certificate>();
  if (cert->not_after - int64_t{renew_before_days} * 86400 <= now) {
    return std::optional<pki::Certificate>();
  }
  return std::optional<pki::Certificate>(std::move(cert).value());
}

Result<pki::Certificate> IssueOperational(const SiteAuthority& authority, const std::string& id,
                                          const std::string& model, const pki::Csr& csr,
                                          int cert_days, int64_t now) {
  pki::IssueRequest ir;
  ir.subject.cn = id;
  ir.subject.o = authority.policy.site;
  ir.subject.ou = model;
  ir.public_key_der = csr.public_key_der;
  ir.not_before = now - kBackdateSeconds;
  ir.not_after = now + int64_t{cert_days} * 86400;
  ir.extended_usage = pki::ExtendedUsage::kClientAuth;
  return pki::IssueCertificate(authority.site_ca, *authority.site_key, ir);
}

const policies::EnrollmentPolicy& EnrollmentOf(const policies::Policy& policy,
                                               const policies::Group* group) {
  return group != nullptr ? group->enrollment : policy.renewal_defaults;
}

}  // namespace

Result<Outcome> EnrollmentService::Handle(storage::WriteTxn& txn, const SiteAuthority& authority,
                                          const DeviceRequest& req, int64_t now) {
  if (req.kind == TopicKind::kState) return State(txn, req);
  if (req.payload.size() > protocol::kMaxEnrollPayloadBytes) {
    return Refuse(req, "", {protocol::kErrBadRequest, "payload too large"});
  }
  auto decoded = protocol::DecodeEnrollRequest(req.payload);
  if (!decoded.ok()) {
    return Refuse(req, protocol::PeekRequestId(req.payload),
                  {protocol::kErrBadRequest, decoded.error().message});
  }
  if (const Answer* answer = Find(req, decoded->rid)) {
    Outcome o = Granted(req, *decoded, authority, answer->cert);
    o.event = req.kind == TopicKind::kEnrollReq ? "enroll_repeat" : "renew_repeat";
    o.fields = {{"device", req.device_id}, {"rid", decoded->rid}};
    return o;
  }
  return req.kind == TopicKind::kEnrollReq ? Enroll(txn, authority, req, now)
                                           : Renew(txn, authority, req, now);
}

const EnrollmentService::Answer* EnrollmentService::Find(const DeviceRequest& req,
                                                        std::string_view rid) const {
  auto it = answers_.find(req.device_id);
  if (it == answers_.end() || it->second.kind != req.kind || it->second.rid != rid) return nullptr;
  return &it->second;
}

bool EnrollmentService::Remembers(const DeviceRequest& req) const {
  if (answers_.empty() || req.payload.size() > protocol::kMaxEnrollPayloadBytes) return false;
  const std::string rid = protocol::PeekRequestId(req.payload);
  return !rid.empty() && Find(req, rid) != nullptr;
}

void CheckCsr(DeviceRequest& request) {
  if (request.kind != TopicKind::kEnrollReq && request.kind != TopicKind::kCertReq) return;
  if (request.payload.size() > protocol::kMaxEnrollPayloadBytes) return;  // Handle refuses it
  auto m = protocol::DecodeEnrollRequest(request.payload);
  if (!m.ok()) return;
  request.csr = pki::ParseCsrDer(m->csr);
  pki::ReleaseThreadCaches();
}

void EnrollmentService::Remember(const DeviceRequest& req, const std::string& rid,
                                 const Bytes& cert) {
  if (answers_.size() >= kMaxRememberedAnswers && !answers_.count(req.device_id)) {
    answers_.clear();  // the store answers repeats as well; this is only the fast path
  }
  answers_[req.device_id] = Answer{req.kind, rid, cert};
}

Result<Outcome> EnrollmentService::Enroll(storage::WriteTxn& txn, const SiteAuthority& authority,
                                          const DeviceRequest& req, int64_t now) {
  const protocol::EnrollRequest m = protocol::DecodeEnrollRequest(req.payload).value();
  const std::string& id = req.device_id;
  auto refuse = [&](std::string_view err, std::string msg) {
    return Refuse(req, m.rid, {err, std::move(msg)});
  };

  if (auto r = CheckStamp(req, m.birth)) return Refuse(req, m.rid, *r);
  auto birth = pki::ParseCertificateDer(m.birth);
  if (!birth.ok()) return refuse(protocol::kErrBirthMismatch, "birth: " + birth.error().message);
  const ManufacturerCa* maker = authority.IssuerOf(*birth);
  if (maker == nullptr) {
    return refuse(protocol::kErrUnknownManufacturer,
                  "birth certificate issuer " + birth->issuer.ToString() +
                      " is not a manufacturer CA of the policy");
  }
  if (birth->subject.cn != id) {
    return refuse(protocol::kErrBirthMismatch, "birth certificate CN is " + birth->subject.cn);
  }
  auto csr = CsrOf(req, m.csr);
  if (!csr.ok()) return refuse(protocol::kErrCsrInvalid, csr.error().message);
  if (csr->subject.cn != id) {
    return refuse(protocol::kErrCsrMismatch, "CSR CN '" + csr->subject.cn + "' is not " + id);
  }

  ET_ASSIGN_OR_RETURN(auto device, storage::FindDevice(txn, id));
  if (device) {
    if (storage::IsTerminal(device->state)) {
      return refuse(protocol::kErrStateForbidden,
                    "device is " + std::string(storage::DeviceStateName(device->state)));
    }
    if (!device->manufacturer.empty() && device->manufacturer != maker->name) {
      return refuse(protocol::kErrBirthMismatch, "device belongs to " + device->manufacturer);
    }
    if (!device->birth_fingerprint.empty() &&
        device->birth_fingerprint != ToBytes(birth->fingerprint)) {
      return refuse(protocol::kErrBirthMismatch, "not the birth certificate on record");
    }
  }
  std::string model = device && !device->model.empty() ? device->model
                      : !birth->subject.ou.empty()     ? birth->subject.ou
                                                       : m.model;
  const policies::Group* group = authority.policy.MatchGroup(maker->name, model);
  if (group == nullptr) {
    return refuse(protocol::kErrNoGroup, "no group for " + maker->name + "/" + model);
  }
  const policies::EnrollmentPolicy& ep = group->enrollment;

  if (device && device->state == DeviceState::kActive) {
    ET_ASSIGN_OR_RETURN(auto granted,
                        AlreadyGranted(txn, *device, *csr, ep.renew_before_days, now));
    if (granted) {
      Outcome o = Granted(req, m, authority, granted->der);
      o.event = "enroll_repeat";
      o.fields = {{"device", id}, {"rid", m.rid}, {"cert", Short(granted->fingerprint)}};
      return o;
    }
    // A certificate never seen in use may never have reached the device: not a re-enrollment.
    if (!ep.reenroll && !device->operational_unconfirmed) {
      return refuse(protocol::kErrStateForbidden,
                    "device is active and group " + group->name + " does not allow re-enrollment");
    }
  }

  switch (ep.mode) {
    case policies::EnrollmentMode::kAllowlist: {
      ET_ASSIGN_OR_RETURN(auto entry, storage::FindAllowlistEntry(txn, id));
      if (!entry) return refuse(protocol::kErrNotAllowlisted, "no factory manifest row for " + id);
      if ((!entry->fingerprint.empty() && entry->fingerprint != ToBytes(birth->fingerprint)) ||
          (!entry->manufacturer.empty() && entry->manufacturer != maker->name)) {
        return refuse(protocol::kErrNotAllowlisted,
                      "the manifest row names another birth certificate");
      }
      break;
    }
    case policies::EnrollmentMode::kClaim: {
      if (!m.claim || m.claim->empty()) return refuse(protocol::kErrClaimInvalid, "no claim code");
      ET_ASSIGN_OR_RETURN(bool ok, storage::CheckClaim(txn, id, *m.claim));
      if (!ok) return refuse(protocol::kErrClaimInvalid, "claim code does not match");
      break;
    }
    case policies::EnrollmentMode::kAuto:
      if (!device && !ep.allow_unknown) {
        return refuse(protocol::kErrNotAllowlisted, "unknown device and allow_unknown is off");
      }
      break;
  }

  auto cert = IssueOperational(authority, id, model, *csr, ep.cert_days, now);
  if (!cert.ok()) {
    Outcome o = refuse(protocol::kErrInternal, "could not issue the certificate");
    o.level = LogLevel::kError;
    o.fields.push_back({"error", cert.error().ToString()});
    return o;
  }

  // One transaction: previous operational certificates revoked (a re-enrolling device keeps
  // nothing it held before), the new one recorded, the device active with it, the audit line.
  Outcome o = Granted(req, m, authority, cert->der);
  ET_ASSIGN_OR_RETURN(auto previous, LiveOperational(txn, id));
  for (const auto& p : previous) {
    ET_RETURN_IF_ERROR(storage::RevokeCertificate(txn, p.fingerprint, "reenrolled", kActor));
    o.revoked.push_back(p.fingerprint);
  }
  if (device && !device->operational_fingerprint.empty() &&
      std::none_of(previous.begin(), previous.end(), [&](const auto& p) {
        return p.fingerprint == device->operational_fingerprint;
      })) {
    ET_ASSIGN_OR_RETURN(bool revoked,
                        storage::IsFingerprintRevoked(txn, device->operational_fingerprint));
    if (!revoked) {
      ET_RETURN_IF_ERROR(storage::RevokeCertificate(txn, device->operational_fingerprint,
                                                    "reenrolled", kActor));
      o.revoked.push_back(device->operational_fingerprint);
    }
  }
  ET_ASSIGN_OR_RETURN(auto birth_rec, storage::FindCertificate(txn, ToBytes(birth->fingerprint)));
  if (!birth_rec) {
    ET_RETURN_IF_ERROR(
        storage::PutCertificate(txn, CertificateRecordOf(*birth, id, storage::CertificateKind::kBirth)));
  }
  ET_RETURN_IF_ERROR(
      storage::PutCertificate(txn, CertificateRecordOf(*cert, id, storage::CertificateKind::kOperational)));
  storage::DeviceRecord d = device ? *device : storage::DeviceRecord{};
  std::string previous_state = device ? std::string(storage::DeviceStateName(device->state)) : "new";
  d.id = id;
  d.state = DeviceState::kActive;
  d.manufacturer = maker->name;
  d.model = model;
  d.group = group->name;
  d.birth_fingerprint = ToBytes(birth->fingerprint);
  d.operational_fingerprint = ToBytes(cert->fingerprint);
  d.operational_not_after = cert->not_after;
  d.operational_unconfirmed = true;  // until a state message is stamped with it
  if (!m.fw.empty()) d.fw = m.fw;
  ET_RETURN_IF_ERROR(storage::PutDevice(txn, d));
  storage::AuditRecord audit;
  audit.actor = std::string(kActor);
  audit.action = "enroll";
  audit.device_id = id;
  audit.detail = "group=" + group->name + " mode=" +
                 std::string(policies::EnrollmentModeName(ep.mode)) + " from=" + previous_state +
                 " cert=" + HexEncode(cert->fingerprint);
  ET_RETURN_IF_ERROR(storage::AppendAudit(txn, audit));
  o.wrote = true;
  o.issued = true;
  o.event = "enroll_ok";
  o.fields = {{"device", id},
              {"rid", m.rid},
              {"group", group->name},
              {"mode", std::string(policies::EnrollmentModeName(ep.mode))},
              {"from", previous_state},
              {"cert", Short(cert->fingerprint)},
              {"revoked", std::to_string(o.revoked.size())}};
  return o;
}

Result<Outcome> EnrollmentService::Renew(storage::WriteTxn& txn, const SiteAuthority& authority,
                                         const DeviceRequest& req, int64_t now) {
  const protocol::CertRequest m = protocol::DecodeEnrollRequest(req.payload).value();
  const std::string& id = req.device_id;
  auto refuse = [&](std::string_view err, std::string msg) {
    return Refuse(req, m.rid, {err, std::move(msg)});
  };

  if (auto r = CheckStamp(req, m.birth)) return Refuse(req, m.rid, *r);
  auto presented = pki::ParseCertificateDer(m.birth);
  if (!presented.ok()) {
    return refuse(protocol::kErrBirthMismatch, "certificate: " + presented.error().message);
  }
  if (!pki::VerifyIssuedBy(*presented, authority.site_ca).ok()) {
    return refuse(protocol::kErrBirthMismatch, "renewal needs a certificate of the site CA");
  }
  if (presented->subject.cn != id) {
    return refuse(protocol::kErrBirthMismatch, "certificate CN is " + presented->subject.cn);
  }
  auto csr = CsrOf(req, m.csr);
  if (!csr.ok()) return refuse(protocol::kErrCsrInvalid, csr.error().message);
  if (csr->subject.cn != id) {
    return refuse(protocol::kErrCsrMismatch, "CSR CN '" + csr->subject.cn + "' is not " + id);
  }
  ET_ASSIGN_OR_RETURN(auto device, storage::FindDevice(txn, id));
  if (!device || device->state != DeviceState::kActive) {
    return refuse(protocol::kErrStateForbidden,
                  device ? "device is " + std::string(storage::DeviceStateName(device->state))
                         : "unknown device");
  }
  const Bytes presented_fp = ToBytes(presented->fingerprint);
  bool is_current = presented_fp == device->operational_fingerprint;
  ET_ASSIGN_OR_RETURN(auto live, LiveOperational(txn, id));
  bool is_previous = !is_current && std::any_of(live.begin(), live.end(), [&](const auto& c) {
    return c.fingerprint == presented_fp;
  });
  if (!is_current && !is_previous) {
    return refuse(protocol::kErrBirthMismatch, "not a current certificate of the device");
  }
  const policies::Group* group = authority.policy.FindGroup(device->group);
  if (group == nullptr) group = authority.policy.MatchGroup(device->manufacturer, device->model);
  const policies::EnrollmentPolicy& ep = EnrollmentOf(authority.policy, group);

  Outcome o;
  if (is_previous) {
    // The device renewed already but is still on the certificate before: its answer was lost.
    ET_ASSIGN_OR_RETURN(auto granted, AlreadyGranted(txn, *device, *csr, 0, now));
    if (granted) {
      o = Granted(req, m, authority, granted->der);
      o.event = "renew_repeat";
      o.fields = {{"device", id}, {"rid", m.rid}, {"cert", Short(granted->fingerprint)}};
      return o;
    }
  }
  auto cert = IssueOperational(authority, id, device->model, *csr, ep.cert_days, now);
  if (!cert.ok()) {
    Outcome e = refuse(protocol::kErrInternal, "could not issue the certificate");
    e.level = LogLevel::kError;
    e.fields.push_back({"error", cert.error().ToString()});
    return e;
  }
  o = Granted(req, m, authority, cert->der);
  if (is_previous && !device->operational_fingerprint.empty()) {
    // A certificate issued for a renewal the device never picked up is replaced, not kept.
    ET_RETURN_IF_ERROR(storage::RevokeCertificate(txn, device->operational_fingerprint,
                                                  "replaced before use", kActor));
    o.revoked.push_back(device->operational_fingerprint);
  }
  // The presented certificate stays valid until the device has connected with the new one
  // (see State): no lock-out if this answer is lost.
  ET_RETURN_IF_ERROR(
      storage::PutCertificate(txn, CertificateRecordOf(*cert, id, storage::CertificateKind::kOperational)));
  storage::DeviceRecord d = *device;
  d.operational_fingerprint = ToBytes(cert->fingerprint);
  d.operational_not_after = cert->not_after;
  // Renewing over an operational connection: the device has its certificates in use; a lost
  // answer is covered by the grace of the presented one.
  d.operational_unconfirmed = false;
  if (!m.fw.empty()) d.fw = m.fw;
  ET_RETURN_IF_ERROR(storage::PutDevice(txn, d));
  storage::AuditRecord audit;
  audit.actor = std::string(kActor);
  audit.action = "renew";
  audit.device_id = id;
  audit.detail = "cert=" + HexEncode(cert->fingerprint) + " previous=" + HexEncode(presented_fp);
  ET_RETURN_IF_ERROR(storage::AppendAudit(txn, audit));
  o.wrote = true;
  o.issued = true;
  o.event = "renew_ok";
  o.fields = {{"device", id},
              {"rid", m.rid},
              {"cert", Short(cert->fingerprint)},
              {"previous", Short(presented_fp)},
              {"not_after", std::to_string(cert->not_after)}};
  return o;
}

Result<Outcome> EnrollmentService::State(storage::WriteTxn& txn, const DeviceRequest& req) {
  Outcome o;
  o.fields = {{"device", req.device_id}};
  if (req.payload.size() > protocol::kMaxSmallPayloadBytes) {
    o.level = LogLevel::kWarn;
    o.event = "state_refused";
    o.fields.push_back({"msg", "payload too large"});
    return o;
  }
  auto m = protocol::DecodeStateMessage(req.payload);
  if (!m.ok()) {
    o.level = LogLevel::kWarn;
    o.event = "state_refused";
    o.fields.push_back({"msg", m.error().message});
    return o;
  }
  auto stamp = HexDecode(req.stamp);
  ET_ASSIGN_OR_RETURN(auto device, storage::FindDevice(txn, req.device_id));
  if (!stamp || !device || device->state != DeviceState::kActive) {
    o.level = LogLevel::kWarn;
    o.event = "state_ignored";
    o.fields.push_back({"msg", "not an active device's certificate"});
    return o;
  }
  storage::DeviceRecord d = *device;
  if (!m->fw.empty()) d.fw = m->fw;
  if (d.model.empty()) d.model = m->model;
  if (*stamp == device->operational_fingerprint) {
    d.operational_unconfirmed = false;
    answers_.erase(req.device_id);  // its certificate is in use: no repeat will come
    // First use of a renewed certificate ends the grace of the one before it.
    ET_ASSIGN_OR_RETURN(auto live, LiveOperational(txn, req.device_id));
    for (const auto& c : live) {
      if (c.fingerprint == device->operational_fingerprint) continue;
      ET_RETURN_IF_ERROR(storage::RevokeCertificate(txn, c.fingerprint, "superseded", kActor));
      o.revoked.push_back(c.fingerprint);
    }
  }
  ET_RETURN_IF_ERROR(storage::PutDevice(txn, d));  // updated_at: last seen
  o.wrote = true;
  o.level = LogLevel::kDebug;
  o.event = "state";
  o.fields.push_back({"fw", d.fw});
  o.fields.push_back({"cert", Short(*stamp)});
  if (!o.revoked.empty()) {
    o.level = LogLevel::kInfo;
    o.event = "renewal_completed";
    o.fields.push_back({"revoked", std::to_string(o.revoked.size())});
  }
  return o;
}

}  // namespace edgetrust::gateway
