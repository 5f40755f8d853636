// What a PrivateKey is inside: a software key (key.cpp) or a PKCS#11 token key (pkcs11.cpp).
#pragma once

#include "edgetrust/pki/key.h"

namespace edgetrust::pki::internal {

struct KeyImpl {
  virtual ~KeyImpl() = default;
  virtual KeyType type() const = 0;
  virtual bool in_token() const = 0;
  // PKCS#8 DER; kFailedPrecondition for a key that must not leave its token.
  virtual Result<Bytes> ToPkcs8() const = 0;
  // SubjectPublicKeyInfo DER, computed once at construction.
  virtual const Bytes& spki() const = 0;
  // ECDSA: DER signature over SHA-256(msg). Ed25519: 64-byte signature over msg.
  virtual Result<Bytes> Sign(ByteView msg) const = 0;
};

struct SpkiInfo {
  KeyType type;
  ByteView key;  // EC: the X9.63 point; Ed25519: the 32-byte public key
};
Result<SpkiInfo> ParseSpki(ByteView spki_der);
Bytes EcP256Spki(ByteView x963_point);
Bytes Ed25519Spki(ByteView public_key);
// r||s (each 32 bytes, big-endian) to the DER SEQUENCE{INTEGER r, INTEGER s}.
Result<Bytes> EcdsaRawToDer(ByteView rs);
// The AlgorithmIdentifier DER for signatures made by a key of `type`.
Bytes SignatureAlgorithm(KeyType type);
// The key type a signature AlgorithmIdentifier implies; kInvalidArgument if unsupported.
Result<KeyType> SignatureAlgorithmKeyType(ByteView algorithm_identifier_der);

}  // namespace edgetrust::pki::internal
