// Test helpers shared by the symbolizer's unit tests: run the fixture
// programs (built by tests/programs/symbolizer/build_fixtures.sh), parse what
// they saw at run time, find marked source lines, make scratch directories.
#ifndef HEAPWATCH_SYMBOLIZER_TEST_FIXTURES_H_
#define HEAPWATCH_SYMBOLIZER_TEST_FIXTURES_H_

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>

namespace heapwatch::symbolizer::testing {

inline std::string FixturePath(const std::string& name) {
  return std::string(HWSYM_FIXTURE_DIR) + "/" + name;
}

inline std::string FixtureSource(const std::string& name) {
  return std::string(HWSYM_FIXTURE_SOURCE_DIR) + "/" + name;
}

// What one run of a fixture program reported.
struct FixtureRun {
  std::map<std::string, uint64_t> bias;   // "main" / "plugin" -> load bias
  std::map<std::string, std::string> path;  // "plugin" -> path it was loaded from
  std::map<std::string, uint64_t> sites;  // site name -> return address
  std::map<std::string, uint64_t> functions;  // function name -> entry address

  // The ELF vaddr an unwinder-fed caller would look up for a site.
  uint64_t SiteVaddr(const std::string& module, const std::string& site) const {
    return sites.at(site) - 1 - bias.at(module);
  }
  uint64_t FunctionVaddr(const std::string& module, const std::string& function) const {
    return functions.at(function) - bias.at(module);
  }
};

inline std::string RunCommand(const std::string& command, int* status) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *status = -1;
    return output;
  }
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  *status = pclose(pipe);
  return output;
}

// Runs `binary` (optionally with a plugin to dlopen) and parses its report.
inline FixtureRun RunFixture(const std::string& binary, const std::string& plugin = "") {
  int status = 0;
  std::string output = RunCommand("'" + binary + "' " + (plugin.empty() ? "" : "'" + plugin + "'"),
                                  &status);
  EXPECT_EQ(status, 0) << binary << " failed:\n" << output;
  FixtureRun run;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string kind, module, name, hex;
    fields >> kind >> module;
    if (kind == "module") {
      fields >> hex >> name;
      run.bias[module] = std::stoull(hex, nullptr, 16);
      run.path[module] = name;
    } else if (kind == "site") {
      fields >> name >> hex;
      run.sites[name] = std::stoull(hex, nullptr, 16);
    } else if (kind == "function") {
      fields >> name >> hex;
      run.functions[name] = std::stoull(hex, nullptr, 16);
    }
  }
  return run;
}

// The line of `source` carrying "@site:<marker>"; 0 if none.
inline int MarkerLine(const std::string& source, const std::string& marker) {
  std::ifstream in(source);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find("@site:" + marker) != std::string::npos) return number;
  }
  ADD_FAILURE() << "no @site:" << marker << " in " << source;
  return 0;
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "hwsym-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  // Copies `from` to path()/relative, creating directories.
  std::string Copy(const std::string& from, const std::string& relative) const {
    std::filesystem::path to = std::filesystem::path(path_) / relative;
    std::filesystem::create_directories(to.parent_path());
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
    return to.string();
  }
  std::string Write(const std::string& relative, const std::string& contents) const {
    std::filesystem::path to = std::filesystem::path(path_) / relative;
    std::filesystem::create_directories(to.parent_path());
    std::ofstream(to, std::ios::binary | std::ios::trunc) << contents;
    return to.string();
  }

 private:
  std::string path_;
};

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace heapwatch::symbolizer::testing

#endif  // HEAPWATCH_SYMBOLIZER_TEST_FIXTURES_H_
