// Private keys (in a file, in memory, or inside a PKCS#11 token), detached signatures, SHA-256.
// No wolfSSL type appears here: consumers may also include OpenSSL headers in the same file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust::pki {

enum class KeyType {
  kEcdsaP256,  // default for every certificate; signatures are ECDSA-with-SHA256, DER-encoded
  kEd25519,    // accepted for firmware signing keys (PureEdDSA over the message)
};

std::string_view KeyTypeName(KeyType type);  // "ecdsa-p256" / "ed25519"

namespace internal {
struct KeyImpl;
}
class Pkcs11Token;

// A private key. Move-only. Either software (memory) or a handle to a key that lives inside a
// PKCS#11 token (see pkcs11.h); both sign through Sign(), a token key never leaves the token.
class PrivateKey {
 public:
  static Result<PrivateKey> Generate(KeyType type);
  // Accepts "EC PRIVATE KEY" (SEC1) and "PRIVATE KEY" (PKCS#8, EC P-256 or Ed25519).
  static Result<PrivateKey> FromPem(std::string_view pem);
  // SEC1 or PKCS#8 DER.
  static Result<PrivateKey> FromDer(ByteView der);

  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) noexcept;
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;
  ~PrivateKey();

  KeyType type() const;
  // True when the key lives in a PKCS#11 token (cannot be exported).
  bool in_token() const;

  // PKCS#8 "PRIVATE KEY" PEM, readable by OpenSSL and mosquitto. kFailedPrecondition for a token key.
  Result<std::string> ToPem() const;
  // PKCS#8 DER. kFailedPrecondition for a token key.
  Result<Bytes> ToDer() const;
  // SubjectPublicKeyInfo DER of the matching public key.
  Result<Bytes> PublicKeyDer() const;

  // ECDSA P-256: SHA-256 of msg, DER signature (SEQUENCE{r,s}). Ed25519: 64-byte signature of msg.
  Result<Bytes> Sign(ByteView msg) const;


 private:
  friend class Pkcs11Token;
  explicit PrivateKey(std::unique_ptr<internal::KeyImpl> impl);
  std::unique_ptr<internal::KeyImpl> impl_;
};

// Reads a PEM (or DER) private key file.
Result<PrivateKey> LoadPrivateKeyFile(const std::string& path);
// Writes ToPem() with mode 0600. kAlreadyExists if the file exists and !force.
Status WritePrivateKeyFile(const std::string& path, const PrivateKey& key, bool force);

// Detached signature check. spki_der is a SubjectPublicKeyInfo (ECDSA P-256 or Ed25519).
// kUnauthenticated if the signature does not match; kInvalidArgument for an unusable key.
Status VerifySignature(ByteView spki_der, ByteView msg, ByteView sig);

// Key type of a SubjectPublicKeyInfo; kInvalidArgument if neither P-256 nor Ed25519.
Result<KeyType> PublicKeyType(ByteView spki_der);

Sha256Digest Sha256(ByteView data);

// Frees the calling thread's wolfCrypt fixed-point ECC cache. wolfCrypt (FP_ECC, per thread)
// keeps up to 15 points, each with a 256-point table (about 0.8 MiB with Debian's build), and
// every verification by a key it has not seen evicts one and allocates a new one: a gateway
// that verified a fleet's CSRs holds about 12 MiB for keys it will never see again. Call it
// when a thread's burst of ECC work is over; the next operation rebuilds what it needs.
void ReleaseThreadCaches();

}  // namespace edgetrust::pki
