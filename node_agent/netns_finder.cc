#include "node_agent/netns_finder.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pc::agent {
namespace {

// Canonical text of an IPv4 or IPv6 address, so "::ffff:..." and zero
// compression differences do not defeat the comparison.
absl::StatusOr<std::string> Canonical(const std::string& ip) {
  unsigned char buf[sizeof(struct in6_addr)];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, ip.c_str(), buf) == 1) {
    inet_ntop(AF_INET, buf, out, sizeof(out));
    return std::string(out);
  }
  if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
    inet_ntop(AF_INET6, buf, out, sizeof(out));
    return std::string(out);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", ip.substr(0, 64), "\" is not an IP address"));
}

// Runs on its own thread so the setns() dies with the thread.
void ListInNamespace(
    const std::string& path,
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>>* result) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *result =
        absl::NotFoundError(absl::StrCat("open ", path, ": ", strerror(errno)));
    return;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    int err = errno;
    close(fd);
    *result = absl::PermissionDeniedError(
        absl::StrCat("setns ", path, ": ", strerror(err)));
    return;
  }
  close(fd);
  struct ifaddrs* addrs = nullptr;
  if (getifaddrs(&addrs) != 0) {
    *result = absl::InternalError(
        absl::StrCat("getifaddrs in ", path, ": ", strerror(errno)));
    return;
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (auto* a = addrs; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN];
    const void* src = nullptr;
    if (a->ifa_addr->sa_family == AF_INET) {
      src = &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr;
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      src = &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr;
    } else {
      continue;
    }
    if (inet_ntop(a->ifa_addr->sa_family, src, text, sizeof(text))) {
      out.emplace_back(a->ifa_name, text);
    }
  }
  freeifaddrs(addrs);
  *result = std::move(out);
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
NetnsFinder::ListAddresses(const std::string& netns_path) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> result =
      absl::UnknownError("not run");
  std::thread worker(ListInNamespace, netns_path, &result);
  worker.join();
  return result;
}

std::vector<std::string> NetnsFinder::Candidates() const {
  std::vector<std::string> paths;
  // The same namespace shows up under many pids: visit each (dev, inode) once.
  std::set<std::pair<dev_t, ino_t>> seen;
  auto add = [&](const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return;
    if (seen.insert({st.st_dev, st.st_ino}).second) paths.push_back(path);
  };
  for (const auto& dir : options_.dirs) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == ".." || name.find('/') != std::string::npos) {
        continue;
      }
      add(absl::StrCat(dir, "/", name));
    }
    closedir(d);
  }
  if (options_.scan_proc) {
    DIR* d = opendir(options_.proc_root.c_str());
    if (d != nullptr) {
      while (struct dirent* e = readdir(d)) {
        const std::string name = e->d_name;
        if (name.empty() ||
            name.find_first_not_of("0123456789") != std::string::npos) {
          continue;
        }
        add(absl::StrCat(options_.proc_root, "/", name, "/ns/net"));
      }
      closedir(d);
    }
  }
  return paths;
}

absl::StatusOr<NetnsMatch> NetnsFinder::FindByIp(const std::string& ip) const {
  auto want = Canonical(ip);
  if (!want.ok()) return want.status();
  for (const auto& path : Candidates()) {
    auto addrs = ListAddresses(path);
    if (!addrs.ok()) continue;  // gone meanwhile, or not a namespace
    for (const auto& [ifname, addr] : *addrs) {
      if (addr == *want) return NetnsMatch{path, ifname};
    }
  }
  std::vector<std::string> places = options_.dirs;
  if (options_.scan_proc) places.push_back(options_.proc_root + "/*/ns/net");
  return absl::NotFoundError(absl::StrCat("no network namespace holds ", *want,
                                          " (searched ",
                                          absl::StrJoin(places, ", "), ")"));
}

}  // namespace pc::agent
