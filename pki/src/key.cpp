// Software keys (wolfCrypt ecc_key / ed25519_key), SubjectPublicKeyInfo handling, detached
// signatures and SHA-256.
#include "wolf.h"
// wolf.h first: it carries wolfSSL's options.h.
#include <mutex>

#include "der.h"
#include "edgetrust/pki/key.h"
#include "key_impl.h"

namespace edgetrust::pki {

using internal::DerReader;
using internal::Tlv;
namespace tag = internal::tag;
namespace oid = internal::oid;

namespace internal {

namespace {

Bytes AlgId(ByteView algorithm, ByteView parameter_oid) {
  const Bytes a = DerTlv(tag::kOid, algorithm);
  if (parameter_oid.empty()) return DerSeq({a});
  return DerSeq({a, DerTlv(tag::kOid, parameter_oid)});
}

class SoftEccKey final : public KeyImpl {
 public:
  SoftEccKey() { wc_ecc_init(&key_); }
  ~SoftEccKey() override { wc_ecc_free(&key_); }
  SoftEccKey(const SoftEccKey&) = delete;
  SoftEccKey& operator=(const SoftEccKey&) = delete;

  ecc_key* raw() { return &key_; }

  // Checks the curve, derives the public point if absent and caches the SPKI.
  Status Finish() {
    if (wc_ecc_get_curve_id(key_.idx) != ECC_SECP256R1) {
      return MakeError(ErrorCode::kInvalidArgument, "EC key is not on P-256");
    }
    if (key_.type == ECC_PRIVATEKEY_ONLY) {
      int ret = wc_ecc_make_pub(&key_, nullptr);
      if (ret != 0) return WolfError(ErrorCode::kInvalidArgument, "derive EC public key", ret);
    }
    if (key_.type != ECC_PRIVATEKEY) {
      return MakeError(ErrorCode::kInvalidArgument, "EC key has no private part");
    }
    uint8_t point[65];
    word32 len = sizeof point;
    int ret = wc_ecc_export_x963(&key_, point, &len);
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "export EC public key", ret);
    spki_ = EcP256Spki(ByteView(point, len));
    return OkStatus();
  }

  KeyType type() const override { return KeyType::kEcdsaP256; }
  bool in_token() const override { return false; }
  const Bytes& spki() const override { return spki_; }

  Result<Bytes> ToPkcs8() const override {
    std::lock_guard lock(mu_);
    uint8_t sec1[256];
    int len = wc_EccKeyToDer(&key_, sec1, sizeof sec1);
    if (len <= 0) return WolfError(ErrorCode::kCrypto, "encode EC key", len);
    return DerSeq({DerSmallInteger(0), AlgId(oid::kEcPublicKey, oid::kPrime256v1),
                   DerOctetString(ByteView(sec1, static_cast<size_t>(len)))});
  }

  Result<Bytes> Sign(ByteView msg) const override {
    WC_RNG* rng = ThreadRng();
    if (!rng) return MakeError(ErrorCode::kCrypto, "no random number generator");
    uint8_t hash[WC_SHA256_DIGEST_SIZE];
    int ret = wc_Sha256Hash(NonNull(msg), static_cast<word32>(msg.size()), hash);
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "SHA-256", ret);
    uint8_t sig[80];
    word32 sig_len = sizeof sig;
    {
      std::lock_guard lock(mu_);
      ret = wc_ecc_sign_hash(hash, sizeof hash, sig, &sig_len, rng, &key_);
    }
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "ECDSA sign", ret);
    return Bytes(sig, sig + sig_len);
  }

 private:
  // wolfCrypt mutates an ecc_key while signing; one signature at a time per key.
  mutable std::mutex mu_;
  mutable ecc_key key_{};
  Bytes spki_;
};

class SoftEd25519Key final : public KeyImpl {
 public:
  SoftEd25519Key() { wc_ed25519_init(&key_); }
  ~SoftEd25519Key() override { wc_ed25519_free(&key_); }
  SoftEd25519Key(const SoftEd25519Key&) = delete;
  SoftEd25519Key& operator=(const SoftEd25519Key&) = delete;

  ed25519_key* raw() { return &key_; }

  // Imports a 32-byte seed and derives the public key.
  Status ImportSeed(ByteView seed) {
    if (seed.size() != ED25519_KEY_SIZE) {
      return MakeError(ErrorCode::kInvalidArgument, "Ed25519 private key must be 32 bytes");
    }
    int ret = wc_ed25519_import_private_only(seed.data(), ED25519_KEY_SIZE, &key_);
    if (ret != 0) return WolfError(ErrorCode::kInvalidArgument, "import Ed25519 key", ret);
    uint8_t pub[ED25519_PUB_KEY_SIZE];
    ret = wc_ed25519_make_public(&key_, pub, sizeof pub);
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "derive Ed25519 public key", ret);
    ret = wc_ed25519_import_private_key(seed.data(), ED25519_KEY_SIZE, pub, sizeof pub, &key_);
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "import Ed25519 key pair", ret);
    return Finish();
  }

  Status Finish() {
    uint8_t pub[ED25519_PUB_KEY_SIZE];
    word32 len = sizeof pub;
    int ret = wc_ed25519_export_public(&key_, pub, &len);
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "export Ed25519 public key", ret);
    spki_ = Ed25519Spki(ByteView(pub, len));
    return OkStatus();
  }

  KeyType type() const override { return KeyType::kEd25519; }
  bool in_token() const override { return false; }
  const Bytes& spki() const override { return spki_; }

  Result<Bytes> ToPkcs8() const override {
    uint8_t seed[ED25519_KEY_SIZE];
    word32 len = sizeof seed;
    int ret;
    {
      std::lock_guard lock(mu_);
      ret = wc_ed25519_export_private_only(&key_, seed, &len);
    }
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "export Ed25519 key", ret);
    // RFC 8410: privateKey is an OCTET STRING holding the CurvePrivateKey OCTET STRING.
    Bytes out = DerSeq({DerSmallInteger(0), AlgId(oid::kEd25519, {}),
                        DerOctetString(DerOctetString(ByteView(seed, len)))});
    internal::Wipe(seed, sizeof seed);
    return out;
  }

  Result<Bytes> Sign(ByteView msg) const override {
    uint8_t sig[ED25519_SIG_SIZE];
    word32 sig_len = sizeof sig;
    int ret;
    {
      std::lock_guard lock(mu_);
      ret = wc_ed25519_sign_msg(NonNull(msg), static_cast<word32>(msg.size()), sig, &sig_len, &key_);
    }
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "Ed25519 sign", ret);
    return Bytes(sig, sig + sig_len);
  }

 private:
  mutable std::mutex mu_;
  mutable ed25519_key key_{};
  Bytes spki_;
};

Result<std::unique_ptr<KeyImpl>> EccFromSec1(ByteView sec1) {
  auto key = std::make_unique<SoftEccKey>();
  word32 idx = 0;
  int ret = wc_EccPrivateKeyDecode(sec1.data(), &idx, key->raw(), static_cast<word32>(sec1.size()));
  if (ret != 0) return WolfError(ErrorCode::kInvalidArgument, "decode EC private key", ret);
  ET_RETURN_IF_ERROR(key->Finish());
  return std::unique_ptr<KeyImpl>(std::move(key));
}

Result<std::unique_ptr<KeyImpl>> KeyFromDer(ByteView der) {
  ET_ASSIGN_OR_RETURN(Tlv outer, ParseSingle(der, tag::kSequence, "private key"));
  DerReader r(outer.content);
  ET_ASSIGN_OR_RETURN(Tlv version, r.Expect(tag::kInteger, "private key version"));
  if (r.PeekTag(tag::kOctetString)) {
    return EccFromSec1(der);  // SEC1 ECPrivateKey: version 1, then the private OCTET STRING.
  }
  if (version.content.size() != 1 || version.content[0] > 1) {
    return MakeError(ErrorCode::kInvalidArgument, "unsupported PKCS#8 version");
  }
  ET_ASSIGN_OR_RETURN(Tlv alg, r.Expect(tag::kSequence, "PKCS#8 algorithm"));
  ET_ASSIGN_OR_RETURN(Tlv priv, r.Expect(tag::kOctetString, "PKCS#8 private key"));
  DerReader ar(alg.content);
  ET_ASSIGN_OR_RETURN(Tlv alg_oid, ar.Expect(tag::kOid, "PKCS#8 algorithm oid"));
  if (internal::Equal(alg_oid.content, oid::kEcPublicKey)) {
    ET_ASSIGN_OR_RETURN(Tlv curve, ar.Expect(tag::kOid, "EC curve"));
    if (!internal::Equal(curve.content, oid::kPrime256v1)) {
      return MakeError(ErrorCode::kInvalidArgument, "EC key is not on P-256");
    }
    return EccFromSec1(priv.content);
  }
  if (internal::Equal(alg_oid.content, oid::kEd25519)) {
    ET_ASSIGN_OR_RETURN(Tlv seed, ParseSingle(priv.content, tag::kOctetString, "Ed25519 key"));
    auto key = std::make_unique<SoftEd25519Key>();
    ET_RETURN_IF_ERROR(key->ImportSeed(seed.content));
    return std::unique_ptr<KeyImpl>(std::move(key));
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unsupported private key algorithm (want EC P-256 or Ed25519)");
}

}  // namespace

Result<SpkiInfo> ParseSpki(ByteView spki_der) {
  ET_ASSIGN_OR_RETURN(Tlv outer, ParseSingle(spki_der, tag::kSequence, "public key"));
  DerReader r(outer.content);
  ET_ASSIGN_OR_RETURN(Tlv alg, r.Expect(tag::kSequence, "public key algorithm"));
  ET_ASSIGN_OR_RETURN(Tlv bits, r.Expect(tag::kBitString, "public key bits"));
  if (!r.empty()) return MakeError(ErrorCode::kInvalidArgument, "public key: trailing data");
  if (bits.content.empty() || bits.content[0] != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "public key: bad BIT STRING");
  }
  DerReader ar(alg.content);
  ET_ASSIGN_OR_RETURN(Tlv alg_oid, ar.Expect(tag::kOid, "public key algorithm oid"));
  const ByteView key = bits.content.subspan(1);
  if (Equal(alg_oid.content, oid::kEcPublicKey)) {
    ET_ASSIGN_OR_RETURN(Tlv curve, ar.Expect(tag::kOid, "EC curve"));
    if (!Equal(curve.content, oid::kPrime256v1)) {
      return MakeError(ErrorCode::kInvalidArgument, "EC public key is not on P-256");
    }
    if (!((key.size() == 65 && key[0] == 0x04) ||
          (key.size() == 33 && (key[0] == 0x02 || key[0] == 0x03)))) {
      return MakeError(ErrorCode::kInvalidArgument, "EC public key: bad point encoding");
    }
    return SpkiInfo{KeyType::kEcdsaP256, key};
  }
  if (Equal(alg_oid.content, oid::kEd25519)) {
    if (!ar.empty()) return MakeError(ErrorCode::kInvalidArgument, "Ed25519 key: parameters present");
    if (key.size() != ED25519_PUB_KEY_SIZE) {
      return MakeError(ErrorCode::kInvalidArgument, "Ed25519 public key must be 32 bytes");
    }
    return SpkiInfo{KeyType::kEd25519, key};
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unsupported public key algorithm (want EC P-256 or Ed25519)");
}

Bytes EcP256Spki(ByteView x963_point) {
  return DerSeq({AlgId(oid::kEcPublicKey, oid::kPrime256v1), DerBitString(x963_point)});
}

Bytes Ed25519Spki(ByteView public_key) {
  return DerSeq({AlgId(oid::kEd25519, {}), DerBitString(public_key)});
}

Result<Bytes> EcdsaRawToDer(ByteView rs) {
  if (rs.size() != 64) return MakeError(ErrorCode::kCrypto, "ECDSA signature must be 64 bytes raw");
  return DerSeq({DerUnsignedInteger(rs.first(32)), DerUnsignedInteger(rs.subspan(32))});
}

Bytes SignatureAlgorithm(KeyType type) {
  return type == KeyType::kEd25519 ? AlgId(oid::kEd25519, {}) : AlgId(oid::kEcdsaWithSha256, {});
}

Result<KeyType> SignatureAlgorithmKeyType(ByteView algorithm_identifier_der) {
  ET_ASSIGN_OR_RETURN(Tlv alg, ParseSingle(algorithm_identifier_der, tag::kSequence, "signature algorithm"));
  DerReader r(alg.content);
  ET_ASSIGN_OR_RETURN(Tlv o, r.Expect(tag::kOid, "signature algorithm oid"));
  // Parameters must be absent for both (RFC 5758, RFC 8410); a NULL is tolerated for ECDSA.
  if (Equal(o.content, oid::kEcdsaWithSha256)) {
    if (!r.empty()) {
      ET_ASSIGN_OR_RETURN(Tlv p, r.Next());
      if (p.tag != tag::kNull || !p.content.empty() || !r.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, "ecdsa-with-SHA256: unexpected parameters");
      }
    }
    return KeyType::kEcdsaP256;
  }
  if (Equal(o.content, oid::kEd25519)) {
    if (!r.empty()) return MakeError(ErrorCode::kInvalidArgument, "Ed25519: unexpected parameters");
    return KeyType::kEd25519;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unsupported signature algorithm (want ecdsa-with-SHA256 or Ed25519)");
}

}  // namespace internal

std::string_view KeyTypeName(KeyType type) {
  return type == KeyType::kEd25519 ? "ed25519" : "ecdsa-p256";
}

PrivateKey::PrivateKey(std::unique_ptr<internal::KeyImpl> impl) : impl_(std::move(impl)) {}
PrivateKey::PrivateKey(PrivateKey&&) noexcept = default;
PrivateKey& PrivateKey::operator=(PrivateKey&&) noexcept = default;
PrivateKey::~PrivateKey() = default;

Result<PrivateKey> PrivateKey::Generate(KeyType type) {
  internal::EnsureWolfInit();
  WC_RNG* rng = internal::ThreadRng();
  if (!rng) return MakeError(ErrorCode::kCrypto, "no random number generator");
  if (type == KeyType::kEcdsaP256) {
    auto key = std::make_unique<internal::SoftEccKey>();
    int ret = wc_ecc_make_key_ex(rng, 32, key->raw(), ECC_SECP256R1);
    if (ret != 0) return internal::WolfError(ErrorCode::kCrypto, "generate P-256 key", ret);
    ET_RETURN_IF_ERROR(key->Finish());
    return PrivateKey(std::move(key));
  }
  auto key = std::make_unique<internal::SoftEd25519Key>();
  int ret = wc_ed25519_make_key(rng, ED25519_KEY_SIZE, key->raw());
  if (ret != 0) return internal::WolfError(ErrorCode::kCrypto, "generate Ed25519 key", ret);
  ET_RETURN_IF_ERROR(key->Finish());
  return PrivateKey(std::move(key));
}

Result<PrivateKey> PrivateKey::FromDer(ByteView der) {
  internal::EnsureWolfInit();
  ET_ASSIGN_OR_RETURN(auto impl, internal::KeyFromDer(der));
  return PrivateKey(std::move(impl));
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  for (const char* label : {"PRIVATE KEY", "EC PRIVATE KEY"}) {
    auto der = internal::PemDecode(pem, label);
    if (der.ok()) {
      auto key = FromDer(*der);
      internal::Wipe(der->data(), der->size());
      return key;
    }
    if (der.error().code != ErrorCode::kNotFound) return std::move(der).error();
  }
  if (pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string_view::npos ||
      pem.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "encrypted private keys are not supported");
  }
  return MakeError(ErrorCode::kInvalidArgument, "no PRIVATE KEY or EC PRIVATE KEY PEM block");
}

KeyType PrivateKey::type() const { return impl_->type(); }
bool PrivateKey::in_token() const { return impl_->in_token(); }

Result<Bytes> PrivateKey::ToDer() const { return impl_->ToPkcs8(); }

Result<std::string> PrivateKey::ToPem() const {
  ET_ASSIGN_OR_RETURN(Bytes der, impl_->ToPkcs8());
  std::string pem = internal::PemEncode(der, "PRIVATE KEY");
  internal::Wipe(der.data(), der.size());
  return pem;
}

Result<Bytes> PrivateKey::PublicKeyDer() const { return impl_->spki(); }

Result<Bytes> PrivateKey::Sign(ByteView msg) const { return impl_->Sign(msg); }

Result<KeyType> PublicKeyType(ByteView spki_der) {
  ET_ASSIGN_OR_RETURN(internal::SpkiInfo info, internal::ParseSpki(spki_der));
  return info.type;
}

Status VerifySignature(ByteView spki_der, ByteView msg, ByteView sig) {
  internal::EnsureWolfInit();
  ET_ASSIGN_OR_RETURN(internal::SpkiInfo info, internal::ParseSpki(spki_der));
  const Error bad = MakeError(ErrorCode::kUnauthenticated, "signature does not verify");
  if (info.type == KeyType::kEd25519) {
    if (sig.size() != ED25519_SIG_SIZE) return bad;
    ed25519_key key;
    wc_ed25519_init(&key);
    int ret = wc_ed25519_import_public(info.key.data(), static_cast<word32>(info.key.size()), &key);
    int ok = 0;
    if (ret == 0) {
      ret = wc_ed25519_verify_msg(sig.data(), static_cast<word32>(sig.size()), internal::NonNull(msg),
                                  static_cast<word32>(msg.size()), &ok, &key);
    }
    wc_ed25519_free(&key);
    if (ret == PUBLIC_KEY_E || ret == BAD_FUNC_ARG) {
      return internal::WolfError(ErrorCode::kInvalidArgument, "Ed25519 public key", ret);
    }
    return ret == 0 && ok == 1 ? OkStatus() : Status(bad);
  }
  if (sig.empty() || sig.size() > 80) return bad;
  uint8_t hash[WC_SHA256_DIGEST_SIZE];
  int ret = wc_Sha256Hash(internal::NonNull(msg), static_cast<word32>(msg.size()), hash);
  if (ret != 0) return internal::WolfError(ErrorCode::kCrypto, "SHA-256", ret);
  ecc_key key;
  ret = wc_ecc_init(&key);
  if (ret != 0) return internal::WolfError(ErrorCode::kCrypto, "ecc init", ret);
  ret = wc_ecc_import_x963_ex(info.key.data(), static_cast<word32>(info.key.size()), &key,
                              ECC_SECP256R1);
  if (ret != 0) {
    wc_ecc_free(&key);
    return internal::WolfError(ErrorCode::kInvalidArgument, "EC public key", ret);
  }
  int ok = 0;
  ret = wc_ecc_verify_hash(sig.data(), static_cast<word32>(sig.size()), hash, sizeof hash, &ok,
                           &key);
  wc_ecc_free(&key);
  return ret == 0 && ok == 1 ? OkStatus() : Status(bad);
}

Sha256Digest Sha256(ByteView data) {
  Sha256Digest out{};
  wc_Sha256Hash(internal::NonNull(data), static_cast<word32>(data.size()), out.data());
  return out;
}

void ReleaseThreadCaches() {
#ifdef FP_ECC
  wc_ecc_fp_free();
#endif
}

}  // namespace edgetrust::pki
