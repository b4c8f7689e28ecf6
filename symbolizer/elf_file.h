// Opening ELF files safely: inside another process's root, checked to be a
// regular ELF executable or shared object, with its GNU build-id read.
//
// Everything here reports failure as a value; nothing throws or aborts on a
// missing, unreadable, garbage or truncated file. Thread-safe (no shared
// state besides libelf's version handshake, done once).
#ifndef HEAPWATCH_SYMBOLIZER_ELF_FILE_H_
#define HEAPWATCH_SYMBOLIZER_ELF_FILE_H_

#include <stdint.h>
#include <sys/types.h>

#include <string>
#include <string_view>

namespace heapwatch::symbolizer {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Opens `path` read-only as seen from `root`. An empty root means the path as
// is. Otherwise `path` (absolute) is resolved with `root` as "/": absolute
// symlinks inside the application's filesystem (common for shared libraries
// and for /usr/lib/debug/.build-id links) then stay inside it, which a plain
// open of root + path would not do. Returns an invalid fd and sets errno on
// failure.
UniqueFd OpenInRoot(const std::string& root, const std::string& path);

enum class ElfOpenResult {
  kOk,
  kNoFile,  // missing, unreadable, permission denied, not a regular file
  kBadElf,  // readable but not a usable ELF executable or shared object
};

// A verified ELF file, open. `build_id` holds raw bytes (empty if the file
// has no NT_GNU_BUILD_ID note).
struct ElfFile {
  UniqueFd fd;
  std::string path;  // the path it was opened by (root included)
  std::string build_id;
  std::string debuglink;      // .gnu_debuglink file name, if any
  uint32_t debuglink_crc = 0;
  bool has_debug_info = false;  // has a .debug_info section with contents
  dev_t dev = 0;
  ino_t ino = 0;
};

// Opens root + path and checks it. On kOk fills *out. `*error` gets a short
// reason for the CLI and logs.
ElfOpenResult OpenElfFile(const std::string& root, const std::string& path, ElfFile* out,
                          std::string* error);

// CRC-32 (the .gnu_debuglink flavour, zlib's) of a whole file; false on a
// read error.
bool FileCrc32(int fd, uint32_t* crc);

// Lowercase hex of raw bytes, and back (false on odd length or a non-hex
// character).
std::string HexEncode(std::string_view bytes);
bool HexDecode(std::string_view hex, std::string* bytes);

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_ELF_FILE_H_
