#include "collector/proc_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

namespace heapwatch::collector {

std::optional<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  while (out.size() < max_bytes) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

namespace {

std::optional<uint64_t> ParseUint(const std::string& text) {
  const char* begin = text.c_str();
  while (*begin == ' ' || *begin == '\t') ++begin;
  if (*begin < '0' || *begin > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(begin, &end, 10);
  if (errno != 0) return std::nullopt;
  return v;
}

std::optional<uint64_t> ReadUint(const std::string& path) {
  auto text = ReadSmallFile(path, 256);
  if (!text) return std::nullopt;
  return ParseUint(*text);
}

}  // namespace

std::optional<uint64_t> ParseCgroupLimit(const std::string& text) {
  if (text.rfind("max", 0) == 0) return std::nullopt;
  auto v = ParseUint(text);
  // v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages (~2^63).
  if (!v || *v >= (uint64_t{1} << 62)) return std::nullopt;
  return v;
}

ProcReader::ProcReader(std::string proc_root, std::string cgroup_root)
    : proc_root_(std::move(proc_root)), cgroup_root_(std::move(cgroup_root)) {}

bool ProcReader::Exists(uint32_t pid) const {
  // A zombie still has /proc/<pid>; its status says so.
  auto status = ReadSmallFile(proc_root_ + "/" + std::to_string(pid) + "/stat", 1024);
  if (!status) return false;
  auto close = status->rfind(')');
  return close == std::string::npos || close + 2 >= status->size() || (*status)[close + 2] != 'Z';
}

std::optional<uint64_t> ProcReader::Rss(uint32_t pid) const {
  auto status = ReadSmallFile(proc_root_ + "/" + std::to_string(pid) + "/status");
  if (!status) return std::nullopt;
  auto pos = status->find("\nVmRSS:");
  if (pos == std::string::npos) return std::nullopt;
  auto kb = ParseUint(status->substr(pos + 7));
  if (!kb) return std::nullopt;
  return *kb * 1024;
}

CgroupMemory ProcReader::Cgroup(uint32_t pid) const {
  CgroupMemory out;
  std::string pid_dir = proc_root_ + "/" + std::to_string(pid);
  auto text = ReadSmallFile(pid_dir + "/cgroup");
  if (!text) return out;
  std::string v1_path, v2_path;
  bool have_v1 = false, have_v2 = false;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    // hierarchy-id:controllers:path
    auto a = line.find(':');
    auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      v2_path = path;
      have_v2 = true;
    }
    std::istringstream names(controllers);
    std::string name;
    while (std::getline(names, name, ',')) {
      if (name == "memory") {
        v1_path = path;
        have_v1 = true;
      }
    }
  }
  // Candidate directories, most specific first.
  struct Candidate {
    int version;
    std::string dir;
  };
  std::vector<Candidate> candidates;
  if (have_v1) {
    candidates.push_back({1, cgroup_root_ + "/memory" + v1_path});
    candidates.push_back({1, pid_dir + "/root/sys/fs/cgroup/memory"});
  }
  if (have_v2) {
    candidates.push_back({2, cgroup_root_ + v2_path});
    candidates.push_back({2, pid_dir + "/root/sys/fs/cgroup"});
  }
  for (const auto& c : candidates) {
    const char* usage_file = c.version == 1 ? "/memory.usage_in_bytes" : "/memory.current";
    const char* limit_file = c.version == 1 ? "/memory.limit_in_bytes" : "/memory.max";
    auto usage = ReadUint(c.dir + usage_file);
    if (!usage) continue;
    out.version = c.version;
    out.path = c.dir;
    out.usage = usage;
    if (auto limit = ReadSmallFile(c.dir + limit_file, 256)) out.limit = ParseCgroupLimit(*limit);
    return out;
  }
  return out;
}

std::optional<uint64_t> ProcReader::SelfRss() const { return Rss(static_cast<uint32_t>(::getpid())); }

std::optional<double> ProcReader::SelfCpuSeconds() const {
  auto stat = ReadSmallFile(proc_root_ + "/self/stat", 4096);
  if (!stat) return std::nullopt;
  auto close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(stat->substr(close + 2));
  std::string field;
  // After ")": state(3) ... utime is field 14, stime 15 (1-based in proc(5)).
  std::vector<std::string> fields;
  while (in >> field && fields.size() < 13) fields.push_back(field);
  if (fields.size() < 13) return std::nullopt;
  double ticks = std::strtod(fields[11].c_str(), nullptr) + std::strtod(fields[12].c_str(), nullptr);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace heapwatch::collector
