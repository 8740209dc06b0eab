#include "cli/completion.h"

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

TEST(BashCompletionScript, KnowsCommandsAndTheirFlags) {
  std::string script = BashCompletionScript(CommandTable());
  EXPECT_NE(script.find("complete -F _capturectl capturectl"),
            std::string::npos);
  EXPECT_NE(script.find("commands=\"list get describe download follow watch "
                        "capture completion help\""),
            std::string::npos)
      << script;
  // capture's own flags on its line, with the global ones after.
  size_t capture = script.find("    capture) words=\"");
  ASSERT_NE(capture, std::string::npos) << script;
  std::string line =
      script.substr(capture, script.find('\n', capture) - capture);
  for (const char* flag :
       {"--namespace", "-l", "--selector", "--files", "--filter", "--snaplen",
        "--duration", "--max-packets", "-w", "--follow", "--force",
        "--kubeconfig", "$global"}) {
    EXPECT_NE(line.find(flag), std::string::npos) << flag << " in " << line;
  }
  EXPECT_NE(script.find("global=\"--help --server --token --token-file\""),
            std::string::npos)
      << script;
}

}  // namespace
}  // namespace pc::cli
