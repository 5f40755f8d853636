// Keys inside a PKCS#11 token (the factory HSM; SoftHSM2 in tests). The module is loaded with
// dlopen and driven with raw PKCS#11 calls; token keys sign with C_Sign and never leave it.
#pragma once

#include <memory>
#include <string>

#include "edgetrust/common/result.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::pki {

namespace internal {
struct Pkcs11Session;
}

// One logged-in session on one token. Move-only. Keys obtained from it keep the session alive
// (shared), so the token may be closed before its keys are dropped.
class Pkcs11Token {
 public:
  // module_path: e.g. /usr/lib/softhsm/libsofthsm2.so; token_label: the label given at init.
  // kUnavailable if the module cannot be loaded or the token is absent; kUnauthenticated on a bad PIN.
  static Result<Pkcs11Token> Open(const std::string& module_path, const std::string& token_label,
                                  const std::string& pin);

  Pkcs11Token(Pkcs11Token&&) noexcept;
  Pkcs11Token& operator=(Pkcs11Token&&) noexcept;
  Pkcs11Token(const Pkcs11Token&) = delete;
  Pkcs11Token& operator=(const Pkcs11Token&) = delete;
  ~Pkcs11Token();

  // Generates a persistent (CKA_TOKEN), sensitive, non-extractable key pair labelled `label`
  // inside the token. Only kEcdsaP256. kAlreadyExists if a private key with that label exists.
  Result<PrivateKey> GenerateKey(const std::string& label, KeyType type = KeyType::kEcdsaP256);
  // The private key labelled `label`; kNotFound if none.
  Result<PrivateKey> FindKey(const std::string& label);

 private:
  explicit Pkcs11Token(std::shared_ptr<internal::Pkcs11Session> session);
  std::shared_ptr<internal::Pkcs11Session> session_;
};

}  // namespace edgetrust::pki
