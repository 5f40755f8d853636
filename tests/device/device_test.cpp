// Unit tests of the device agent's pure parts: state directory, timing, enrollment answers,
// command line.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "edgetrust/device/enrollment.h"
#include "edgetrust/device/identity.h"
#include "edgetrust/device/options.h"
#include "edgetrust/device/state_dir.h"
#include "edgetrust/device/timing.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/csr.h"
#include "edgetrust/pki/key.h"
#include "edgetrust/protocol/messages.h"

namespace edgetrust::device {
namespace {

namespace fs = std::filesystem;

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "et-device-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

StoredIdentity FakeIdentity(const std::string& tag) {
  StoredIdentity id;
  id.cert_pem = "-----BEGIN CERTIFICATE-----\n" + tag + "Q0VSVA==\n-----END CERTIFICATE-----\n";
  id.key_pem = "-----BEGIN PRIVATE KEY-----\n" + tag + "S0VZ\n-----END PRIVATE KEY-----\n";
  id.site = "site-" + tag;
  return id;
}

// ---------------------------------------------------------------- state directory

TEST(StateDir, EmptyDirectoryHasNoIdentity) {
  ScratchDir tmp;
  auto dir = StateDir::Open(tmp / "parent/state");
  ASSERT_TRUE(dir.ok()) << dir.error().ToString();
  auto loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
  struct stat st {};
  ASSERT_EQ(::stat((tmp / "parent/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(StateDir, RoundTripAcrossReopen) {
  ScratchDir tmp;
  StoredIdentity a = FakeIdentity("AAAA");
  a.lifecycle_ca_pem = "-----BEGIN EDGETRUST LIFECYCLE CA-----\nTENB\n-----END EDGETRUST LIFECYCLE CA-----\n";
  {
    auto dir = StateDir::Open(tmp.path());
    ASSERT_TRUE(dir.ok());
    ASSERT_TRUE(dir->SaveIdentity(a).ok());
  }
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  auto loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok()) << loaded.error().ToString();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ(**loaded, a);
  struct stat st {};
  ASSERT_EQ(::stat(dir->IdentityPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(StateDir, SaveReplacesAndClearForgets) {
  ScratchDir tmp;
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(dir->SaveIdentity(FakeIdentity("AAAA")).ok());
  ASSERT_TRUE(dir->SaveIdentity(FakeIdentity("BBBB")).ok());
  auto loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ(**loaded, FakeIdentity("BBBB"));
  ASSERT_TRUE(dir->ClearIdentity().ok());
  loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
  EXPECT_TRUE(dir->ClearIdentity().ok()) << "clearing twice is fine";
}

TEST(StateDir, RefusesIncompleteIdentity) {
  ScratchDir tmp;
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  StoredIdentity no_key = FakeIdentity("AAAA");
  no_key.key_pem.clear();
  EXPECT_FALSE(dir->SaveIdentity(no_key).ok());
}

TEST(StateDir, CorruptFileIsDataLoss) {
  ScratchDir tmp;
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  std::ofstream(dir->IdentityPath()) << "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  auto loaded = dir->LoadIdentity();
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().code, ErrorCode::kDataLoss);
  std::ofstream(dir->IdentityPath(), std::ios::trunc) << "garbage";
  loaded = dir->LoadIdentity();
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().code, ErrorCode::kDataLoss);
}

TEST(StateDir, LeftoverTempFileFromACrashIsIgnoredAndRemoved) {
  ScratchDir tmp;
  const StoredIdentity old_identity = FakeIdentity("OLD0");
  {
    auto dir = StateDir::Open(tmp.path());
    ASSERT_TRUE(dir.ok());
    ASSERT_TRUE(dir->SaveIdentity(old_identity).ok());
    // The crash: the new identity reached its temp file but never the rename.
    ASSERT_TRUE(internal::WriteTempFile(dir->IdentityPath(),
                                        internal::FormatIdentity(FakeIdentity("NEW0")), 0600)
                    .ok());
    auto loaded = dir->LoadIdentity();
    ASSERT_TRUE(loaded.ok() && loaded->has_value());
    EXPECT_EQ(**loaded, old_identity) << "a temp file is never state";
  }
  const std::string temp =
      tmp / (std::string(StateDir::kIdentityFile) + std::string(StateDir::kTempSuffix));
  ASSERT_TRUE(fs::exists(temp));
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  EXPECT_FALSE(fs::exists(temp)) << "reopening removes the leftover";
  auto loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ(**loaded, old_identity);
}

TEST(StateDir, TempFileWithoutAnyIdentityMeansNotEnrolled) {
  ScratchDir tmp;
  ASSERT_TRUE(internal::WriteTempFile(tmp / std::string(StateDir::kIdentityFile),
                                      internal::FormatIdentity(FakeIdentity("NEW0")), 0600)
                  .ok());
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  auto loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
}

// A real crash: a child rewrites the identity in a loop and is SIGKILLed at a random instant.
// Whatever instant it dies at, the directory holds exactly one of the two identities.
TEST(StateDir, KilledWriterLeavesOldOrNew) {
  ScratchDir tmp;
  const StoredIdentity a = FakeIdentity("AAAA");
  const StoredIdentity b = FakeIdentity("BBBB");
  {
    auto dir = StateDir::Open(tmp.path());
    ASSERT_TRUE(dir.ok());
    ASSERT_TRUE(dir->SaveIdentity(a).ok());
  }
  std::mt19937 rng(42);
  std::set<std::string> seen;
  for (int round = 0; round < 12; ++round) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto dir = StateDir::Open(tmp.path());
      if (!dir.ok()) ::_exit(3);
      for (uint64_t i = 0;; ++i)
        if (!dir->SaveIdentity(i % 2 ? a : b).ok()) ::_exit(4);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 20000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer failed on its own, exit " << WEXITSTATUS(status);
    auto dir = StateDir::Open(tmp.path());
    ASSERT_TRUE(dir.ok()) << dir.error().ToString();
    auto loaded = dir->LoadIdentity();
    ASSERT_TRUE(loaded.ok()) << loaded.error().ToString();
    ASSERT_TRUE(loaded->has_value());
    EXPECT_TRUE(**loaded == a || **loaded == b);
    seen.insert((*loaded)->site);
  }
  EXPECT_FALSE(seen.empty());
}

TEST(StateDir, OneAgentPerDirectory) {
  ScratchDir tmp;
  auto first = StateDir::Open(tmp.path());
  ASSERT_TRUE(first.ok());
  auto second = StateDir::Open(tmp.path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kFailedPrecondition);
  { StateDir moved = std::move(first).value(); }
  EXPECT_TRUE(StateDir::Open(tmp.path()).ok()) << "the lock goes with the last owner";
}

TEST(StateDir, PathThatIsAFileIsRefused) {
  ScratchDir tmp;
  std::ofstream(tmp / "file") << "x";
  auto dir = StateDir::Open(tmp / "file");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().code, ErrorCode::kInvalidArgument);
}

TEST(WriteFileAtomic, ModeIsExactAndContentReplaced) {
  ScratchDir tmp;
  const mode_t old_umask = ::umask(0077);
  ASSERT_TRUE(WriteFileAtomic(tmp / "f", "one", 0644).ok());
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::stat((tmp / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_TRUE(WriteFileAtomic(tmp / "f", "two", 0600).ok());
  ASSERT_EQ(::stat((tmp / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Slurp(tmp / "f"), "two");
  EXPECT_FALSE(fs::exists(tmp / "f.tmp"));
  EXPECT_FALSE(WriteFileAtomic(tmp / "missing-dir/f", "x", 0600).ok());
}

TEST(IdentityFile, SiteLineCannotInjectLines) {
  StoredIdentity id = FakeIdentity("AAAA");
  id.site = "evil\n-----BEGIN PRIVATE KEY-----";
  auto parsed = internal::ParseIdentity(internal::FormatIdentity(id));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->key_pem, id.key_pem);
  EXPECT_EQ(parsed->site, "");
}

// identity_fuzz found both: a "# site:" line with a '\r' inside read as a site that FormatIdentity
// then dropped, so the identity changed the first time the agent saved it (and a CRLF file read
// its site as "edge-01\r"); and a site holding PEM text was written as is and read back as a
// lifecycle CA the device had never been given. Only a site id is written and read now, and
// only from lines outside the PEM blocks.
TEST(IdentityFile, SiteReadsBackTheSameAfterASave) {
  const std::string fuzzed(
      "\x2d\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x43\x45\x52\x54\x49\x46\x49\x43\x41\x54\x45\x2d\x2d"
      "\x2d\x2d\x2d\x0a\x4d\x49\x49\x42\x75\x6a\x43\x43\x41\x56\x71\x67\x30\x6c\x46\x6b\x34\x4f\x59\x57"
      "\x43\x74\x46\x6f\x6a\x61\x66\x34\x3d\x78\x2d\x2d\x2d\x2d\x2d\x45\x4e\x44\x20\x43\x45\x52\x54\x49"
      "\x46\x49\x43\x41\x54\x45\x2d\x2d\x2d\x2d\x2d\x0a\x2d\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x50"
      "\x52\x49\x56\x41\x54\x45\x20\x4b\x45\x59\x2d\x2d\x2d\x2d\x2d\x64\x47\x62\x50\x65\x70\x2f\x48\x69"
      "\x59\x75\x58\x34\x79\x61\x4d\x46\x67\x51\x64\x43\x68\x52\x41\x4e\xee\x43\x41\x41\x51\x71\x43\x7a"
      "\x73\x65\x50\x54\x33\x46\x33\x11\x4c\x7a\x63\x7a\x77\x7a\x75\x39\x2d\x2d\x2d\x49\xce\x77\x70\x75"
      "\x63\x38\x2d\x2d\x2d\x2d\x2d\x45\x4e\x44\x20\x50\x52\x49\x56\x41\x54\x45\x20\x4b\x45\x59\x2d\x2d"
      "\x2d\x2d\x2d\x0a\x2d\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x45\x44\x47\x45\x54\x52\x55\x53\x54"
      "\x20\x4c\x49\x46\x45\x43\x59\x43\x4c\x45\x20\x43\x41\x2d\x2d\x2d\x2d\x2d\x0a\x4d\x49\x49\x42\x75"
      "\x6a\x43\x43\x41\x56\x2b\xf5\xff\xff\xff\x2d\x2d\x45\x4e\x44\xff\xff\xff\xff\xff\xff\xff\xff\xff"
      "\xff\xff\xff\x2d\x85\x41\x2d\x54\x57\x41\xac\xac\xac\x39\x46\x79\x73\x46\x2b\x42\x4e\x62\x74\x51"
      "\x74\x71\x56\x77\x72\x74\x73\x67\x63\x71\x0a\x2d\x2d\x2d\x2d\x2d\x45\x4e\x44\x20\x50\x52\x49\x56"
      "\x41\x54\x45\x20\x4b\x45\x59\x2d\x2d\x2d\x2d\x2d\x0a\x2d\x2d\x2d\x2d\x55\x53\x54\x20\x4c\x49\x46"
      "\x45\x43\x59\x43\x4c\x45\x20\x43\x41\x2d\x2d\x2d\x2d\x2d\x0a\x4d\x49\x49\x42\x75\x6a\x43\x43\x41"
      "\x56\x2b\x67\x41\x77\x49\x42\x41\x67\x49\x55\x77\x45\x77\x59\x48\x4b\x6f\x5a\x49\x0a\x7a\x6a\x30"
      "\x43\x41\x51\x59\x49\x4b\x6f\x5a\x49\x7a\x6a\x30\x44\x41\x51\x63\x44\x51\x0e\x41\x45\x4b\x67\x72"
      "\x54\x6a\x66\x58\x72\x41\x33\x50\x54\x54\x56\x44\x44\x76\x79\x34\x47\xf8\x6e\x6a\x45\x31\x52\x53"
      "\x79\x2f\x2f\x54\x70\x50\x4f\x73\x71\x51\x44\x77\x72\x51\x52\x0a\x51\x71\x67\x30\x6c\x46\x6b\x34"
      "\x4f\x59\x57\x43\x74\x46\x6f\x6a\x61\x66\x34\x3d\x0a\x23\x20\x73\x69\x74\x65\x3a\x20\x20\x43\x45"
      "\x72\x54\x49\x46\x49\x43\x41\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x67"
      "\x30\x39\x77\x70\x75\x63\x38\x0d\x2d\x2d\x2d\x2d\x45\x4e\x44\x20\x50\x52\x49\x56\x41\x54\x45\x20"
      "\x4b\x45\x59\x2d\x2d\x2d\x2d\x2d\x0a\x2d\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x45\x44\x47\x45"
      "\x54\x52\x55\x53\x54\x20\x4c\x49\x46\x45\x25\x43\x52\x43\x4c\x45\x20\xc3\x41\x2d\x2d\x2d\x2d\x2d"
      "\x0a\x4d\x49\x49\x42\x75\x6a\x43\x43\x41\x56\x2b\xf5\xff\xff\xff\x2d\x2d\x45\x4e\x44\xff\xff\xff"
      "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x2d\x85\x41\x2d\x54\x57\x41\xac\xac\xac\xac\xff\xff\xff\xff"
      "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
      "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x59\x2d\x2d\x2d\x2d"
      "\x2d\x2a\x2d\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x45\x44\x47\x45\x54\x52\x55\x53\x54\x20\x4c"
      "\x49\x46\x45\x42\x4d\x47\x42\x79\x71\x47\x53\x4d\x34\x39\x41\x67\x45\x47\x43\x43\x71\x47\x53\x4d"
      "\x34\x72\x6d\x5a\x69\x61\x4e\x43\x71\x58\x37\x77\x33\x71\x33\x51\x70\x6e\x46\x4c\x49\x46\x45\x43"
      "\x59\x43\x4c\x45\x20\x43\x41\x2d\x2d\x2d\x2d\x2d\x0a\x23\x20\x73\x4d\x43\x45\x52\x54\x2d\x2d\x2d"
      "\x2d\x0a\x2d\x2d\x2d\x2d\x2d\x42\x45\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f\x8f"
      "\x8f\x8f\x8f\x8f\x8f\x30\x45\x41\x77\x49\x77\x3a\x4d\x65\x64\x67\x65\x2d\x30\x30\x0a",
      813);
  auto first = internal::ParseIdentity(fuzzed);
  ASSERT_TRUE(first.ok());
  auto saved = internal::ParseIdentity(internal::FormatIdentity(*first));
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->site, first->site);

  // Minimised from the fuzzer's input: an unterminated "-----BEGIN -----" ends the scan for
  // blocks, so the lifecycle CA on the site line is part of the site, until it is saved.
  const std::string site_with_block(
      "\x2d\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x43\x45\x52\x54\x49\x46\x49\x43\x41\x54\x45\x2d\x2d"
      "\x2d\x2d\x2d\x45\x4e\x44\x20\x43\x45\x52\x54\x49\x46\x49\x43\x41\x54\x45\x2d\x2d\x2d\x2d\x2d\x2d"
      "\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x50\x52\x49\x56\x41\x54\x45\x20\x4b\x45\x59\x2d\x2d\x2d"
      "\x2d\x2d\x45\x4e\x44\x20\x50\x52\x49\x56\x41\x54\x45\x20\x4b\x45\x59\x2d\x2d\x2d\x2d\x2d\x2d\x2d"
      "\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x2d\x2d\x2d\x2d\x2d\x0a\x23\x20\x73\x69\x74\x65\x3a\x20\x2d"
      "\x2d\x2d\x2d\x2d\x42\x45\x47\x49\x4e\x20\x45\x44\x47\x45\x54\x52\x55\x53\x54\x20\x4c\x49\x46\x45"
      "\x43\x59\x43\x4c\x45\x20\x43\x41\x2d\x2d\x2d\x2d\x2d\x45\x4e\x44\x20\x45\x44\x47\x45\x54\x52\x55"
      "\x53\x54\x20\x4c\x49\x46\x45\x43\x59\x43\x4c\x45\x20\x43\x41\x2d\x2d\x2d\x2d\x2d",
      188);
  auto pem_site = internal::ParseIdentity(site_with_block);
  ASSERT_TRUE(pem_site.ok());
  EXPECT_EQ(pem_site->lifecycle_ca_pem, "");
  auto pem_site_saved = internal::ParseIdentity(internal::FormatIdentity(*pem_site));
  ASSERT_TRUE(pem_site_saved.ok());
  EXPECT_EQ(pem_site_saved->lifecycle_ca_pem, "");
  EXPECT_EQ(pem_site_saved->site, pem_site->site);

  const StoredIdentity id = FakeIdentity("AAAA");
  std::string crlf;
  for (char c : internal::FormatIdentity(id)) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  auto from_crlf = internal::ParseIdentity(crlf);
  ASSERT_TRUE(from_crlf.ok());
  EXPECT_EQ(from_crlf->site, id.site);

  // A site line inside a block is the block's, and one with a CR left in it is no site id.
  StoredIdentity inner = FakeIdentity("BBBB");
  inner.cert_pem = "-----BEGIN CERTIFICATE-----\n# site: inner\n-----END CERTIFICATE-----\n";
  inner.site.clear();
  auto parsed = internal::ParseIdentity(internal::FormatIdentity(inner));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->site, "");
  EXPECT_EQ(parsed->cert_pem, inner.cert_pem);
  auto with_cr = internal::ParseIdentity(internal::FormatIdentity(id) + "# site: a\rb\n");
  ASSERT_TRUE(with_cr.ok());
  EXPECT_EQ(with_cr->site, id.site);
}

// ---------------------------------------------------------------- timing

TEST(Renewal, DueWhenLessThanAThirdRemains) {
  const int64_t nb = 1'700'000'000;
  const int64_t na = nb + 90 * 86400;
  EXPECT_EQ(RenewalDueAt(nb, na), nb + 60 * 86400);
  EXPECT_FALSE(RenewalDue(nb, na, nb));
  EXPECT_FALSE(RenewalDue(nb, na, nb + 60 * 86400 - 1));
  EXPECT_TRUE(RenewalDue(nb, na, nb + 60 * 86400));
  EXPECT_TRUE(RenewalDue(nb, na, na + 10)) << "expired is certainly due";
  EXPECT_EQ(SecondsUntilRenewal(nb, na, nb), 60 * 86400);
  EXPECT_EQ(SecondsUntilRenewal(nb, na, na), 0);
}

TEST(Renewal, ShortAndDegenerateValidity) {
  EXPECT_EQ(RenewalDueAt(100, 130), 120);
  EXPECT_EQ(RenewalDueAt(100, 101), 101) << "1 s validity: due at the end";
  EXPECT_EQ(RenewalDueAt(100, 100), 100);
  EXPECT_EQ(RenewalDueAt(100, 50), 100) << "inverted validity: due at once";
  EXPECT_TRUE(RenewalDue(100, 50, 100));
}

TEST(Backoff, DoublesWithJitterUpToTheCap) {
  Backoff b(1000, 8000, 7);
  const uint64_t expected_max[] = {1000, 2000, 4000, 8000, 8000, 8000};
  for (uint64_t max : expected_max) {
    uint64_t d = b.Next();
    EXPECT_GE(d, max / 2);
    EXPECT_LE(d, max);
  }
  EXPECT_EQ(b.attempts(), 6);
  b.Reset();
  EXPECT_EQ(b.attempts(), 0);
  EXPECT_LE(b.Next(), 1000u);
}

// ---------------------------------------------------------------- enrollment answers

struct TestCa {
  pki::PrivateKey key;
  pki::Certificate cert;
};

TestCa MakeCa() {
  auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  EXPECT_TRUE(key.ok());
  auto cert = pki::CreateSelfSignedCa(*key, {"site-ca", "test", ""}, 10);
  EXPECT_TRUE(cert.ok()) << cert.error().ToString();
  return TestCa{std::move(key).value(), std::move(cert).value()};
}

Bytes Issue(const TestCa& ca, const std::string& cn, const Bytes& spki, int64_t nb, int64_t na) {
  pki::IssueRequest req;
  req.subject.cn = cn;
  req.public_key_der = spki;
  req.not_before = nb;
  req.not_after = na;
  req.extended_usage = pki::ExtendedUsage::kClientAuth;
  auto cert = pki::IssueCertificate(ca.cert, ca.key, req);
  EXPECT_TRUE(cert.ok()) << cert.error().ToString();
  return cert.ok() ? cert->der : Bytes{};
}

class Enrollment : public ::testing::Test {
 protected:
  void SetUp() override {
    params_.device_id = "acme000001";
    params_.connected_cert_der = {0x30, 0x03, 0x02, 0x01, 0x01};
    params_.fw = "2.1.0";
    params_.model = "thermo-x";
    params_.claim = "CLAIM-42";
    auto request = CertificateRequest::Create(params_);
    ASSERT_TRUE(request.ok()) << request.error().ToString();
    request_.emplace(std::move(request).value());
    auto sent = protocol::DecodeEnrollRequest(request_->payload());
    ASSERT_TRUE(sent.ok()) << sent.error().ToString();
    sent_ = *sent;
    auto csr = pki::ParseCsrDer(sent_.csr);
    ASSERT_TRUE(csr.ok()) << csr.error().ToString();
    csr_spki_ = csr->public_key_der;
  }

  Bytes Response(const std::string& rid, const Bytes& cert) {
    protocol::EnrollResponse res;
    res.rid = rid;
    res.ok = true;
    res.cert = cert;
    res.chain = {ca_.cert.der};
    res.site = "edge-01";
    res.lifecycle_ca = ca_.cert.der;
    return protocol::EncodeEnrollResponse(res);
  }

  RequestParams params_;
  std::optional<CertificateRequest> request_;
  protocol::EnrollRequest sent_;
  Bytes csr_spki_;
  TestCa ca_ = MakeCa();
  int64_t now_ = UnixNow();
};

TEST_F(Enrollment, RequestCarriesEverything) {
  EXPECT_EQ(sent_.rid, request_->rid());
  EXPECT_EQ(sent_.rid.size(), 32u);
  EXPECT_EQ(sent_.birth, params_.connected_cert_der);
  EXPECT_EQ(sent_.fw, "2.1.0");
  EXPECT_EQ(sent_.model, "thermo-x");
  ASSERT_TRUE(sent_.claim.has_value());
  EXPECT_EQ(*sent_.claim, "CLAIM-42");
  auto csr = pki::ParseCsrDer(sent_.csr);
  ASSERT_TRUE(csr.ok());
  EXPECT_EQ(csr->subject.cn, "acme000001");
  EXPECT_EQ(csr->key_type, pki::KeyType::kEcdsaP256);

  auto other = CertificateRequest::Create(params_);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->rid(), request_->rid());
  auto other_sent = protocol::DecodeEnrollRequest(other->payload());
  ASSERT_TRUE(other_sent.ok());
  EXPECT_NE(pki::ParseCsrDer(other_sent->csr)->public_key_der, csr_spki_) << "a new key each time";
}

TEST_F(Enrollment, NoClaimMeansNoClaimKey) {
  params_.claim.clear();
  auto request = CertificateRequest::Create(params_);
  ASSERT_TRUE(request.ok());
  auto sent = protocol::DecodeEnrollRequest(request->payload());
  ASSERT_TRUE(sent.ok());
  EXPECT_FALSE(sent->claim.has_value());
}

TEST_F(Enrollment, IssuedCertificateIsAccepted) {
  Bytes cert = Issue(ca_, "acme000001", csr_spki_, now_ - 60, now_ + 90 * 86400);
  Answer answer = request_->Read(Response(sent_.rid, cert), now_);
  ASSERT_EQ(answer.kind, AnswerKind::kIssued) << answer.err;
  ASSERT_TRUE(answer.identity.has_value());
  EXPECT_EQ(answer.identity->cert.der, cert);
  EXPECT_EQ(answer.identity->site, "edge-01");
  ASSERT_TRUE(answer.identity->lifecycle_ca.has_value());
  EXPECT_EQ(answer.identity->lifecycle_ca->der, ca_.cert.der);

  // What gets stored reads back as the same identity, lifecycle CA included.
  ScratchDir tmp;
  auto dir = StateDir::Open(tmp.path());
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(dir->SaveIdentity(answer.stored).ok());
  auto loaded = dir->LoadIdentity();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  auto checked = CheckIdentity(**loaded, "acme000001");
  ASSERT_TRUE(checked.ok()) << checked.error().ToString();
  EXPECT_EQ(checked->cert.der, cert);
  EXPECT_EQ(checked->site, "edge-01");
  ASSERT_TRUE(checked->lifecycle_ca.has_value());
  EXPECT_EQ(checked->lifecycle_ca->der, ca_.cert.der);
  EXPECT_FALSE(CheckIdentity(**loaded, "acme000002").ok()) << "identity of another device";
}

TEST_F(Enrollment, OtherRidIsIgnored) {
  Bytes cert = Issue(ca_, "acme000001", csr_spki_, now_ - 60, now_ + 86400);
  Answer answer = request_->Read(Response("0123456789abcdef", cert), now_);
  EXPECT_EQ(answer.kind, AnswerKind::kIgnored);
  EXPECT_FALSE(answer.identity.has_value());
}

TEST_F(Enrollment, GarbageIsIgnored) {
  const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef};
  EXPECT_EQ(request_->Read(junk, now_).kind, AnswerKind::kIgnored);
  EXPECT_EQ(request_->Read({}, now_).kind, AnswerKind::kIgnored);
}

TEST_F(Enrollment, ErrorCodesAreRejections) {
  for (std::string_view code : {protocol::kErrNotAllowlisted, protocol::kErrClaimInvalid,
                                protocol::kErrRateLimited, protocol::kErrStateForbidden}) {
    Bytes payload = protocol::EncodeErrorResponse(sent_.rid, code, "no");
    Answer answer = request_->Read(payload, now_);
    EXPECT_EQ(answer.kind, AnswerKind::kRejected) << code;
    EXPECT_EQ(answer.err, code);
    EXPECT_EQ(answer.msg, "no");
  }
  Bytes other = protocol::EncodeErrorResponse("someone-else", protocol::kErrInternal, "x");
  EXPECT_EQ(request_->Read(other, now_).kind, AnswerKind::kIgnored) << "error for another rid";
}

TEST_F(Enrollment, CertificateForAnotherKeyIsInvalid) {
  auto stranger = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  ASSERT_TRUE(stranger.ok());
  Bytes cert = Issue(ca_, "acme000001", *stranger->PublicKeyDer(), now_ - 60, now_ + 86400);
  Answer answer = request_->Read(Response(sent_.rid, cert), now_);
  EXPECT_EQ(answer.kind, AnswerKind::kInvalid);
  EXPECT_NE(answer.err.find("key"), std::string::npos) << answer.err;
}

TEST_F(Enrollment, CertificateForAnotherDeviceIsInvalid) {
  Bytes cert = Issue(ca_, "acme000002", csr_spki_, now_ - 60, now_ + 86400);
  EXPECT_EQ(request_->Read(Response(sent_.rid, cert), now_).kind, AnswerKind::kInvalid);
}

TEST_F(Enrollment, ExpiredOrFutureCertificateIsInvalid) {
  Bytes expired = Issue(ca_, "acme000001", csr_spki_, now_ - 7200, now_ - 3600);
  EXPECT_EQ(request_->Read(Response(sent_.rid, expired), now_).kind, AnswerKind::kInvalid);
  Bytes future = Issue(ca_, "acme000001", csr_spki_, now_ + 7200, now_ + 86400);
  EXPECT_EQ(request_->Read(Response(sent_.rid, future), now_).kind, AnswerKind::kInvalid);
  Bytes slightly_ahead = Issue(ca_, "acme000001", csr_spki_, now_ + 30, now_ + 86400);
  EXPECT_EQ(request_->Read(Response(sent_.rid, slightly_ahead), now_).kind, AnswerKind::kIssued)
      << "a gateway clock 30 s ahead is tolerated";
}

TEST_F(Enrollment, OkWithoutCertificateIsInvalidOrUndecodable) {
  Answer answer = request_->Read(Response(sent_.rid, Bytes{0x30, 0x00}), now_);
  EXPECT_NE(answer.kind, AnswerKind::kIssued);
}

// ---------------------------------------------------------------- command line

std::vector<std::string> Single() {
  return {"--broker", "mqtts://127.0.0.1:18883", "--ca", "ca.pem", "--birth-cert", "b.pem",
          "--birth-key", "b.key", "--state", "st"};
}

std::string ErrorOf(std::vector<std::string> args) {
  auto r = ParseOptions(args);
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  return r.error().message;
}

std::vector<std::string> Plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Options, SingleDevice) {
  auto o = ParseOptions(Plus(Single(), {"--interval", "2", "--fw", "3.0", "--model", "m",
                                        "--claim", "C", "--count", "5"}));
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->broker.host, "127.0.0.1");
  EXPECT_EQ(o->broker.port, 18883);
  EXPECT_EQ(o->ca_file, "ca.pem");
  EXPECT_EQ(o->birth_cert_file, "b.pem");
  EXPECT_EQ(o->birth_key_file, "b.key");
  EXPECT_EQ(o->state_dir, "st");
  EXPECT_EQ(o->interval_seconds, 2);
  EXPECT_EQ(o->fw, "3.0");
  EXPECT_EQ(o->model, "m");
  EXPECT_EQ(o->claim, "C");
  EXPECT_EQ(o->count, 5);
  EXPECT_FALSE(o->simulating());
  EXPECT_FALSE(o->exit_after_enroll);
}

TEST(Options, Simulation) {
  auto o = ParseOptions({"--broker=mqtts://gw.local", "--ca", "ca.pem", "--simulate", "50",
                         "--factory-out", "out", "--exit-after-enroll", "--duration", "60",
                         "--quiet", "--stagger-ms", "0"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->broker.host, "gw.local");
  EXPECT_EQ(o->broker.port, 8883);
  EXPECT_EQ(o->simulate, 50);
  EXPECT_EQ(o->factory_out, "out");
  EXPECT_TRUE(o->state_dir.empty());
  EXPECT_TRUE(o->exit_after_enroll);
  EXPECT_EQ(o->duration_seconds, 60);
  EXPECT_TRUE(o->quiet);
  EXPECT_EQ(o->stagger_ms, 0);
}

TEST(Options, BrokerUrls) {
  auto v6 = ParseBrokerUrl("mqtts://[::1]:8884");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8884);
  EXPECT_FALSE(ParseBrokerUrl("mqtt://127.0.0.1:1883").ok()) << "plain TCP has no certificate";
  EXPECT_FALSE(ParseBrokerUrl("127.0.0.1:8883").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://host:").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://host:0").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://host:65536").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://host:88x").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://[::1").ok());
  EXPECT_FALSE(ParseBrokerUrl("mqtts://user@host").ok());
}

TEST(Options, Errors) {
  EXPECT_NE(ErrorOf({}).find("--broker"), std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtts://h"}).find("--ca"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--bogus"})).find("unknown option --bogus"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"stray"})).find("stray"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--interval"})).find("needs a value"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--interval", "abc"})).find("'abc'"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--interval", "-1"})).find("--interval"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--count", "3", "--interval", "0"})).find("--interval"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--exit-after-enroll=yes"})).find("takes no value"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--fw", ""})).find("non-empty"), std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--exit-after-enroll", "--count", "1"})).find("exclude"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--duration", "5"})).find("--simulate"), std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtts://h", "--ca", "c", "--birth-cert", "b", "--state", "s"})
                .find("--birth-key"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtts://h", "--ca", "c", "--birth-cert", "b", "--birth-key", "k"})
                .find("--state"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtts://h", "--ca", "c", "--simulate", "3"}).find("--factory-out"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtts://h", "--ca", "c", "--simulate", "0", "--factory-out", "o"})
                .find("--simulate"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtts://h", "--ca", "c", "--simulate", "3", "--factory-out", "o",
                     "--birth-cert", "b"})
                .find("--birth-cert"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Plus(Single(), {"--factory-out", "o"})).find("--simulate"), std::string::npos);
  EXPECT_NE(ErrorOf({"--broker", "mqtt://h", "--ca", "c"}).find("mqtts://"), std::string::npos);
}

}  // namespace
}  // namespace edgetrust::device
