#include "cli/options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace pc::cli {

namespace {

using packetcapture::v1::Capture;

absl::Status Bad(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

// Raw values before validation: which flags were given at all matters.
struct Raw {
  bool help = false;
  std::vector<std::string> positional;
  std::string state;
  std::string format;
  std::string download_format;
  std::string duration;
  std::vector<std::string> shell;
  bool follow = false;
};

// Each command: its CLI11 subcommand with exactly the flags it accepts. The
// global flags (--server, --token, --token-file) may come before or after the
// command (fallthrough).
std::unique_ptr<CLI::App> BuildApp(Options* o, Raw* raw) {
  auto app = std::make_unique<CLI::App>("capturectl", "capturectl");
  app->set_help_flag();  // ours, so --help is a result, not an exception
  app->add_flag("-h,--help", raw->help);
  app->allow_extras();
  app->fallthrough();
  app->add_option("-s,--server", o->server, "host:port of the CaptureService");
  app->add_option("--token", o->token, "bearer token");
  app->add_option("--token-file", o->token_file, "file holding a token");

  auto command = [&](const char* name, const char* description) {
    CLI::App* sub = app->add_subcommand(name, description);
    sub->set_help_flag();
    sub->add_flag("-h,--help", raw->help);
    sub->allow_extras();
    return sub;
  };
  auto filters = [&](CLI::App* sub) {
    sub->add_option("--node", o->node, "only this node");
    sub->add_option("-n,--namespace", o->namespace_, "only this namespace");
    sub->add_option("--pod", o->pod, "only this pod");
  };

  CLI::App* list = command("list", "a table of captures");
  filters(list);
  list->add_option("--state", raw->state, "PENDING RUNNING STOPPED FAILED");
  list->add_option("-o,--output", raw->format, "wide, json or yaml");

  command("get", "one capture as JSON")->add_option("ID", raw->positional);
  command("describe", "one capture for a person")
      ->add_option("ID", raw->positional);
  for (const char* name : {"download", "follow"}) {
    CLI::App* sub = command(
        name, name[0] == 'd' ? "the capture as one file"
                             : "the capture so far, then new packets live");
    sub->add_option("ID", raw->positional);
    sub->add_option("-o,--output", o->output, "a file, or - for stdout");
    sub->add_option("--format", raw->download_format, "pcap or pcapng");
    if (name[0] == 'd') {
      sub->add_flag("-q,--quiet", o->quiet, "no progress bar");
    }
  }
  filters(command("watch", "one line per capture change"));

  CLI::App* capture = command("capture", "annotate, stream, clean up");
  capture->add_option("POD", raw->positional);
  capture->add_option("-n,--namespace", o->namespace_, "the Pod's namespace");
  capture->add_option("-l,--selector", o->label_selector,
                      "every Pod matching this label selector");
  capture->add_option("--files", o->files, "ring files of 1 MB to keep");
  capture->add_option("--filter", o->filter, "pcap filter expression");
  capture->add_option("--snaplen", o->snaplen, "bytes kept per packet");
  capture->add_option("--duration", raw->duration, "stop after (90s, 10m)");
  capture->add_option("--max-packets", o->max_packets,
                      "stop after this many packets");
  capture->add_option("-w,--write", o->output, "write to FILE");
  capture->add_flag("-f,--follow", raw->follow, "stream to stdout");
  capture->add_flag("--force", o->force, "take over an annotated Pod");
  capture->add_option("--kubeconfig", o->kubeconfig, "kubeconfig file");
  capture->add_option("--context", o->context, "kubeconfig context");

  command("completion", "a shell completion script")
      ->add_option("SHELL", raw->shell);
  command("help", "usage");
  return app;
}

// Whether `app` has the flag and it was given.
bool Given(const CLI::App* app, const std::string& flag) {
  const CLI::Option* option = app->get_option_no_throw(flag);
  return option != nullptr && option->count() > 0;
}

// The one subcommand that was given, or nullptr.
CLI::App* Chosen(CLI::App& app) {
  auto chosen = app.get_subcommands();
  return chosen.empty() ? nullptr : chosen[0];
}

// CLI11's messages for values ("--files: Value abc could not be converted")
// are clear; only the wording of a missing value is made ours.
std::string ParseErrorMessage(const CLI::ParseError& e) {
  std::string what = e.what();
  if (e.get_name() == "ArgumentMismatch") {
    // "--node: 1 required TEXT missing", "Expected exactly 1 argument to
    // --node, got 0": the flag's name, then ours.
    size_t colon = what.find(": ");
    size_t to = what.find(" to ");
    if (absl::StartsWith(what, "-") && colon != std::string::npos) {
      return absl::StrCat(what.substr(0, colon), " needs a value");
    }
    if (to != std::string::npos) {
      std::string flag = what.substr(to + 4);
      return absl::StrCat(flag.substr(0, flag.find(',')), " needs a value");
    }
  }
  return what;
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
  Options o;
  if (!env_server.empty()) o.server = env_server;
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (absl::StartsWith(arg, "--") && absl::EndsWith(arg, "=")) {
      return Bad(
          absl::StrCat(arg.substr(0, arg.size() - 1), " must not be empty"));
    }
  }
  Raw raw;
  std::unique_ptr<CLI::App> app = BuildApp(&o, &raw);
  try {
    app->parse(std::vector<std::string>(args.rbegin(), args.rend()));
  } catch (const CLI::ParseError& e) {
    return Bad(ParseErrorMessage(e));
  }
  CLI::App* sub = Chosen(*app);
  if (raw.help) {
    o.command = Command::kHelp;
    o.help_text = sub != nullptr && sub->get_name() != "help"
                      ? sub->help("capturectl")
                      : std::string(kUsage);
    return o;
  }
  std::vector<std::string> extras = app->remaining();
  if (sub == nullptr) {
    if (extras.empty()) return Bad("no command given");
    if (absl::StartsWith(extras[0], "-") && extras[0] != "-") {
      return Bad(absl::StrCat("unknown flag ", extras[0]));
    }
    return Bad(absl::StrCat("unknown command \"", extras[0], "\""));
  }
  const std::string name = sub->get_name();
  for (const std::string& extra : sub->remaining()) extras.push_back(extra);
  if (!extras.empty()) {
    if (absl::StartsWith(extras[0], "-") && extras[0] != "-") {
      std::string flag = extras[0].substr(0, extras[0].find('='));
      return Bad(absl::StrCat(flag, " does not go with ", name, " (capturectl ",
                              name, " --help lists its flags)"));
    }
    return Bad(absl::StrCat("unexpected argument \"", extras[0], "\""));
  }
  static const std::pair<const char*, Command> kCommands[] = {
      {"list", Command::kList},         {"get", Command::kGet},
      {"describe", Command::kDescribe}, {"download", Command::kDownload},
      {"follow", Command::kFollow},     {"watch", Command::kWatch},
      {"capture", Command::kCapture},   {"completion", Command::kCompletion},
      {"help", Command::kHelp}};
  for (const auto& [command_name, command] : kCommands) {
    if (name == command_name) o.command = command;
  }
  if (o.command == Command::kHelp) {
    o.help_text = kUsage;
    return o;
  }
  for (const char* flag : {"--server", "--token", "--token-file"}) {
    if (Given(app.get(), flag)) {
      const std::string& value = flag == std::string("--server") ? o.server
                                 : flag == std::string("--token")
                                     ? o.token
                                     : o.token_file;
      if (value.empty()) return Bad(absl::StrCat(flag, " must not be empty"));
    }
  }
  if (!o.token.empty() && !o.token_file.empty()) {
    return Bad("give --token or --token-file, not both");
  }

  switch (o.command) {
    case Command::kGet:
    case Command::kDescribe:
    case Command::kDownload:
    case Command::kFollow:
      if (raw.positional.size() != 1) {
        return Bad("expected exactly one capture ID");
      }
      o.id = raw.positional[0];
      break;
    case Command::kCapture:
      if (raw.positional.size() > 1) {
        return Bad(absl::StrCat("unexpected argument \"", raw.positional[1],
                                "\" (one POD, or -l SELECTOR)"));
      }
      if (raw.positional.empty() == o.label_selector.empty()) {
        return Bad("give one POD or -l SELECTOR (e.g. -l app=web)");
      }
      if (!raw.positional.empty()) o.pod = raw.positional[0];
      break;
    case Command::kCompletion:
      if (raw.shell.size() != 1 || raw.shell[0] != "bash") {
        return Bad(
            "completion: only bash is supported (capturectl completion "
            "bash)");
      }
      o.shell = raw.shell[0];
      break;
    default:
      break;
  }

  if (!raw.state.empty() || Given(sub, "--state")) {
    Capture::State state;
    if (!Capture::State_Parse(absl::AsciiStrToUpper(raw.state), &state) ||
        state == Capture::STATE_UNSPECIFIED) {
      return Bad(absl::StrCat("unknown --state \"", raw.state,
                              "\" (PENDING, RUNNING, STOPPED or FAILED)"));
    }
    o.state = state;
  }
  if (o.command == Command::kList && Given(sub, "--output")) {
    if (raw.format == "wide") {
      o.format = OutputFormat::kWide;
    } else if (raw.format == "json") {
      o.format = OutputFormat::kJson;
    } else if (raw.format == "yaml") {
      o.format = OutputFormat::kYaml;
    } else {
      return Bad(absl::StrCat("unknown output format \"", raw.format,
                              "\" for list (wide, json or yaml)"));
    }
  }
  const bool writes =
      o.command == Command::kDownload || o.command == Command::kFollow;
  if (writes) {
    if (Given(sub, "--format")) {
      if (raw.download_format == "pcapng") {
        o.download_format = packetcapture::v1::FORMAT_PCAPNG;
      } else if (raw.download_format != "pcap") {
        return Bad(absl::StrCat("unknown --format \"", raw.download_format,
                                "\" (pcap or pcapng)"));
      }
    }
    const bool have_output = Given(sub, "--output");
    if (have_output && o.output.empty()) return Bad("-o must not be empty");
    if (o.command == Command::kFollow && !have_output) o.output = "-";
    if (o.command == Command::kDownload && !have_output) {
      if (!IsPlainId(o.id)) {
        return Bad("this ID cannot be a file name; give -o FILE");
      }
      o.output = absl::StrCat(
          o.id, o.download_format == packetcapture::v1::FORMAT_PCAPNG
                    ? ".pcapng"
                    : ".pcap");
    }
  }
  if (o.command == Command::kCapture) {
    if (o.namespace_.empty()) o.namespace_ = "default";
    if (Given(sub, "--write") && o.output.empty()) {
      return Bad("-w must not be empty");
    }
    if (raw.follow && !o.output.empty() && o.output != "-") {
      return Bad("give -w FILE or --follow (stdout), not both");
    }
    if (o.output.empty()) o.output = "-";
    if (o.files < 1 || o.files > 1000) {
      return Bad("--files must be from 1 to 1000");
    }
    if (Given(sub, "--duration")) {
      if (!absl::ParseDuration(raw.duration, &o.duration) ||
          o.duration <= absl::ZeroDuration()) {
        return Bad(absl::StrCat("--duration \"", raw.duration,
                                "\" is not a positive duration (90s, 10m)"));
      }
      o.duration_text = raw.duration;
    }
    if (Given(sub, "--filter") && o.filter.empty()) {
      return Bad("--filter must not be empty");
    }
    if (Given(sub, "--snaplen") && o.snaplen == 0) {
      return Bad("--snaplen must be at least 1");
    }
    if (Given(sub, "--max-packets") && o.max_packets == 0) {
      return Bad("--max-packets must be at least 1");
    }
  }
  return o;
}

std::vector<CommandFlags> CommandTable() {
  Options o;
  Raw raw;
  std::unique_ptr<CLI::App> app = BuildApp(&o, &raw);
  std::vector<CommandFlags> table;
  CommandFlags global{"", {}, {}};
  for (const CLI::Option* option : app->get_options()) {
    for (const std::string& flag : option->get_lnames()) {
      global.flags.push_back("--" + flag);
    }
  }
  table.push_back(global);
  for (const CLI::App* sub : app->get_subcommands({})) {
    CommandFlags command{sub->get_name(), {}, {}};
    for (const CLI::Option* option : sub->get_options()) {
      for (const std::string& flag : option->get_snames()) {
        command.flags.push_back("-" + flag);
      }
      for (const std::string& flag : option->get_lnames()) {
        command.flags.push_back("--" + flag);
      }
      if (option->get_positional()) {
        command.positional = option->get_name(true, false);
      }
    }
    table.push_back(command);
  }
  return table;
}

}  // namespace pc::cli
