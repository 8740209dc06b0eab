#include "common/s3/s3_config.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pc::s3 {
namespace {

// Credentials are small; a bigger file is not a credentials file.
constexpr size_t kMaxCredentialFile = 64 << 10;

bool ValidBucketName(absl::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '.' &&
        c != '-') {
      return false;
    }
  }
  return absl::ascii_isalnum(b.front()) && absl::ascii_isalnum(b.back()) &&
         !absl::StrContains(b, "..");
}

absl::Status ReadSmallFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().size() > kMaxCredentialFile) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is too large for a credentials file"));
  }
  *out = s.str();
  return absl::OkStatus();
}

// Control characters would break the HTTP headers they go into.
absl::Status CheckValue(absl::string_view source, absl::string_view name,
                        absl::string_view value) {
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", name, " holds control characters"));
    }
  }
  return absl::OkStatus();
}

std::string CanonicalName(absl::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  if (absl::StartsWith(n, "aws_")) n = n.substr(4);
  return n;
}

// Checks and stores what was found in `source`.
absl::Status Apply(absl::string_view source,
                   const std::map<std::string, std::string>& values,
                   S3Config* config) {
  auto find = [&](const char* name) -> std::string {
    auto it = values.find(name);
    return it == values.end() ? "" : it->second;
  };
  std::string access = find("access_key_id");
  std::string secret = find("secret_access_key");
  std::string token = find("session_token");
  if (access.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no access_key_id"));
  }
  if (secret.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no secret_access_key"));
  }
  if (auto s = CheckValue(source, "access_key_id", access); !s.ok()) return s;
  if (auto s = CheckValue(source, "secret_access_key", secret); !s.ok()) {
    return s;
  }
  if (auto s = CheckValue(source, "session_token", token); !s.ok()) return s;
  config->access_key = access;
  config->secret_key = secret;
  config->session_token = token;
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseStoreUrl(absl::string_view url, std::string* bucket,
                           std::string* prefix) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "s3://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("store URL must start with s3://: ", url));
  }
  size_t slash = rest.find('/');
  absl::string_view b = rest.substr(0, slash);
  absl::string_view p =
      slash == absl::string_view::npos ? "" : rest.substr(slash + 1);
  if (!ValidBucketName(b)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store URL ", url,
        ": the bucket must be 3-63 characters of a-z, 0-9, '.' and '-'"));
  }
  while (absl::ConsumePrefix(&p, "/")) {
  }
  while (absl::ConsumeSuffix(&p, "/")) {
  }
  if (absl::StrContains(p, "//")) {
    return absl::InvalidArgumentError(
        absl::StrCat("store URL ", url, ": empty path segment in the prefix"));
  }
  *bucket = std::string(b);
  *prefix = std::string(p);
  return absl::OkStatus();
}

absl::Status LoadCredentials(const std::string& file_or_dir, S3Config* config) {
  std::map<std::string, std::string> values;
  if (file_or_dir.empty()) {
    const struct {
      const char* env;
      const char* name;
    } kVars[] = {{"AWS_ACCESS_KEY_ID", "access_key_id"},
                 {"AWS_SECRET_ACCESS_KEY", "secret_access_key"},
                 {"AWS_SESSION_TOKEN", "session_token"}};
    for (const auto& v : kVars) {
      const char* value = std::getenv(v.env);
      if (value != nullptr) values[v.name] = value;
    }
    if (values.count("access_key_id") == 0) {
      return absl::InvalidArgumentError(
          "no S3 credentials: give a credentials file or directory, or set "
          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    }
    return Apply("environment", values, config);
  }

  struct stat st;
  if (stat(file_or_dir.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("S3 credentials: cannot stat ", file_or_dir));
  }
  if (S_ISDIR(st.st_mode)) {
    for (const char* name :
         {"access_key_id", "secret_access_key", "session_token"}) {
      std::string path = absl::StrCat(file_or_dir, "/", name);
      struct stat fst;
      if (stat(path.c_str(), &fst) != 0) continue;
      std::string content;
      if (auto s = ReadSmallFile(path, &content); !s.ok()) return s;
      values[name] = std::string(absl::StripAsciiWhitespace(content));
    }
    return Apply(file_or_dir, values, config);
  }

  std::string content;
  if (auto s = ReadSmallFile(file_or_dir, &content); !s.ok()) return s;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      // The line may be a bare secret: say where, not what.
      return absl::InvalidArgumentError(
          absl::StrCat(file_or_dir, ":", line_number, ": expected name=value"));
    }
    values[CanonicalName(line.substr(0, eq))] =
        std::string(absl::StripAsciiWhitespace(line.substr(eq + 1)));
  }
  return Apply(file_or_dir, values, config);
}

}  // namespace pc::s3
