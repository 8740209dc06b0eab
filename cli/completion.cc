#include "cli/completion.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pc::cli {

std::string BashCompletionScript(const std::vector<CommandFlags>& table) {
  std::string global_flags;
  std::vector<std::string> commands;
  std::string cases;
  for (const CommandFlags& c : table) {
    if (c.name.empty()) {
      global_flags = absl::StrJoin(c.flags, " ");
      continue;
    }
    commands.push_back(c.name);
    absl::StrAppend(&cases, "    ", c.name, ") words=\"",
                    absl::StrJoin(c.flags, " "), " $global\" ;;\n");
  }
  // Values: states and formats are words; files complete as files; the
  // rest (ids, pods, selectors) are left to the user.
  return absl::StrCat(
      R"(# bash completion for capturectl: source <(capturectl completion bash)
_capturectl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local global=")",
      global_flags, R"(" commands=")", absl::StrJoin(commands, " "), R"("
  local command="" i words
  for ((i = 1; i < COMP_CWORD; i++)); do
    case " $commands " in
      *" ${COMP_WORDS[i]} "*) command=${COMP_WORDS[i]}; break ;;
    esac
  done
  case "$prev" in
    --state) COMPREPLY=($(compgen -W "PENDING RUNNING STOPPED FAILED" -- "$cur")); return ;;
    --format) COMPREPLY=($(compgen -W "pcap pcapng" -- "$cur")); return ;;
    -w|--write|--kubeconfig|--token-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -o|--output)
      if [ "$command" = list ]; then
        COMPREPLY=($(compgen -W "wide json yaml" -- "$cur"))
      else
        COMPREPLY=($(compgen -f -- "$cur"))
      fi
      return ;;
  esac
  case "$command" in
)",
      cases, R"(    completion) words="bash" ;;
    *) words="$commands $global" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _capturectl capturectl
)");
}

}  // namespace pc::cli
