// Certificate parsing (a strict DER walk) and PEM conversions.
#include <arpa/inet.h>

#include "edgetrust/pki/certificate.h"
#include "key_impl.h"
#include "x509.h"

namespace edgetrust::pki {

using internal::DerReader;
using internal::Equal;
using internal::ParseSingle;
using internal::Tlv;
namespace tag = internal::tag;
namespace oid = internal::oid;

namespace {

Error Bad(const std::string& why) {
  return MakeError(ErrorCode::kInvalidArgument, "certificate: " + why);
}

Status ParseExtension(ByteView ext_oid, ByteView value, Certificate& c) {
  if (Equal(ext_oid, oid::kBasicConstraints)) {
    ET_ASSIGN_OR_RETURN(Tlv seq, ParseSingle(value, tag::kSequence, "basicConstraints"));
    DerReader r(seq.content);
    if (r.PeekTag(tag::kBoolean)) {
      ET_ASSIGN_OR_RETURN(Tlv b, r.Next());
      if (b.content.size() != 1) return Bad("basicConstraints: bad BOOLEAN");
      c.is_ca = b.content[0] != 0;
    }
    if (r.PeekTag(tag::kInteger)) ET_RETURN_IF_ERROR(r.Next());
    if (!r.empty()) return Bad("basicConstraints: trailing data");
  } else if (Equal(ext_oid, oid::kSubjectKeyId)) {
    ET_ASSIGN_OR_RETURN(Tlv ski, ParseSingle(value, tag::kOctetString, "subjectKeyIdentifier"));
    c.ski.assign(ski.content.begin(), ski.content.end());
  } else if (Equal(ext_oid, oid::kAuthorityKeyId)) {
    ET_ASSIGN_OR_RETURN(Tlv seq, ParseSingle(value, tag::kSequence, "authorityKeyIdentifier"));
    DerReader r(seq.content);
    while (!r.empty()) {
      ET_ASSIGN_OR_RETURN(Tlv t, r.Next());
      if (t.tag == 0x80) c.aki.assign(t.content.begin(), t.content.end());
    }
  } else if (Equal(ext_oid, oid::kSubjectAltName)) {
    ET_ASSIGN_OR_RETURN(Tlv seq, ParseSingle(value, tag::kSequence, "subjectAltName"));
    DerReader r(seq.content);
    while (!r.empty()) {
      ET_ASSIGN_OR_RETURN(Tlv t, r.Next());
      if (t.tag == 0x82) {
        c.dns_names.emplace_back(AsChars(t.content));
      } else if (t.tag == 0x87) {
        char buf[INET6_ADDRSTRLEN] = {};
        if (t.content.size() == 4) {
          inet_ntop(AF_INET, t.content.data(), buf, sizeof buf);
        } else if (t.content.size() == 16) {
          inet_ntop(AF_INET6, t.content.data(), buf, sizeof buf);
        } else {
          return Bad("subjectAltName: bad iPAddress length");
        }
        c.ip_addresses.emplace_back(buf);
      }
    }
  } else if (Equal(ext_oid, oid::kExtKeyUsage)) {
    ET_ASSIGN_OR_RETURN(Tlv seq, ParseSingle(value, tag::kSequence, "extKeyUsage"));
    DerReader r(seq.content);
    bool client = false, server = false;
    while (!r.empty()) {
      ET_ASSIGN_OR_RETURN(Tlv o, r.Expect(tag::kOid, "extKeyUsage purpose"));
      client = client || Equal(o.content, oid::kClientAuth);
      server = server || Equal(o.content, oid::kServerAuth);
    }
    c.extended_usage = client && server ? ExtendedUsage::kClientAndServer
                       : client         ? ExtendedUsage::kClientAuth
                       : server         ? ExtendedUsage::kServerAuth
                                        : ExtendedUsage::kNone;
  }
  return OkStatus();
}

Status ParseExtensions(ByteView explicit_content, Certificate& c) {
  ET_ASSIGN_OR_RETURN(Tlv seq, ParseSingle(explicit_content, tag::kSequence, "extensions"));
  DerReader r(seq.content);
  std::vector<ByteView> seen;
  while (!r.empty()) {
    ET_ASSIGN_OR_RETURN(Tlv ext, r.Expect(tag::kSequence, "extension"));
    DerReader er(ext.content);
    ET_ASSIGN_OR_RETURN(Tlv ext_oid, er.Expect(tag::kOid, "extension id"));
    if (er.PeekTag(tag::kBoolean)) ET_RETURN_IF_ERROR(er.Next());
    ET_ASSIGN_OR_RETURN(Tlv value, er.Expect(tag::kOctetString, "extension value"));
    if (!er.empty()) return Bad("extension: trailing data");
    for (ByteView s : seen) {
      if (Equal(s, ext_oid.content)) return Bad("duplicate extension");
    }
    seen.push_back(ext_oid.content);
    ET_RETURN_IF_ERROR(ParseExtension(ext_oid.content, value.content, c));
  }
  return OkStatus();
}

}  // namespace

namespace internal {

Result<SignedParts> SplitSigned(ByteView der, const char* what) {
  ET_ASSIGN_OR_RETURN(Tlv outer, ParseSingle(der, tag::kSequence, what));
  DerReader r(outer.content);
  ET_ASSIGN_OR_RETURN(Tlv tbs, r.Expect(tag::kSequence, what));
  ET_ASSIGN_OR_RETURN(Tlv alg, r.Expect(tag::kSequence, "signature algorithm"));
  ET_ASSIGN_OR_RETURN(Tlv sig, r.Expect(tag::kBitString, "signature"));
  if (!r.empty()) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + ": trailing data");
  if (sig.content.empty() || sig.content[0] != 0) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(what) + ": bad signature BIT STRING");
  }
  return SignedParts{tbs.whole, alg.whole, sig.content.subspan(1)};
}

Status VerifySigned(const SignedParts& parts, ByteView spki_der) {
  ET_ASSIGN_OR_RETURN(KeyType alg_type, SignatureAlgorithmKeyType(parts.algorithm));
  ET_ASSIGN_OR_RETURN(SpkiInfo key, ParseSpki(spki_der));
  if (alg_type != key.type) {
    return MakeError(ErrorCode::kUnauthenticated, "signature algorithm does not match the key");
  }
  return VerifySignature(spki_der, parts.tbs, parts.signature);
}

Result<Bytes> SignStructure(const PrivateKey& key, ByteView tbs) {
  ET_ASSIGN_OR_RETURN(Bytes sig, key.Sign(tbs));
  return DerSeq({tbs, SignatureAlgorithm(key.type()), DerBitString(sig)});
}

Result<DistinguishedName> ParseName(ByteView name_content) {
  DistinguishedName dn;
  bool have_cn = false;
  DerReader r(name_content);
  while (!r.empty()) {
    ET_ASSIGN_OR_RETURN(Tlv rdn, r.Expect(tag::kSet, "name RDN"));
    DerReader rr(rdn.content);
    if (rr.empty()) return MakeError(ErrorCode::kInvalidArgument, "name: empty RDN");
    while (!rr.empty()) {
      ET_ASSIGN_OR_RETURN(Tlv atv, rr.Expect(tag::kSequence, "name attribute"));
      DerReader ar(atv.content);
      ET_ASSIGN_OR_RETURN(Tlv type, ar.Expect(tag::kOid, "name attribute type"));
      ET_ASSIGN_OR_RETURN(Tlv value, ar.Next());
      if (!ar.empty()) return MakeError(ErrorCode::kInvalidArgument, "name attribute: trailing data");
      if (value.tag & 0x20) return MakeError(ErrorCode::kInvalidArgument, "name attribute: not a string");
      std::string text(AsChars(value.content));
      if (Equal(type.content, oid::kCommonName)) {
        if (have_cn) return MakeError(ErrorCode::kInvalidArgument, "name: more than one CN");
        have_cn = true;
        dn.cn = std::move(text);
      } else if (Equal(type.content, oid::kOrganization)) {
        if (dn.o.empty()) dn.o = std::move(text);
      } else if (Equal(type.content, oid::kOrganizationalUnit)) {
        if (dn.ou.empty()) dn.ou = std::move(text);
      }
    }
  }
  return dn;
}

Result<Bytes> EncodeName(const DistinguishedName& name) {
  if (name.cn.empty()) return MakeError(ErrorCode::kInvalidArgument, "subject needs a CN");
  Bytes rdns;
  for (auto [o, value] : {std::pair{ByteView(oid::kOrganization), &name.o},
                          std::pair{ByteView(oid::kOrganizationalUnit), &name.ou},
                          std::pair{ByteView(oid::kCommonName), &name.cn}}) {
    if (value->empty()) continue;
    if (value->size() > 64 || value->find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "name attribute must be 1..64 bytes without NUL: \"" + *value + "\"");
    }
    const Bytes rdn = DerTlv(tag::kSet, DerSeq({DerTlv(tag::kOid, o),
                                                DerTlv(tag::kUtf8String, AsBytes(*value))}));
    rdns.insert(rdns.end(), rdn.begin(), rdn.end());
  }
  return DerTlv(tag::kSequence, rdns);
}

Result<Bytes> RawSubjectName(ByteView cert_der) {
  ET_ASSIGN_OR_RETURN(SignedParts parts, SplitSigned(cert_der, "certificate"));
  ET_ASSIGN_OR_RETURN(Tlv tbs, ParseSingle(parts.tbs, tag::kSequence, "tbsCertificate"));
  DerReader r(tbs.content);
  if (r.PeekTag(tag::kContext0)) ET_RETURN_IF_ERROR(r.Next());
  for (const char* what : {"serial", "signature", "issuer", "validity"}) {
    ET_ASSIGN_OR_RETURN(Tlv skip, r.Next());
    (void)what;
    (void)skip;
  }
  ET_ASSIGN_OR_RETURN(Tlv subject, r.Expect(tag::kSequence, "subject"));
  return Bytes(subject.whole.begin(), subject.whole.end());
}

}  // namespace internal

std::string DistinguishedName::ToString() const {
  std::string out;
  for (auto [label, value] : {std::pair{"CN=", &cn}, std::pair{"O=", &o}, std::pair{"OU=", &ou}}) {
    if (value->empty()) continue;
    if (!out.empty()) out += ", ";
    out += label;
    out += *value;
  }
  return out;
}

Result<Certificate> ParseCertificateDer(ByteView der) {
  ET_ASSIGN_OR_RETURN(internal::SignedParts parts, internal::SplitSigned(der, "certificate"));
  ET_ASSIGN_OR_RETURN(Tlv tbs, ParseSingle(parts.tbs, tag::kSequence, "tbsCertificate"));
  Certificate c;
  DerReader r(tbs.content);
  int version = 0;
  if (r.PeekTag(tag::kContext0)) {
    ET_ASSIGN_OR_RETURN(Tlv v, r.Next());
    ET_ASSIGN_OR_RETURN(Tlv vi, ParseSingle(v.content, tag::kInteger, "version"));
    if (vi.content.size() != 1 || vi.content[0] > 2) return Bad("unsupported version");
    version = vi.content[0];
  }
  ET_ASSIGN_OR_RETURN(Tlv serial, r.Expect(tag::kInteger, "serial"));
  if (serial.content.size() > 64) return Bad("serial too long");
  ET_ASSIGN_OR_RETURN(c.serial, internal::IntegerMagnitude(serial.content));
  ET_ASSIGN_OR_RETURN(Tlv inner_alg, r.Expect(tag::kSequence, "signature"));
  if (!Equal(inner_alg.whole, parts.algorithm)) return Bad("signature algorithms differ");
  ET_ASSIGN_OR_RETURN(KeyType sig_type, internal::SignatureAlgorithmKeyType(parts.algorithm));
  (void)sig_type;
  ET_ASSIGN_OR_RETURN(Tlv issuer, r.Expect(tag::kSequence, "issuer"));
  ET_ASSIGN_OR_RETURN(c.issuer, internal::ParseName(issuer.content));
  c.issuer_id = Sha256(issuer.whole);
  ET_ASSIGN_OR_RETURN(Tlv validity, r.Expect(tag::kSequence, "validity"));
  {
    DerReader vr(validity.content);
    ET_ASSIGN_OR_RETURN(Tlv nb, vr.Next());
    ET_ASSIGN_OR_RETURN(Tlv na, vr.Next());
    if (!vr.empty()) return Bad("validity: trailing data");
    ET_ASSIGN_OR_RETURN(c.not_before, internal::ParseTime(nb));
    ET_ASSIGN_OR_RETURN(c.not_after, internal::ParseTime(na));
  }
  ET_ASSIGN_OR_RETURN(Tlv subject, r.Expect(tag::kSequence, "subject"));
  ET_ASSIGN_OR_RETURN(c.subject, internal::ParseName(subject.content));
  c.subject_id = Sha256(subject.whole);
  ET_ASSIGN_OR_RETURN(Tlv spki, r.Expect(tag::kSequence, "subjectPublicKeyInfo"));
  ET_ASSIGN_OR_RETURN(internal::SpkiInfo key, internal::ParseSpki(spki.whole));
  c.key_type = key.type;
  c.public_key_der.assign(spki.whole.begin(), spki.whole.end());
  if (r.PeekTag(0x81)) ET_RETURN_IF_ERROR(r.Next());  // issuerUniqueID
  if (r.PeekTag(0x82)) ET_RETURN_IF_ERROR(r.Next());  // subjectUniqueID
  if (r.PeekTag(tag::kContext3)) {
    if (version != 2) return Bad("extensions in a certificate that is not v3");
    ET_ASSIGN_OR_RETURN(Tlv exts, r.Next());
    ET_RETURN_IF_ERROR(ParseExtensions(exts.content, c));
  }
  if (!r.empty()) return Bad("trailing data in tbsCertificate");
  c.der.assign(der.begin(), der.end());
  c.fingerprint = Sha256(der);
  return c;
}

Result<Certificate> ParseCertificatePem(std::string_view pem) {
  ET_ASSIGN_OR_RETURN(Bytes der, internal::PemDecode(pem, "CERTIFICATE"));
  return ParseCertificateDer(der);
}

Result<std::vector<Certificate>> ParseCertificateBundlePem(std::string_view pem) {
  std::vector<Certificate> out;
  size_t pos = 0;
  while (true) {
    auto der = internal::PemDecode(pem, "CERTIFICATE", &pos);
    if (!der.ok()) {
      if (der.error().code == ErrorCode::kNotFound) break;
      return std::move(der).error();
    }
    auto cert = ParseCertificateDer(*der);
    if (!cert.ok()) {
      return MakeError(cert.error().code, "certificate #" + std::to_string(out.size() + 1) + ": " +
                                              cert.error().message);
    }
    out.push_back(std::move(cert).value());
  }
  if (out.empty()) return MakeError(ErrorCode::kInvalidArgument, "no CERTIFICATE PEM block");
  return out;
}

std::string CertificateToPem(ByteView der) { return internal::PemEncode(der, "CERTIFICATE"); }

Status VerifyIssuedBy(const Certificate& cert, const Certificate& issuer) {
  if (cert.issuer_id != issuer.subject_id) {
    return MakeError(ErrorCode::kUnauthenticated, "issuer name does not match");
  }
  ET_ASSIGN_OR_RETURN(internal::SignedParts parts, internal::SplitSigned(cert.der, "certificate"));
  return internal::VerifySigned(parts, issuer.public_key_der);
}

}  // namespace edgetrust::pki
