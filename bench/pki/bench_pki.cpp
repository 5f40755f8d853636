// Issuance throughput against the raw wolfCrypt signature it is built on, in the same run:
// issuing from a received CSR (build, sign and re-parse the certificate) should cost no more
// than twice one bare ECDSA P-256 signature. Receiving the CSR (checking its self-signature by a
// key never seen before) is timed and printed apart: that verification alone costs several
// signatures in any P-256 implementation whose signing uses a fixed-base table, so the whole
// path is also printed with the bound that verification sets on it.
// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
// clang-format on
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "edgetrust/pki/pki.h"

namespace {

using Clock = std::chrono::steady_clock;
using edgetrust::Bytes;
namespace pki = edgetrust::pki;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double RawSignsPerSecond(double budget) {
  WC_RNG rng;
  ecc_key key;
  if (wc_InitRng(&rng) != 0 || wc_ecc_init(&key) != 0 ||
      wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0) {
    std::fprintf(stderr, "wolfCrypt setup failed\n");
    std::exit(1);
  }
  uint8_t hash[WC_SHA256_DIGEST_SIZE] = {1, 2, 3};
  uint8_t sig[80];
  long n = 0;
  const auto start = Clock::now();
  while (Seconds(start) < budget) {
    for (int i = 0; i < 50; ++i) {
      word32 len = sizeof sig;
      if (wc_ecc_sign_hash(hash, sizeof hash, sig, &len, &rng, &key) != 0) std::exit(1);
      hash[0] = sig[len - 1];
    }
    n += 50;
  }
  const double rate = n / Seconds(start);
  wc_ecc_free(&key);
  wc_FreeRng(&rng);
  return rate;
}

// The other half of an issuance: verifying a signature made by a key never seen before (the
// CSR's), straight through wolfCrypt.
double RawFreshVerifiesPerSecond(double budget, int count) {
  WC_RNG rng;
  if (wc_InitRng(&rng) != 0) std::exit(1);
  struct Sample {
    uint8_t point[65];
    uint8_t sig[80];
    word32 sig_len;
  };
  std::vector<Sample> samples(static_cast<size_t>(count));
  uint8_t hash[WC_SHA256_DIGEST_SIZE] = {9, 8, 7};
  for (Sample& s : samples) {
    ecc_key key;
    wc_ecc_init(&key);
    word32 len = sizeof s.point;
    s.sig_len = sizeof s.sig;
    if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0 ||
        wc_ecc_export_x963(&key, s.point, &len) != 0 ||
        wc_ecc_sign_hash(hash, sizeof hash, s.sig, &s.sig_len, &rng, &key) != 0) {
      std::exit(1);
    }
    wc_ecc_free(&key);
  }
  long n = 0;
  const auto start = Clock::now();
  for (const Sample& s : samples) {
    ecc_key key;
    int ok = 0;
    wc_ecc_init(&key);
    if (wc_ecc_import_x963_ex(s.point, sizeof s.point, &key, ECC_SECP256R1) != 0 ||
        wc_ecc_verify_hash(s.sig, s.sig_len, hash, sizeof hash, &ok, &key) != 0 || ok != 1) {
      std::exit(1);
    }
    wc_ecc_free(&key);
    ++n;
    if ((n & 15) == 0 && Seconds(start) >= budget) break;
  }
  wc_FreeRng(&rng);
  return n / Seconds(start);
}

// Every CSR carries a fresh key, as in the field: a key seen once gets no help from wolfCrypt's
// fixed-point cache (FP_ECC), and re-using a few CSRs in a loop would thrash that cache instead.
// Two phases, timed apart: receiving the CSRs (parse + verify the self-signature, the proof of
// possession of a never-seen key) and issuing from them (build, sign, re-parse).
struct IssuanceRates {
  double receive = 0;  // CSRs parsed and verified per second
  double issue = 0;    // certificates issued per second from received CSRs
  double whole = 0;    // both, per second
};

IssuanceRates MeasureIssuance(double budget, double raw_rate) {
  auto ca_key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  auto ca = pki::CreateSelfSignedCa(*ca_key, {"Bench CA", "edgetrust", ""}, 30);
  if (!ca.ok()) {
    std::fprintf(stderr, "CA: %s\n", ca.error().ToString().c_str());
    std::exit(1);
  }
  std::vector<Bytes> ders;
  const int count = static_cast<int>(budget * raw_rate) + 100;
  for (int i = 0; i < count; ++i) {
    auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
    char id[32];
    std::snprintf(id, sizeof id, "dev-%06d", i);
    ders.push_back(*pki::CreateCsr(*key, {id, "acme", "thermo-1"}));
  }
  std::vector<pki::Csr> csrs;
  csrs.reserve(ders.size());
  auto start = Clock::now();
  for (const Bytes& der : ders) {
    auto csr = pki::ParseCsrDer(der);
    if (!csr.ok()) std::exit(1);
    csrs.push_back(std::move(csr).value());
    if ((csrs.size() & 15) == 0 && Seconds(start) >= budget / 2) break;
  }
  const double receive_s = Seconds(start);

  const int64_t now = edgetrust::UnixNow();
  long n = 0;
  start = Clock::now();
  for (pki::Csr& csr : csrs) {
    pki::IssueRequest req;
    req.subject = csr.subject;
    req.public_key_der = std::move(csr.public_key_der);
    req.not_before = now - 60;
    req.not_after = now + 90 * 86400;
    req.extended_usage = pki::ExtendedUsage::kClientAuth;
    auto cert = pki::IssueCertificate(*ca, *ca_key, req);
    if (!cert.ok()) {
      std::fprintf(stderr, "issue: %s\n", cert.error().ToString().c_str());
      std::exit(1);
    }
    ++n;
  }
  const double issue_s = Seconds(start);
  IssuanceRates r;
  r.receive = static_cast<double>(csrs.size()) / receive_s;
  r.issue = static_cast<double>(n) / issue_s;
  r.whole = 1.0 / (1.0 / r.receive + 1.0 / r.issue);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const double budget = argc > 1 ? std::atof(argv[1]) : 2.0;
  wolfCrypt_Init();
  // Warm both paths (fixed-point tables, page faults) before timing.
  const double warm = RawSignsPerSecond(0.2);
  MeasureIssuance(0.1, warm);
  const double raw = RawSignsPerSecond(budget);
  const IssuanceRates r = MeasureIssuance(budget, raw);
  const double verify = RawFreshVerifiesPerSecond(budget, static_cast<int>(r.receive * budget) + 100);
  std::printf("pki: raw sign=%.0f /s, issuance from a received CSR=%.0f /s, ratio=%.2f (goal >= 0.5)\n",
              raw, r.issue, r.issue / raw);
  std::printf("pki: receiving a CSR (parse + verify its signature by a fresh key)=%.0f /s"
              " (raw wolfCrypt fresh-key verify=%.0f /s)\n",
              r.receive, verify);
  std::printf("pki: whole path (receive + issue)=%.0f /s, ratio to raw sign=%.2f;"
              " bound with this wolfCrypt: 1/(1 + sign/verify)=%.2f\n",
              r.whole, r.whole / raw, 1.0 / (1.0 + raw / verify));
  return 0;
}
