// X.509 / PKCS#10 building blocks shared by certificate, issuance and CSR code.
#pragma once

#include "der.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::pki::internal {

// Any signed structure: SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING signature }.
struct SignedParts {
  ByteView tbs;        // the whole to-be-signed TLV
  ByteView algorithm;  // the whole AlgorithmIdentifier TLV
  ByteView signature;  // the signature bytes (BIT STRING content after the unused-bits octet)
};
Result<SignedParts> SplitSigned(ByteView der, const char* what);
// kUnauthenticated unless the algorithm fits the key and the signature verifies.
Status VerifySigned(const SignedParts& parts, ByteView spki_der);
// SEQUENCE { tbs, alg(key), BIT STRING key.Sign(tbs) }.
Result<Bytes> SignStructure(const PrivateKey& key, ByteView tbs);

// Name (the TLV content of the SEQUENCE) → CN/O/OU as raw bytes. Several CNs are refused.
Result<DistinguishedName> ParseName(ByteView name_content);
// A Name SEQUENCE with O, OU, CN as UTF8String (empty attributes left out).
Result<Bytes> EncodeName(const DistinguishedName& name);

// The subject Name TLV inside a certificate (for copying an issuer name byte-for-byte).
Result<Bytes> RawSubjectName(ByteView cert_der);

}  // namespace edgetrust::pki::internal
