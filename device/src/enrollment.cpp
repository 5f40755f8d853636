#include "edgetrust/device/enrollment.h"

#include <random>

#include "edgetrust/pki/csr.h"
#include "edgetrust/protocol/messages.h"

namespace edgetrust::device {

std::string NewRequestId() {
  std::random_device rd;
  Bytes raw(16);
  for (auto& b : raw) b = static_cast<uint8_t>(rd());
  return HexEncode(raw);
}

Result<CertificateRequest> CertificateRequest::Create(const RequestParams& params) {
  ET_ASSIGN_OR_RETURN(pki::PrivateKey key, pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256));
  ET_ASSIGN_OR_RETURN(Bytes spki, key.PublicKeyDer());
  ET_ASSIGN_OR_RETURN(std::string key_pem, key.ToPem());
  pki::DistinguishedName subject;
  subject.cn = params.device_id;
  ET_ASSIGN_OR_RETURN(Bytes csr, pki::CreateCsr(key, subject));

  protocol::EnrollRequest request;
  request.rid = NewRequestId();
  request.csr = std::move(csr);
  request.birth = params.connected_cert_der;
  request.fw = params.fw;
  request.model = params.model;
  if (!params.claim.empty()) request.claim = params.claim;
  Bytes payload = protocol::EncodeEnrollRequest(request);
  return CertificateRequest(params.device_id, std::move(request.rid), std::move(key),
                            std::move(spki), std::move(key_pem), std::move(payload));
}

Answer CertificateRequest::Read(ByteView response, int64_t now) const {
  Answer answer;
  auto decoded = protocol::DecodeEnrollResponse(response);
  if (!decoded.ok()) {
    answer.err = "undecodable response: " + decoded.error().message;
    return answer;
  }
  const protocol::EnrollResponse& res = *decoded;
  if (res.rid != rid_) {
    answer.err = "response for another request (rid " + res.rid + ")";
    return answer;
  }
  if (!res.ok) {
    answer.kind = AnswerKind::kRejected;
    answer.err = res.err.empty() ? std::string("unspecified") : res.err;
    answer.msg = res.msg;
    return answer;
  }
  answer.kind = AnswerKind::kInvalid;
  auto cert = pki::ParseCertificateDer(res.cert);
  if (!cert.ok()) {
    answer.err = "issued certificate does not parse: " + cert.error().message;
    return answer;
  }
  if (cert->public_key_der != spki_) {
    answer.err = "issued certificate is not for the key of this request";
    return answer;
  }
  if (cert->subject.cn != device_id_) {
    answer.err = "issued certificate is for '" + cert->subject.cn + "'";
    return answer;
  }
  // A gateway clock a little ahead of ours must not make a fresh certificate look unusable.
  constexpr int64_t kClockSkewSeconds = 300;
  if (now + kClockSkewSeconds < cert->not_before || now > cert->not_after) {
    answer.err = "issued certificate is not valid now (" + FormatUtc(cert->not_before) + " to " +
                 FormatUtc(cert->not_after) + ")";
    return answer;
  }
  answer.kind = AnswerKind::kIssued;
  answer.stored = ToStored(*cert, key_pem_, res.site, res.lifecycle_ca);
  OperationalIdentity identity;
  identity.cert = std::move(cert).value();
  identity.key_pem = key_pem_;
  identity.site = res.site;
  if (!res.lifecycle_ca.empty()) {
    auto ca = pki::ParseCertificateDer(res.lifecycle_ca);
    if (ca.ok()) identity.lifecycle_ca = std::move(ca).value();
  }
  answer.identity = std::move(identity);
  return answer;
}

}  // namespace edgetrust::device
