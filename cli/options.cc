#include "cli/options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace pc::cli {

const char kUsage[] =
    R"(usage: capturectl [--server=HOST:PORT] [--token-file=FILE] COMMAND [ARGS]

Talks to a packetcapture.v1.CaptureService: the aggregator (every node) or an
agent (its node). Default server: $CAPTURECTL_SERVER, else 127.0.0.1:9090
(e.g. kubectl -n kube-system port-forward svc/capture-aggregator 9090:9090).

Through a port-forward no token is needed. Elsewhere the aggregator wants a
bearer token and shows the namespaces whose captures its user may read
(RBAC: get on captures.packetcapture.antrea.io, e.g. ClusterRole
packet-capture-reader bound in the namespace):
  --token-file=FILE     a file holding the token, e.g. from
                        kubectl create token SA -n NS > FILE
  --token=TOKEN         the token itself (visible to other local users in
                        the process list: prefer --token-file)
The connection is plaintext: the token and the pcap data cross the network
unencrypted (capturectl warns when the server is not on this host).

commands:
  list [--node=N] [--namespace=NS] [--pod=P] [--state=STATE]
                        a table of captures (STATE: PENDING RUNNING STOPPED FAILED)
  get ID                one capture as JSON
  download ID [-o FILE] the capture as one pcap file (default ID.pcap; - for stdout);
                        written to a temporary name and renamed when complete
  follow ID [-o FILE]   the capture so far, then new packets as they come, to
                        stdout by default: capturectl follow ID | wireshark -k -i -
  watch [--node=N] [--namespace=NS] [--pod=P]
                        one line per capture change, until interrupted
  help                  this text
)";

namespace {

using packetcapture::v1::Capture;

absl::Status Bad(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

}  // namespace

absl::StatusOr<std::string> TokenFromFileContents(const std::string& contents) {
  absl::string_view token = absl::StripAsciiWhitespace(contents);
  if (token.empty()) return Bad("the token file is empty");
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return Bad(
          "the token file holds more than one word or non-printable bytes");
    }
  }
  return std::string(token);
}

bool IsLoopbackServer(const std::string& server) {
  absl::string_view target = server;
  if (absl::StartsWith(target, "unix:") ||
      absl::StartsWith(target, "unix-abstract:")) {
    return true;
  }
  absl::ConsumePrefix(&target, "dns:///");
  absl::ConsumePrefix(&target, "ipv4:");
  absl::ConsumePrefix(&target, "ipv6:");
  absl::string_view host = target;
  if (absl::ConsumePrefix(&host, "[")) {
    host = host.substr(0, host.find(']'));
  } else {
    size_t colon = host.rfind(':');
    if (colon != absl::string_view::npos) host = host.substr(0, colon);
  }
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1") return true;
  in_addr addr;
  std::string host_string(host);
  return inet_pton(AF_INET, host_string.c_str(), &addr) == 1 &&
         (ntohl(addr.s_addr) >> 24) == 127;
}

bool IsPlainId(const std::string& id) {
  if (id.empty() || id.size() > 200 || id[0] == '.') return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     const std::string& env_server) {
  Options options;
  if (!env_server.empty()) options.server = env_server;
  std::vector<std::string> positional;
  bool have_command = false;
  bool have_output = false;
  bool have_state = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-" || !absl::StartsWith(arg, "-")) {
      if (!have_command) {
        have_command = true;
        static const std::pair<const char*, Command> kCommands[] = {
            {"list", Command::kList},         {"get", Command::kGet},
            {"download", Command::kDownload}, {"follow", Command::kFollow},
            {"watch", Command::kWatch},       {"help", Command::kHelp}};
        bool known = false;
        for (const auto& [name, command] : kCommands) {
          if (arg == name) {
            options.command = command;
            known = true;
          }
        }
        if (!known) return Bad(absl::StrCat("unknown command \"", arg, "\""));
      } else {
        positional.push_back(arg);
      }
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      options.command = Command::kHelp;
      return options;
    }
    // --name=value, --name value, or -o value / -s value.
    std::string name = arg;
    std::string value;
    bool has_value = false;
    size_t eq = arg.find('=');
    if (absl::StartsWith(arg, "--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (!has_value) {
      if (i + 1 >= args.size())
        return Bad(absl::StrCat(name, " needs a value"));
      value = args[++i];
    }
    if (name == "--server" || name == "-s") {
      if (value.empty()) return Bad("--server must not be empty");
      options.server = value;
    } else if (name == "--output" || name == "-o") {
      if (value.empty()) return Bad("-o must not be empty");
      options.output = value;
      have_output = true;
    } else if (name == "--token") {
      if (value.empty()) return Bad("--token must not be empty");
      options.token = value;
    } else if (name == "--token-file") {
      if (value.empty()) return Bad("--token-file must not be empty");
      options.token_file = value;
    } else if (name == "--node") {
      options.node = value;
    } else if (name == "--namespace" || name == "-n") {
      options.namespace_ = value;
    } else if (name == "--pod") {
      options.pod = value;
    } else if (name == "--state") {
      Capture::State state;
      if (!Capture::State_Parse(absl::AsciiStrToUpper(value), &state) ||
          state == Capture::STATE_UNSPECIFIED) {
        return Bad(absl::StrCat("unknown --state \"", value,
                                "\" (PENDING, RUNNING, STOPPED or FAILED)"));
      }
      options.state = state;
      have_state = true;
    } else {
      return Bad(absl::StrCat("unknown flag ", name));
    }
  }
  if (!have_command) return Bad("no command given");
  if (!options.token.empty() && !options.token_file.empty()) {
    return Bad("give --token or --token-file, not both");
  }

  const bool wants_id = options.command == Command::kGet ||
                        options.command == Command::kDownload ||
                        options.command == Command::kFollow;
  const bool filters =
      options.command == Command::kList || options.command == Command::kWatch;
  if (wants_id) {
    if (positional.size() != 1) return Bad("expected exactly one capture ID");
    options.id = positional[0];
  } else if (!positional.empty()) {
    return Bad(absl::StrCat("unexpected argument \"", positional[0], "\""));
  }
  if (!filters && (!options.node.empty() || !options.namespace_.empty() ||
                   !options.pod.empty())) {
    return Bad("--node, --namespace and --pod go with list and watch");
  }
  if (have_state && options.command != Command::kList) {
    return Bad("--state goes with list");
  }
  const bool writes = options.command == Command::kDownload ||
                      options.command == Command::kFollow;
  if (have_output && !writes) return Bad("-o goes with download and follow");
  if (options.command == Command::kFollow && !have_output) options.output = "-";
  if (options.command == Command::kDownload && !have_output) {
    if (!IsPlainId(options.id)) {
      return Bad("this ID cannot be a file name; give -o FILE");
    }
    options.output = options.id + ".pcap";
  }
  return options;
}

}  // namespace pc::cli
