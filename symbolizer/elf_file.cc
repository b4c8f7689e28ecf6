#include "symbolizer/elf_file.h"

#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include <mutex>

namespace heapwatch::symbolizer {
namespace {

void InitLibelfOnce() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

// Ends an Elf handle on scope exit.
struct ElfCloser {
  Elf* elf;
  ~ElfCloser() {
    if (elf != nullptr) elf_end(elf);
  }
};

bool IsDebugInfoSection(const char* name) {
  return strcmp(name, ".debug_info") == 0 || strcmp(name, ".zdebug_info") == 0;
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

UniqueFd OpenInRoot(const std::string& root, const std::string& path) {
  if (root.empty()) return UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (path.empty() || path[0] != '/') {
    errno = ENOENT;
    return UniqueFd();
  }
  UniqueFd dir(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return UniqueFd();
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, dir.get(), path.c_str() + 1, &how, sizeof(how));
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  if (errno != ENOSYS && errno != EPERM) return UniqueFd();
  // Kernels before 5.6 (or a seccomp filter that refuses openat2): the plain
  // concatenation, which is right except for absolute symlinks. The build-id
  // check still keeps a wrong file from being used.
  return UniqueFd(open((root + path).c_str(), O_RDONLY | O_CLOEXEC));
}

ElfOpenResult OpenElfFile(const std::string& root, const std::string& path, ElfFile* out,
                          std::string* error) {
  InitLibelfOnce();
  UniqueFd fd = OpenInRoot(root, path);
  if (!fd.valid()) {
    *error = std::string("open: ") + strerror(errno);
    return ElfOpenResult::kNoFile;
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "not a regular file";
    return ElfOpenResult::kNoFile;
  }
  // ELF_C_READ (pread on demand) rather than a mapping: this first look must
  // survive any file, and reading the headers is cheap.
  ElfCloser elf{elf_begin(fd.get(), ELF_C_READ, nullptr)};
  if (elf.elf == nullptr || elf_kind(elf.elf) != ELF_K_ELF) {
    *error = "not an ELF file";
    return ElfOpenResult::kBadElf;
  }
  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf.elf, &ehdr) == nullptr) {
    *error = std::string("bad ELF header: ") + elf_errmsg(-1);
    return ElfOpenResult::kBadElf;
  }
  if (ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN) {
    *error = "not an executable or shared object";
    return ElfOpenResult::kBadElf;
  }
  size_t phnum = 0;
  if (elf_getphdrnum(elf.elf, &phnum) != 0) {
    *error = std::string("bad program headers: ") + elf_errmsg(-1);
    return ElfOpenResult::kBadElf;
  }

  ElfFile file;
  const void* build_id = nullptr;
  ssize_t build_id_len = dwelf_elf_gnu_build_id(elf.elf, &build_id);
  if (build_id_len > 0) {
    file.build_id.assign(static_cast<const char*>(build_id), static_cast<size_t>(build_id_len));
  }
  GElf_Word crc = 0;
  if (const char* link = dwelf_elf_gnu_debuglink(elf.elf, &crc); link != nullptr) {
    file.debuglink = link;
    file.debuglink_crc = crc;
  }
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.elf, &shstrndx) == 0) {
    for (Elf_Scn* scn = elf_nextscn(elf.elf, nullptr); scn != nullptr;
         scn = elf_nextscn(elf.elf, scn)) {
      GElf_Shdr shdr;
      if (gelf_getshdr(scn, &shdr) == nullptr) continue;
      const char* name = elf_strptr(elf.elf, shstrndx, shdr.sh_name);
      if (name != nullptr && IsDebugInfoSection(name) && shdr.sh_type != SHT_NOBITS &&
          shdr.sh_size > 0) {
        file.has_debug_info = true;
        break;
      }
    }
  }
  file.fd = std::move(fd);
  file.path = (!root.empty() && root.back() == '/' ? root.substr(0, root.size() - 1) : root) + path;
  file.dev = st.st_dev;
  file.ino = st.st_ino;
  *out = std::move(file);
  return ElfOpenResult::kOk;
}

bool FileCrc32(int fd, uint32_t* crc) {
  uLong value = crc32(0L, Z_NULL, 0);
  unsigned char buffer[64 * 1024];
  off_t offset = 0;
  for (;;) {
    ssize_t n = pread(fd, buffer, sizeof(buffer), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    value = crc32(value, buffer, static_cast<uInt>(n));
    offset += n;
  }
  *crc = static_cast<uint32_t>(value);
  return true;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 0xf]);
  }
  return hex;
}

bool HexDecode(std::string_view hex, std::string* bytes) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return false;
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]);
    int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  *bytes = std::move(out);
  return true;
}

}  // namespace heapwatch::symbolizer
