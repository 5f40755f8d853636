// PKCS#11 keys through raw Cryptoki calls on a dlopen()ed module. wolfSSL's own PKCS#11 layer
// (wc_Pkcs11 + crypto callbacks) wants a devId per key and its own key-generation templates;
// calling C_GenerateKeyPair / C_Sign directly keeps the templates explicit (CKA_TOKEN,
// CKA_SENSITIVE, !CKA_EXTRACTABLE) and lets a token key sign through the same PrivateKey::Sign
// as a software key, so certificate and CSR code does not care where the key lives.
#include "wolf.h"
// wolf.h first: it carries wolfSSL's options.h.
#include <dlfcn.h>
#include <wolfssl/wolfcrypt/pkcs11.h>

#include <cstring>
#include <map>
#include <optional>
#include <mutex>

#include "der.h"
#include "edgetrust/pki/pkcs11.h"
#include "key_impl.h"

namespace edgetrust::pki {

namespace internal {

namespace {

constexpr CK_RV kCkrPinIncorrect = 0xA0;
constexpr CK_RV kCkrPinLocked = 0xA4;
constexpr CK_RV kCkrUserAlreadyLoggedIn = 0x100;
constexpr CK_RV kCkrCryptokiAlreadyInitialized = 0x191;

// DER of the P-256 named-curve OID, as CKA_EC_PARAMS wants it.
constexpr uint8_t kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

Error CkError(ErrorCode code, const std::string& what, CK_RV rv) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%lx", rv);
  return MakeError(code, "PKCS#11 " + what + " failed: CKR " + buf);
}

// One loaded and initialised module, shared by every token opened on it: C_Initialize may be
// called once per process, and C_Finalize only when nobody uses the module any more.
class Pkcs11Module {
 public:
  static Result<std::shared_ptr<Pkcs11Module>> Get(const std::string& path) {
    static std::mutex mu;
    static std::map<std::string, std::weak_ptr<Pkcs11Module>> loaded;
    std::lock_guard lock(mu);
    if (auto m = loaded[path].lock()) return m;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* err = dlerror();
      return MakeError(ErrorCode::kUnavailable,
                       "cannot load PKCS#11 module " + path + ": " + (err ? err : "?"));
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    CK_FUNCTION_LIST_PTR fl = nullptr;
    if (!get_list || get_list(&fl) != CKR_OK || !fl) {
      dlclose(handle);
      return MakeError(ErrorCode::kUnavailable, path + " is not a PKCS#11 module");
    }
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = fl->C_Initialize(&args);
    if (rv != CKR_OK && rv != kCkrCryptokiAlreadyInitialized) {
      dlclose(handle);
      return CkError(ErrorCode::kUnavailable, "C_Initialize", rv);
    }
    auto m = std::shared_ptr<Pkcs11Module>(new Pkcs11Module(handle, fl, rv == CKR_OK));
    loaded[path] = m;
    return m;
  }

  ~Pkcs11Module() {
    if (finalize_) fl_->C_Finalize(nullptr);
    dlclose(handle_);
  }
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  CK_FUNCTION_LIST_PTR fl() const { return fl_; }

 private:
  Pkcs11Module(void* handle, CK_FUNCTION_LIST_PTR fl, bool finalize)
      : handle_(handle), fl_(fl), finalize_(finalize) {}
  void* handle_;
  CK_FUNCTION_LIST_PTR fl_;
  bool finalize_;
};

}  // namespace

struct Pkcs11Session {
  std::shared_ptr<Pkcs11Module> module;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  // A PKCS#11 session runs one operation at a time.
  std::mutex mu;

  ~Pkcs11Session() {
    if (session != CK_INVALID_HANDLE) module->fl()->C_CloseSession(session);
  }
  CK_FUNCTION_LIST_PTR fl() const { return module->fl(); }

  // Objects of `cls` labelled `label`. Caller holds mu.
  Result<std::vector<CK_OBJECT_HANDLE>> Find(CK_OBJECT_CLASS cls, const std::string& label) {
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())},
    };
    CK_RV rv = fl()->C_FindObjectsInit(session, tmpl, 2);
    if (rv != CKR_OK) return CkError(ErrorCode::kUnavailable, "C_FindObjectsInit", rv);
    std::vector<CK_OBJECT_HANDLE> out;
    CK_OBJECT_HANDLE batch[16];
    CK_ULONG n = 0;
    do {
      rv = fl()->C_FindObjects(session, batch, 16, &n);
      if (rv != CKR_OK) break;
      out.insert(out.end(), batch, batch + n);
    } while (n == 16);
    fl()->C_FindObjectsFinal(session);
    if (rv != CKR_OK) return CkError(ErrorCode::kUnavailable, "C_FindObjects", rv);
    return out;
  }

  // A variable-length attribute. Caller holds mu.
  Result<Bytes> Attribute(CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, const char* what) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    CK_RV rv = fl()->C_GetAttributeValue(session, obj, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == static_cast<CK_ULONG>(-1)) {
      return CkError(ErrorCode::kUnavailable, std::string("read ") + what, rv);
    }
    Bytes value(a.ulValueLen);
    a.pValue = value.data();
    rv = fl()->C_GetAttributeValue(session, obj, &a, 1);
    if (rv != CKR_OK) return CkError(ErrorCode::kUnavailable, std::string("read ") + what, rv);
    value.resize(a.ulValueLen);
    return value;
  }
};

namespace {

class Pkcs11Key final : public KeyImpl {
 public:
  Pkcs11Key(std::shared_ptr<Pkcs11Session> session, CK_OBJECT_HANDLE handle, Bytes spki)
      : session_(std::move(session)), handle_(handle), spki_(std::move(spki)) {}

  KeyType type() const override { return KeyType::kEcdsaP256; }
  bool in_token() const override { return true; }
  const Bytes& spki() const override { return spki_; }
  Result<Bytes> ToPkcs8() const override {
    return MakeError(ErrorCode::kFailedPrecondition, "the key lives in a PKCS#11 token and cannot be exported");
  }

  Result<Bytes> Sign(ByteView msg) const override {
    uint8_t hash[WC_SHA256_DIGEST_SIZE];
    int ret = wc_Sha256Hash(internal::NonNull(msg), static_cast<word32>(msg.size()), hash);
    if (ret != 0) return WolfError(ErrorCode::kCrypto, "SHA-256", ret);
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    uint8_t raw[64];
    CK_ULONG raw_len = sizeof raw;
    std::lock_guard lock(session_->mu);
    CK_RV rv = session_->fl()->C_SignInit(session_->session, &mech, handle_);
    if (rv != CKR_OK) return CkError(ErrorCode::kUnavailable, "C_SignInit", rv);
    rv = session_->fl()->C_Sign(session_->session, hash, sizeof hash, raw, &raw_len);
    if (rv != CKR_OK) return CkError(ErrorCode::kUnavailable, "C_Sign", rv);
    return EcdsaRawToDer(ByteView(raw, raw_len));
  }

 private:
  std::shared_ptr<Pkcs11Session> session_;
  CK_OBJECT_HANDLE handle_;
  Bytes spki_;
};

// CKA_EC_POINT is a DER OCTET STRING around the X9.63 point; some tokens give the bare point.
Result<Bytes> SpkiFromEcPoint(const Bytes& ec_point) {
  ByteView point = ec_point;
  if (!(point.size() == 65 && point[0] == 0x04)) {
    ET_ASSIGN_OR_RETURN(Tlv os, ParseSingle(point, tag::kOctetString, "CKA_EC_POINT"));
    point = os.content;
  }
  if (point.size() != 65 || point[0] != 0x04) {
    return MakeError(ErrorCode::kInvalidArgument, "token key is not an uncompressed P-256 point");
  }
  return EcP256Spki(point);
}

}  // namespace
}  // namespace internal

Pkcs11Token::Pkcs11Token(std::shared_ptr<internal::Pkcs11Session> session)
    : session_(std::move(session)) {}
Pkcs11Token::Pkcs11Token(Pkcs11Token&&) noexcept = default;
Pkcs11Token& Pkcs11Token::operator=(Pkcs11Token&&) noexcept = default;
Pkcs11Token::~Pkcs11Token() = default;

Result<Pkcs11Token> Pkcs11Token::Open(const std::string& module_path, const std::string& token_label,
                                      const std::string& pin) {
  internal::EnsureWolfInit();
  ET_ASSIGN_OR_RETURN(auto module, internal::Pkcs11Module::Get(module_path));
  CK_FUNCTION_LIST_PTR fl = module->fl();
  CK_ULONG count = 0;
  CK_RV rv = fl->C_GetSlotList(CK_TRUE, nullptr, &count);
  if (rv != CKR_OK) return internal::CkError(ErrorCode::kUnavailable, "C_GetSlotList", rv);
  std::vector<CK_SLOT_ID> slots(count);
  rv = fl->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) return internal::CkError(ErrorCode::kUnavailable, "C_GetSlotList", rv);
  slots.resize(count);
  std::optional<CK_SLOT_ID> slot;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info{};
    if (fl->C_GetTokenInfo(s, &info) != CKR_OK) continue;
    std::string label(reinterpret_cast<const char*>(info.label), sizeof info.label);
    label.erase(label.find_last_not_of(' ') + 1);
    if (label == token_label) {
      slot = s;
      break;
    }
  }
  if (!slot) {
    return MakeError(ErrorCode::kUnavailable, "no PKCS#11 token labelled \"" + token_label + "\"");
  }
  auto session = std::make_shared<internal::Pkcs11Session>();
  session->module = std::move(module);
  rv = fl->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                         &session->session);
  if (rv != CKR_OK) return internal::CkError(ErrorCode::kUnavailable, "C_OpenSession", rv);
  rv = fl->C_Login(session->session, CKU_USER,
                   reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())),
                   static_cast<CK_ULONG>(pin.size()));
  if (rv == internal::kCkrPinIncorrect || rv == internal::kCkrPinLocked) {
    return internal::CkError(ErrorCode::kUnauthenticated, "C_Login (PIN)", rv);
  }
  if (rv != CKR_OK && rv != internal::kCkrUserAlreadyLoggedIn) {
    return internal::CkError(ErrorCode::kUnavailable, "C_Login", rv);
  }
  return Pkcs11Token(std::move(session));
}

Result<PrivateKey> Pkcs11Token::GenerateKey(const std::string& label, KeyType type) {
  if (type != KeyType::kEcdsaP256) {
    return MakeError(ErrorCode::kInvalidArgument, "token keys are ECDSA P-256 only");
  }
  if (label.empty()) return MakeError(ErrorCode::kInvalidArgument, "token key needs a label");
  auto& s = *session_;
  std::unique_lock lock(s.mu);
  ET_ASSIGN_OR_RETURN(auto existing, s.Find(CKO_PRIVATE_KEY, label));
  if (!existing.empty()) {
    return MakeError(ErrorCode::kAlreadyExists, "token already holds a key labelled \"" + label + "\"");
  }
  uint8_t id[16];
  WC_RNG* rng = internal::ThreadRng();
  if (!rng || wc_RNG_GenerateBlock(rng, id, sizeof id) != 0) {
    return MakeError(ErrorCode::kCrypto, "no random number generator");
  }
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_KEY_TYPE key_type = CKK_EC;
  auto* label_ptr = const_cast<char*>(label.data());
  const auto label_len = static_cast<CK_ULONG>(label.size());
  CK_ATTRIBUTE pub_tmpl[] = {
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &no, sizeof no},
      {CKA_VERIFY, &yes, sizeof yes},
      {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_EC_PARAMS, const_cast<uint8_t*>(internal::kP256Params), sizeof internal::kP256Params},
      {CKA_LABEL, label_ptr, label_len},
      {CKA_ID, id, sizeof id},
  };
  CK_ATTRIBUTE priv_tmpl[] = {
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no},
      {CKA_SIGN, &yes, sizeof yes},
      {CKA_KEY_TYPE, &key_type, sizeof key_type},
      {CKA_LABEL, label_ptr, label_len},
      {CKA_ID, id, sizeof id},
  };
  CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
  CK_RV rv = s.fl()->C_GenerateKeyPair(s.session, &mech, pub_tmpl, std::size(pub_tmpl), priv_tmpl,
                                       std::size(priv_tmpl), &pub, &priv);
  if (rv != CKR_OK) return internal::CkError(ErrorCode::kUnavailable, "C_GenerateKeyPair", rv);
  ET_ASSIGN_OR_RETURN(Bytes point, s.Attribute(pub, CKA_EC_POINT, "CKA_EC_POINT"));
  ET_ASSIGN_OR_RETURN(Bytes spki, internal::SpkiFromEcPoint(point));
  lock.unlock();
  return PrivateKey(std::make_unique<internal::Pkcs11Key>(session_, priv, std::move(spki)));
}

Result<PrivateKey> Pkcs11Token::FindKey(const std::string& label) {
  auto& s = *session_;
  std::unique_lock lock(s.mu);
  ET_ASSIGN_OR_RETURN(auto privs, s.Find(CKO_PRIVATE_KEY, label));
  if (privs.empty()) return MakeError(ErrorCode::kNotFound, "no token key labelled \"" + label + "\"");
  if (privs.size() > 1) {
    return MakeError(ErrorCode::kFailedPrecondition, "several token keys labelled \"" + label + "\"");
  }
  ET_ASSIGN_OR_RETURN(Bytes kt, s.Attribute(privs[0], CKA_KEY_TYPE, "CKA_KEY_TYPE"));
  CK_KEY_TYPE key_type = 0;
  if (kt.size() == sizeof key_type) std::memcpy(&key_type, kt.data(), sizeof key_type);
  if (key_type != CKK_EC) {
    return MakeError(ErrorCode::kInvalidArgument, "token key \"" + label + "\" is not an EC key");
  }
  ET_ASSIGN_OR_RETURN(Bytes params, s.Attribute(privs[0], CKA_EC_PARAMS, "CKA_EC_PARAMS"));
  if (!internal::Equal(params, internal::kP256Params)) {
    return MakeError(ErrorCode::kInvalidArgument, "token key \"" + label + "\" is not on P-256");
  }
  // The point is on the public object (a private key object need not carry it).
  ET_ASSIGN_OR_RETURN(auto pubs, s.Find(CKO_PUBLIC_KEY, label));
  if (pubs.empty()) {
    return MakeError(ErrorCode::kNotFound, "no public key object labelled \"" + label + "\" in the token");
  }
  ET_ASSIGN_OR_RETURN(Bytes point, s.Attribute(pubs[0], CKA_EC_POINT, "CKA_EC_POINT"));
  ET_ASSIGN_OR_RETURN(Bytes spki, internal::SpkiFromEcPoint(point));
  lock.unlock();
  return PrivateKey(std::make_unique<internal::Pkcs11Key>(session_, privs[0], std::move(spki)));
}

}  // namespace edgetrust::pki
