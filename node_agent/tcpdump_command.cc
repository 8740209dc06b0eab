#include "node_agent/tcpdump_command.h"

#include "absl/strings/str_cat.h"

namespace pc::agent {
namespace {

bool IsSafeInterfaceName(const std::string& name) {
  // Linux IFNAMSIZ is 16 including the NUL; no '/', spaces or leading '-'
  // (which tcpdump would read as an option).
  if (name.empty() || name.size() > 15 || name[0] == '-') return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.' || c == '@')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> BuildTcpdumpArgv(
    const TcpdumpOptions& options) {
  if (options.binary.empty() || options.binary[0] != '/') {
    return absl::InvalidArgumentError(
        "tcpdump binary must be an absolute path");
  }
  if (!IsSafeInterfaceName(options.interface)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid interface name \"", options.interface, "\""));
  }
  if (options.output_base.empty() || options.output_base[0] != '/') {
    return absl::InvalidArgumentError("output path must be absolute");
  }
  if (options.max_files < 1) {
    return absl::InvalidArgumentError("max_files must be at least 1");
  }
  std::vector<std::string> argv = {
      options.binary,
      "-i",
      options.interface,
      // Debian's tcpdump drops to user tcpdump before opening -w files.
      "-Z",
      "root",
      // Flush each packet to the file so readers see it promptly.
      "-U",
      "-n",
      "-C",
      "1",
      "-W",
      std::to_string(options.max_files),
  };
  if (options.snaplen > 0) {
    argv.push_back("-s");
    argv.push_back(std::to_string(options.snaplen));
  }
  if (options.buffer_kib > 0) {
    argv.push_back("-B");
    argv.push_back(std::to_string(options.buffer_kib));
  }
  if (options.immediate) argv.push_back("--immediate-mode");
  if (options.packet_count > 0) {
    argv.push_back("-c");
    argv.push_back(std::to_string(options.packet_count));
  }
  argv.push_back("-w");
  argv.push_back(options.output_base);
  if (!options.filter.empty()) {
    if (options.filter.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("filter contains a NUL byte");
    }
    // tcpdump joins the arguments after its options into the expression;
    // "--" ends getopt's option scan (GNU getopt would otherwise pick
    // options out of the expression).
    argv.push_back("--");
    argv.push_back(options.filter);
  }
  return argv;
}

}  // namespace pc::agent
