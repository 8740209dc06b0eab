// `capturectl completion bash`: the bash completion script, generated from
// the parser's command table (CommandTable()) so every command and flag the
// parser accepts is offered. Pure.
#ifndef CLI_COMPLETION_H_
#define CLI_COMPLETION_H_

#include <string>
#include <vector>

#include "cli/options.h"

namespace pc::cli {

// Defines _capturectl and registers it: complete -F _capturectl capturectl.
std::string BashCompletionScript(const std::vector<CommandFlags>& table);

}  // namespace pc::cli

#endif  // CLI_COMPLETION_H_
