// A CA key generated inside a real PKCS#11 token (SoftHSM2) that never leaves it.
#include <dlfcn.h>
#include <wolfssl/wolfcrypt/pkcs11.h>

#include <cstdlib>

#include "pki_support.h"

namespace edgetrust::pki::test {
namespace {

using testing::RunCommand;
using testing::TempDir;
using testing::WriteFile;

constexpr char kModule[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr CK_RV kCkrAttributeSensitive = 0x11;
constexpr CK_RV kCkrCryptokiAlreadyInitialized = 0x191;

// Asks the token directly, bypassing edgetrust, for the private key's attributes and value.
void ExpectKeyLockedInToken(const std::string& label) {
  void* lib = dlopen(kModule, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr);
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(lib, "C_GetFunctionList"));
  CK_FUNCTION_LIST_PTR fl = nullptr;
  ASSERT_EQ(get_list(&fl), CKR_OK);
  CK_RV rv = fl->C_Initialize(nullptr);
  ASSERT_TRUE(rv == CKR_OK || rv == kCkrCryptokiAlreadyInitialized) << rv;
  const bool finalize = rv == CKR_OK;
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8;
  ASSERT_EQ(fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  for (CK_ULONG i = 0; i < n && obj == CK_INVALID_HANDLE; ++i) {
    CK_TOKEN_INFO info{};
    if (fl->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    if (std::string(reinterpret_cast<char*>(info.label), 7) != "et-test") continue;
    ASSERT_EQ(fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, nullptr, nullptr, &session), CKR_OK);
    fl->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>("1234")), 4);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                           {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
    ASSERT_EQ(fl->C_FindObjectsInit(session, tmpl, 2), CKR_OK);
    CK_ULONG found = 0;
    fl->C_FindObjects(session, &obj, 1, &found);
    fl->C_FindObjectsFinal(session);
    if (found == 0) obj = CK_INVALID_HANDLE;
  }
  ASSERT_NE(obj, CK_INVALID_HANDLE);
  CK_BBOOL token = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
  CK_ATTRIBUTE flags[] = {{CKA_TOKEN, &token, sizeof token},
                          {CKA_SENSITIVE, &sensitive, sizeof sensitive},
                          {CKA_EXTRACTABLE, &extractable, sizeof extractable}};
  ASSERT_EQ(fl->C_GetAttributeValue(session, obj, flags, 3), CKR_OK);
  EXPECT_EQ(token, CK_TRUE);
  EXPECT_EQ(sensitive, CK_TRUE);
  EXPECT_EQ(extractable, CK_FALSE);
  uint8_t value[128];
  CK_ATTRIBUTE secret{CKA_VALUE, value, sizeof value};
  EXPECT_EQ(fl->C_GetAttributeValue(session, obj, &secret, 1), kCkrAttributeSensitive);
  fl->C_CloseSession(session);
  if (finalize) fl->C_Finalize(nullptr);
  dlclose(lib);
}

class SoftHsm : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_ / "softhsm2.conf", "directories.tokendir = " + (dir_ / "tokens") +
                                          "\nobjectstore.backend = file\nlog.level = ERROR\n");
    ASSERT_EQ(RunCommand({"/bin/mkdir", "-p", dir_ / "tokens"}).exit_code, 0);
    setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    auto r = RunCommand({"/usr/bin/softhsm2-util", "--init-token", "--free", "--label", "et-test",
                         "--pin", "1234", "--so-pin", "5678"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  TempDir dir_;
};

TEST_F(SoftHsm, TokenCaIssuesCertificatesOpenSslAccepts) {
  EXPECT_ERROR_CODE(Pkcs11Token::Open(kModule, "et-test", "0000"), ErrorCode::kUnauthenticated);
  EXPECT_ERROR_CODE(Pkcs11Token::Open(kModule, "no-such-token", "1234"), ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE(Pkcs11Token::Open("/nonexistent/module.so", "et-test", "1234"), ErrorCode::kUnavailable);

  auto token = Pkcs11Token::Open(kModule, "et-test", "1234");
  ASSERT_OK(token);
  EXPECT_ERROR_CODE(token->FindKey("acme-ca"), ErrorCode::kNotFound);
  EXPECT_ERROR_CODE(token->GenerateKey("ed", KeyType::kEd25519), ErrorCode::kInvalidArgument);
  auto key = token->GenerateKey("acme-ca", KeyType::kEcdsaP256);
  ASSERT_OK(key);
  EXPECT_TRUE(key->in_token());
  EXPECT_EQ(key->type(), KeyType::kEcdsaP256);
  EXPECT_ERROR_CODE(key->ToPem(), ErrorCode::kFailedPrecondition);
  EXPECT_ERROR_CODE(key->ToDer(), ErrorCode::kFailedPrecondition);
  EXPECT_ERROR_CODE(WritePrivateKeyFile(dir_ / "leak.pem", *key, false), ErrorCode::kFailedPrecondition);
  EXPECT_ERROR_CODE(token->GenerateKey("acme-ca"), ErrorCode::kAlreadyExists);
  const Bytes spki = *key->PublicKeyDer();
  EXPECT_EQ(*PublicKeyType(spki), KeyType::kEcdsaP256);

  // Detached signature by the token, checked in software.
  auto sig = key->Sign(AsBytes("manifest"));
  ASSERT_OK(sig);
  EXPECT_OK(VerifySignature(spki, AsBytes("manifest"), *sig));

  auto ca = CreateSelfSignedCa(*key, {"Acme Factory CA", "acme", ""}, 3650);
  ASSERT_OK(ca);
  EXPECT_EQ(ca->public_key_der, spki);
  auto dev_key = PrivateKey::Generate(KeyType::kEcdsaP256);
  auto csr = ParseCsrDer(*CreateCsr(*dev_key, {"acme000001", "acme", "thermo-1"}));
  ASSERT_OK(csr);
  IssueRequest req;
  req.subject = csr->subject;
  req.public_key_der = csr->public_key_der;
  req.not_before = UnixNow() - 60;
  req.not_after = UnixNow() + 20 * 365 * 86400LL;  // birth certificates outlive 2050
  req.extended_usage = ExtendedUsage::kClientAuth;
  auto birth = IssueCertificate(*ca, *key, req);
  ASSERT_OK(birth);
  WriteFile(dir_ / "ca.pem", CertificateToPem(ca->der));
  WriteFile(dir_ / "birth.pem", CertificateToPem(birth->der));
  auto r = Openssl({"verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", dir_ / "ca.pem", dir_ / "birth.pem"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  TrustAnchors anchors;
  ASSERT_OK(anchors.AddDer(ca->der));
  EXPECT_OK(anchors.Verify(*birth));

  // A CSR signed inside the token verifies too.
  auto token_csr = CreateCsr(*key, {"factory-station-1", "acme", ""});
  ASSERT_OK(token_csr);
  EXPECT_OK(ParseCsrDer(*token_csr));

  // The key persists: a new session finds it and it still signs for the same public key.
  token = Pkcs11Token::Open(kModule, "et-test", "1234");  // replaces (and closes) the first session
  ASSERT_OK(token);
  auto again = token->FindKey("acme-ca");
  ASSERT_OK(again);
  EXPECT_EQ(*again->PublicKeyDer(), spki);
  auto sig2 = again->Sign(AsBytes("manifest 2"));
  ASSERT_OK(sig2);
  EXPECT_OK(VerifySignature(spki, AsBytes("manifest 2"), *sig2));
  // The key from the first session still works: it shares that session's lifetime.
  EXPECT_OK(key->Sign(AsBytes("still alive")));

  // The token says the private key is sensitive and was never extractable, and refuses to
  // hand out its value.
  r = RunCommand({"/usr/bin/pkcs11-tool", "--module", kModule, "--token-label", "et-test", "--login",
                  "--pin", "1234", "--list-objects", "--type", "privkey"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("acme-ca"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sensitive"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("never extractable"), std::string::npos) << r.out;
  ExpectKeyLockedInToken("acme-ca");
}

}  // namespace
}  // namespace edgetrust::pki::test
