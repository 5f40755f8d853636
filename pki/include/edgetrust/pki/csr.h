// PKCS#10 certificate signing requests.
#pragma once

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::pki {

struct Csr {
  Bytes der;
  DistinguishedName subject;
  Bytes public_key_der;  // SubjectPublicKeyInfo
  KeyType key_type = KeyType::kEcdsaP256;
};

// A DER CSR signed by `key` (the key proves possession; it may be a token key).
Result<Bytes> CreateCsr(const PrivateKey& key, const DistinguishedName& subject);

// Parses and verifies the CSR's self-signature: kInvalidArgument for malformed input,
// kUnauthenticated when the signature does not match the enclosed public key.
Result<Csr> ParseCsrDer(ByteView der);
// "CERTIFICATE REQUEST" PEM.
Result<Csr> ParseCsrPem(std::string_view pem);
std::string CsrToPem(ByteView der);

}  // namespace edgetrust::pki
