// Certificate issuance: the TBSCertificate is assembled here so names, lengths and extensions
// are exactly what we mean (wolfSSL's Cert struct caps CN at 63 bytes and re-encodes the issuer
// name); the signature is the issuer key's, software or PKCS#11.
#include "wolf.h"
// wolf.h first: it carries wolfSSL's options.h.
#include <arpa/inet.h>

#include "edgetrust/pki/certificate.h"
#include "key_impl.h"
#include "x509.h"

namespace edgetrust::pki {

using namespace internal;

namespace {

Bytes Extension(ByteView ext_oid, bool critical, ByteView value) {
  if (critical) return DerSeq({DerTlv(tag::kOid, ext_oid), DerBoolean(true), DerOctetString(value)});
  return DerSeq({DerTlv(tag::kOid, ext_oid), DerOctetString(value)});
}

// RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value.
Result<Bytes> KeyIdentifier(ByteView spki_der) {
  ET_ASSIGN_OR_RETURN(Tlv outer, ParseSingle(spki_der, tag::kSequence, "public key"));
  DerReader r(outer.content);
  ET_RETURN_IF_ERROR(r.Expect(tag::kSequence, "public key algorithm"));
  ET_ASSIGN_OR_RETURN(Tlv bits, r.Expect(tag::kBitString, "public key bits"));
  if (bits.content.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty public key");
  Bytes id(WC_SHA_DIGEST_SIZE);
  int ret = wc_ShaHash(bits.content.data() + 1, static_cast<word32>(bits.content.size() - 1), id.data());
  if (ret != 0) return WolfError(ErrorCode::kCrypto, "SHA-1", ret);
  return id;
}

Bytes KeyUsageBits(uint8_t bits) {
  uint8_t unused = 0;
  while (unused < 7 && !(bits & (1u << unused))) ++unused;
  return DerBitString(ByteView(&bits, 1), unused);
}

Result<Bytes> SubjectAltNames(const IssueRequest& req) {
  Bytes names;
  for (const std::string& dns : req.dns_names) {
    if (dns.empty() || dns.size() > 253) {
      return MakeError(ErrorCode::kInvalidArgument, "bad DNS name \"" + dns + "\"");
    }
    for (char ch : dns) {
      if (ch <= 0x20 || ch >= 0x7f) {
        return MakeError(ErrorCode::kInvalidArgument, "bad DNS name \"" + dns + "\"");
      }
    }
    const Bytes n = DerTlv(0x82, AsBytes(dns));
    names.insert(names.end(), n.begin(), n.end());
  }
  for (const std::string& ip : req.ip_addresses) {
    uint8_t addr[16];
    Bytes n;
    if (inet_pton(AF_INET, ip.c_str(), addr) == 1) {
      n = DerTlv(0x87, ByteView(addr, 4));
    } else if (inet_pton(AF_INET6, ip.c_str(), addr) == 1) {
      n = DerTlv(0x87, ByteView(addr, 16));
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "bad IP address \"" + ip + "\"");
    }
    names.insert(names.end(), n.begin(), n.end());
  }
  return DerTlv(tag::kSequence, names);
}

Result<Bytes> Serial(const Bytes& requested) {
  if (!requested.empty()) {
    if (requested.size() > 20) return MakeError(ErrorCode::kInvalidArgument, "serial longer than 20 bytes");
    bool all_zero = true;
    for (uint8_t b : requested) all_zero = all_zero && b == 0;
    if (all_zero) return MakeError(ErrorCode::kInvalidArgument, "serial must be positive");
    return DerUnsignedInteger(requested);
  }
  WC_RNG* rng = ThreadRng();
  if (!rng) return MakeError(ErrorCode::kCrypto, "no random number generator");
  uint8_t serial[16];
  int ret = wc_RNG_GenerateBlock(rng, serial, sizeof serial);
  if (ret != 0) return WolfError(ErrorCode::kCrypto, "random serial", ret);
  serial[0] &= 0x7f;  // positive without a sign octet: always 16 bytes on the wire
  serial[0] |= 0x01;
  return DerUnsignedInteger(ByteView(serial, sizeof serial));
}

// issuer_name: the issuer's subject Name TLV; issuer_ski: its key identifier (for AKI).
Result<Certificate> Issue(ByteView issuer_name, ByteView issuer_ski, const PrivateKey& issuer_key,
                          const IssueRequest& req, bool self_signed) {
  ET_ASSIGN_OR_RETURN(SpkiInfo subject_key, ParseSpki(req.public_key_der));
  if (req.not_after <= req.not_before) {
    return MakeError(ErrorCode::kInvalidArgument, "not_after must be after not_before");
  }
  if (req.path_len < -1 || (req.path_len >= 0 && !req.is_ca)) {
    return MakeError(ErrorCode::kInvalidArgument, "path_len only applies to a CA");
  }
  ET_ASSIGN_OR_RETURN(Bytes subject_name, EncodeName(req.subject));
  ET_ASSIGN_OR_RETURN(Bytes serial, Serial(req.serial));
  ET_ASSIGN_OR_RETURN(Bytes ski, KeyIdentifier(req.public_key_der));

  Bytes exts;
  auto add = [&exts](const Bytes& e) { exts.insert(exts.end(), e.begin(), e.end()); };
  if (req.is_ca) {
    add(Extension(oid::kBasicConstraints, true,
                  req.path_len >= 0 ? DerSeq({DerBoolean(true), DerSmallInteger(req.path_len)})
                                    : DerSeq({DerBoolean(true)})));
    add(Extension(oid::kKeyUsage, true, KeyUsageBits(0x80 | 0x04 | 0x02)));
  } else {
    add(Extension(oid::kBasicConstraints, true, DerSeq({})));
    // digitalSignature, plus keyAgreement for EC keys (static ECDH suites).
    add(Extension(oid::kKeyUsage, true,
                  KeyUsageBits(subject_key.type == KeyType::kEcdsaP256 ? 0x88 : 0x80)));
  }
  switch (req.extended_usage) {
    case ExtendedUsage::kNone:
      break;
    case ExtendedUsage::kClientAuth:
      add(Extension(oid::kExtKeyUsage, false, DerSeq({DerTlv(tag::kOid, oid::kClientAuth)})));
      break;
    case ExtendedUsage::kServerAuth:
      add(Extension(oid::kExtKeyUsage, false, DerSeq({DerTlv(tag::kOid, oid::kServerAuth)})));
      break;
    case ExtendedUsage::kClientAndServer:
      add(Extension(oid::kExtKeyUsage, false, DerSeq({DerTlv(tag::kOid, oid::kServerAuth),
                                                       DerTlv(tag::kOid, oid::kClientAuth)})));
      break;
  }
  add(Extension(oid::kSubjectKeyId, false, DerOctetString(ski)));
  add(Extension(oid::kAuthorityKeyId, false,
                DerSeq({DerTlv(0x80, self_signed ? ByteView(ski) : issuer_ski)})));
  if (!req.dns_names.empty() || !req.ip_addresses.empty()) {
    ET_ASSIGN_OR_RETURN(Bytes san, SubjectAltNames(req));
    add(Extension(oid::kSubjectAltName, false, san));
  }

  const Bytes version = DerTlv(tag::kContext0, DerSmallInteger(2));
  const Bytes validity = DerSeq({DerTime(req.not_before), DerTime(req.not_after)});
  const Bytes tbs = DerSeq({version, serial, SignatureAlgorithm(issuer_key.type()),
                            self_signed ? ByteView(subject_name) : issuer_name, validity,
                            subject_name, req.public_key_der,
                            DerTlv(tag::kContext3, DerTlv(tag::kSequence, exts))});
  ET_ASSIGN_OR_RETURN(Bytes der, SignStructure(issuer_key, tbs));
  return ParseCertificateDer(der);
}

}  // namespace

Result<Certificate> IssueCertificate(const Certificate& issuer, const PrivateKey& issuer_key,
                                     const IssueRequest& request) {
  if (!issuer.is_ca) return MakeError(ErrorCode::kInvalidArgument, "issuer is not a CA certificate");
  ET_ASSIGN_OR_RETURN(Bytes issuer_spki, issuer_key.PublicKeyDer());
  if (issuer_spki != issuer.public_key_der) {
    return MakeError(ErrorCode::kInvalidArgument, "issuer key does not match the issuer certificate");
  }
  ET_ASSIGN_OR_RETURN(Bytes issuer_name, RawSubjectName(issuer.der));
  Bytes issuer_ski = issuer.ski;
  if (issuer_ski.empty()) {
    ET_ASSIGN_OR_RETURN(issuer_ski, KeyIdentifier(issuer.public_key_der));
  }
  return Issue(issuer_name, issuer_ski, issuer_key, request, false);
}

Result<Certificate> CreateSelfSignedCa(const PrivateKey& key, const DistinguishedName& subject,
                                       int days) {
  if (days <= 0) return MakeError(ErrorCode::kInvalidArgument, "days must be positive");
  IssueRequest req;
  req.subject = subject;
  ET_ASSIGN_OR_RETURN(req.public_key_der, key.PublicKeyDer());
  req.not_before = UnixNow() - 3600;
  req.not_after = UnixNow() + int64_t{days} * 86400;
  req.is_ca = true;
  return Issue({}, {}, key, req, true);
}

}  // namespace edgetrust::pki
