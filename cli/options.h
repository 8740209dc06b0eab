// capturectl's command line: which command, its target and its flags.
// Parsing is pure (no I/O) so every accepted and refused form is unit-tested.
#ifndef CLI_OPTIONS_H_
#define CLI_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/packetcapture.pb.h"

namespace pc::cli {

inline constexpr char kDefaultServer[] = "127.0.0.1:9090";

enum class Command { kList, kGet, kDownload, kFollow, kWatch, kHelp };

struct Options {
  Command command = Command::kHelp;
  // host:port of an aggregator or agent CaptureService.
  std::string server = kDefaultServer;
  // get, download, follow.
  std::string id;
  // download, follow: a file, or "-" for stdout.
  std::string output;
  // list, watch.
  std::string node;
  std::string namespace_;
  std::string pod;
  packetcapture::v1::Capture::State state =
      packetcapture::v1::Capture::STATE_UNSPECIFIED;
  // A bearer token for the aggregator (--token), or the file holding one
  // (--token-file; read by main). At most one of them is set.
  std::string token;
  std::string token_file;
};

// Parses argv[1..]. `env_server` is $CAPTURECTL_SERVER (may be empty); an
// explicit --server wins over it. download without -o writes "<id>.pcap" in
// the current directory, which requires an id that is a plain file name.
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     const std::string& env_server);

// The token in a token file's contents: surrounding whitespace (a trailing
// newline) removed; an error if nothing or more than one word is left, or it
// holds bytes outside printable ASCII.
absl::StatusOr<std::string> TokenFromFileContents(const std::string& contents);

// True when `server` (a gRPC target) is on this host: localhost, 127.0.0.0/8,
// ::1, or a unix socket. capturectl warns before sending a token elsewhere,
// because its channel is plaintext.
bool IsLoopbackServer(const std::string& server);

// True for ids usable as a file name: [A-Za-z0-9._-], not starting with '.',
// at most 200 characters. Capture ids are always of this form.
bool IsPlainId(const std::string& id);

extern const char kUsage[];

}  // namespace pc::cli

#endif  // CLI_OPTIONS_H_
