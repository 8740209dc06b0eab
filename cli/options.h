// capturectl's command line: which command, its target and its flags.
// Parsing (CLI11) is pure (no I/O) so every accepted and refused form is
// unit-tested; the bash completion script is generated from the same command
// table, so it cannot drift from what the parser accepts.
#ifndef CLI_OPTIONS_H_
#define CLI_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/packetcapture.pb.h"

namespace pc::cli {

inline constexpr char kDefaultServer[] = "127.0.0.1:9090";
// How a user reaches the aggregator from a workstation (README).
inline constexpr char kPortForwardHint[] =
    "kubectl -n kube-system port-forward svc/capture-aggregator 9090:9090";

enum class Command {
  kList,
  kGet,
  kDescribe,
  kDownload,
  kFollow,
  kWatch,
  kCapture,
  kCompletion,
  kHelp
};

// list -o.
enum class OutputFormat { kTable, kWide, kJson, kYaml };

struct Options {
  Command command = Command::kHelp;
  // kHelp: the text to print (the overview, or one command's flags).
  std::string help_text;
  // host:port of an aggregator or agent CaptureService.
  std::string server = kDefaultServer;
  // get, describe, download, follow.
  std::string id;
  // download, follow: a file, or "-" for stdout. capture: -w FILE or "-".
  std::string output;
  // list, watch; capture: the Pod's namespace and name.
  std::string node;
  std::string namespace_;
  std::string pod;
  packetcapture::v1::Capture::State state =
      packetcapture::v1::Capture::STATE_UNSPECIFIED;
  // list -o.
  OutputFormat format = OutputFormat::kTable;
  // download and follow: pcap (default) or pcapng.
  packetcapture::v1::CaptureFormat download_format =
      packetcapture::v1::FORMAT_PCAP;
  // download: no progress bar even on a terminal.
  bool quiet = false;
  // A bearer token for the aggregator (--token), or the file holding one
  // (--token-file; read by main). At most one of them is set.
  std::string token;
  std::string token_file;

  // capture: the annotation and its options.
  std::string label_selector;
  uint32_t files = 5;
  std::string filter;
  uint32_t snaplen = 0;
  std::string duration_text;  // as given ("90s"); empty: no limit
  absl::Duration duration = absl::ZeroDuration();
  uint64_t max_packets = 0;
  bool force = false;
  // capture: kubeconfig like kubectl (--kubeconfig, else $KUBECONFIG, else
  // ~/.kube/config; resolved by main) and its context.
  std::string kubeconfig;
  std::string context;
  // capture: how long to wait for RUNNING.
  absl::Duration wait_timeout = absl::Seconds(60);

  // completion: the shell ("bash").
  std::string shell;
};

// Parses argv[1..]. `env_server` is $CAPTURECTL_SERVER (may be empty); an
// explicit --server wins over it. download without -o writes "<id>.pcap" in
// the current directory, which requires an id that is a plain file name.
// Errors are InvalidArgument with a message for a person.
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     const std::string& env_server);

// One command of the parser and the flags it accepts (long and short
// spellings); name "" holds the global flags. For the completion script.
struct CommandFlags {
  std::string name;
  std::vector<std::string> flags;
  std::string positional;  // "ID", "POD", ... or ""
};
std::vector<CommandFlags> CommandTable();

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
