#include "trust_dir.h"

#include <dirent.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>

#include "edgetrust/pki/certificate.h"
#include "files.h"

namespace edgetrust::tools {
namespace {

// `<8 hex>.<digits>`: the names OpenSSL's hashed-directory lookup reads (and `openssl rehash`
// writes), so only those are ours to remove.
bool IsHashName(const std::string& name) {
  const size_t dot = name.find('.');
  if (dot != 8 || dot + 1 >= name.size()) return false;
  for (size_t i = 0; i < 8; ++i) {
    if (HexDigitValue(name[i]) < 0) return false;
  }
  for (size_t i = dot + 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  return true;
}

}  // namespace

Result<std::string> SubjectHash(ByteView der) {
  const unsigned char* p = der.data();
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (x == nullptr) return MakeError(ErrorCode::kInvalidArgument, "not a DER certificate");
  int ok = 0;
  const unsigned long h = X509_NAME_hash_ex(X509_get_subject_name(x), nullptr, nullptr, &ok);
  X509_free(x);
  if (!ok) return MakeError(ErrorCode::kInternal, "could not hash the certificate's subject");
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08lx", h & 0xffffffffUL);
  return std::string(buf);
}

Status WriteTrustDirectory(const std::string& dir, const std::vector<Bytes>& ca_ders) {
  ET_RETURN_IF_ERROR(MakeDirectories(dir, 0755));
  std::map<std::string, int> next_suffix;
  std::set<std::string> wanted;
  for (const Bytes& der : ca_ders) {
    ET_ASSIGN_OR_RETURN(std::string hash, SubjectHash(der));
    const std::string name = hash + "." + std::to_string(next_suffix[hash]++);
    ET_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + name, pki::CertificateToPem(der),
                                       kPublicFileMode, /*force=*/true));
    wanted.insert(name);
  }
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return MakeError(ErrorCode::kInternal, dir + ": cannot list");
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (IsHashName(name) && wanted.count(name) == 0) stale.push_back(name);
  }
  closedir(d);
  for (const auto& name : stale) {
    if (unlink((dir + "/" + name).c_str()) != 0) {
      return MakeError(ErrorCode::kInternal, dir + "/" + name + ": cannot remove a stale CA");
    }
  }
  return OkStatus();
}

}  // namespace edgetrust::tools
