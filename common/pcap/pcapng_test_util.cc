#include "common/pcap/pcapng_test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/pcap/pcap_test_util.h"
#include "common/pcap/pcapng_writer.h"

extern char** environ;

namespace pc::pcapng::testutil {
namespace {

uint32_t Get32(absl::string_view d, size_t at) {
  uint32_t v;
  std::memcpy(&v, d.data() + at, 4);
  return v;
}

uint16_t Get16(absl::string_view d, size_t at) {
  uint16_t v;
  std::memcpy(&v, d.data() + at, 2);
  return v;
}

absl::StatusOr<Options> ParseOptions(absl::string_view d) {
  Options options;
  size_t at = 0;
  while (at + 4 <= d.size()) {
    const uint16_t code = Get16(d, at);
    const uint16_t len = Get16(d, at + 2);
    if (code == 0) return options;
    if (at + 4 + len > d.size()) return absl::DataLossError("option overflows");
    options[code].emplace_back(d.substr(at + 4, len));
    at += 4 + ((len + 3u) & ~3u);
  }
  if (at != d.size()) return absl::DataLossError("options misaligned");
  return options;
}

}  // namespace

absl::StatusOr<ParsedPcapng> ParsePcapng(absl::string_view d) {
  ParsedPcapng parsed;
  size_t at = 0;
  bool section = false;
  while (at < d.size()) {
    if (at + 12 > d.size()) return absl::DataLossError("truncated block");
    const uint32_t type = Get32(d, at);
    const uint32_t len = Get32(d, at + 4);
    if (len < 12 || len % 4 != 0 || at + len > d.size() ||
        Get32(d, at + len - 4) != len) {
      return absl::DataLossError(absl::StrCat("bad block length at ", at));
    }
    absl::string_view body = d.substr(at + 8, len - 12);
    if (type == kSectionHeaderType) {
      if (section) return absl::DataLossError("second section");
      if (Get32(body, 0) != kByteOrderMagic) {
        return absl::DataLossError("byte order magic");
      }
      auto options = ParseOptions(body.substr(16));
      if (!options.ok()) return options.status();
      parsed.section = *options;
      section = true;
    } else if (!section) {
      return absl::DataLossError("block before the section header");
    } else if (type == kInterfaceDescriptionType) {
      ParsedInterface idb;
      idb.linktype = Get16(body, 0);
      idb.snaplen = Get32(body, 4);
      auto options = ParseOptions(body.substr(8));
      if (!options.ok()) return options.status();
      idb.options = *options;
      parsed.interfaces.push_back(idb);
    } else if (type == kEnhancedPacketType) {
      ParsedPacket p;
      p.interface_id = Get32(body, 0);
      if (p.interface_id >= parsed.interfaces.size()) {
        return absl::DataLossError("packet before its interface");
      }
      p.timestamp = (uint64_t{Get32(body, 4)} << 32) | Get32(body, 8);
      const uint32_t caplen = Get32(body, 12);
      p.orig_len = Get32(body, 16);
      if (20 + ((caplen + 3u) & ~3u) != body.size()) {
        return absl::DataLossError("EPB length does not match caplen");
      }
      p.data = std::string(body.substr(20, caplen));
      parsed.packets.push_back(std::move(p));
    } else {
      return absl::DataLossError(absl::StrCat("unexpected block ", type));
    }
    at += len;
  }
  if (!section) return absl::DataLossError("no section header");
  return parsed;
}

uint32_t SequenceOf(absl::string_view packet) {
  constexpr size_t kSeqAt = 14 + 20 + 8;
  if (packet.size() < kSeqAt + 4) return ~0u;
  const auto* b =
      reinterpret_cast<const unsigned char*>(packet.data()) + kSeqAt;
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
         (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

int RunTool(const std::vector<std::string>& args, std::string* out) {
  const std::string dir = pcap::testutil::MakeTempDir();
  const std::string out_path = dir + "/stdout";
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  *out = pcap::testutil::ReadFile(out_path);
  return status;
}

}  // namespace pc::pcapng::testutil
