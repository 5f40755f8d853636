// PKCS#10: built and parsed as DER here; the self-signature is checked with wolfCrypt.
#include "edgetrust/pki/csr.h"

#include "key_impl.h"
#include "x509.h"

namespace edgetrust::pki {

using namespace internal;

Result<Bytes> CreateCsr(const PrivateKey& key, const DistinguishedName& subject) {
  ET_ASSIGN_OR_RETURN(Bytes name, EncodeName(subject));
  ET_ASSIGN_OR_RETURN(Bytes spki, key.PublicKeyDer());
  const Bytes no_attributes = DerTlv(tag::kContext0, {});
  const Bytes info = DerSeq({DerSmallInteger(0), name, spki, no_attributes});
  return SignStructure(key, info);
}

Result<Csr> ParseCsrDer(ByteView der) {
  ET_ASSIGN_OR_RETURN(SignedParts parts, SplitSigned(der, "certificate request"));
  ET_ASSIGN_OR_RETURN(Tlv info, ParseSingle(parts.tbs, tag::kSequence, "certificationRequestInfo"));
  DerReader r(info.content);
  ET_ASSIGN_OR_RETURN(Tlv version, r.Expect(tag::kInteger, "CSR version"));
  if (version.content.size() != 1 || version.content[0] != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "CSR: unsupported version");
  }
  ET_ASSIGN_OR_RETURN(Tlv subject, r.Expect(tag::kSequence, "CSR subject"));
  ET_ASSIGN_OR_RETURN(Tlv spki, r.Expect(tag::kSequence, "CSR public key"));
  if (r.PeekTag(tag::kContext0)) ET_RETURN_IF_ERROR(r.Next());  // attributes: not used
  if (!r.empty()) return MakeError(ErrorCode::kInvalidArgument, "CSR: trailing data");

  Csr csr;
  ET_ASSIGN_OR_RETURN(csr.subject, ParseName(subject.content));
  ET_ASSIGN_OR_RETURN(SpkiInfo key, ParseSpki(spki.whole));
  csr.key_type = key.type;
  csr.public_key_der.assign(spki.whole.begin(), spki.whole.end());
  Status sig = VerifySigned(parts, csr.public_key_der);
  if (!sig.ok()) {
    return MakeError(ErrorCode::kUnauthenticated, "CSR self-signature: " + sig.error().message);
  }
  csr.der.assign(der.begin(), der.end());
  return csr;
}

Result<Csr> ParseCsrPem(std::string_view pem) {
  auto der = PemDecode(pem, "CERTIFICATE REQUEST");
  if (!der.ok() && der.error().code == ErrorCode::kNotFound) {
    der = PemDecode(pem, "NEW CERTIFICATE REQUEST");
  }
  if (!der.ok()) return MakeError(ErrorCode::kInvalidArgument, der.error().message);
  return ParseCsrDer(*der);
}

std::string CsrToPem(ByteView der) { return PemEncode(der, "CERTIFICATE REQUEST"); }

}  // namespace edgetrust::pki
