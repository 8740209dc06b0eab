#include "node_agent/netns_finder.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
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
    int fd,
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>>* result) {
  if (setns(fd, CLONE_NEWNET) != 0) {
    *result =
        absl::PermissionDeniedError(absl::StrCat("setns: ", strerror(errno)));
    return;
  }
  struct ifaddrs* addrs = nullptr;
  if (getifaddrs(&addrs) != 0) {
    *result =
        absl::InternalError(absl::StrCat("getifaddrs: ", strerror(errno)));
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

std::string NetnsId::ToString() const {
  return absl::StrCat("net:[", ino, "]");
}

absl::StatusOr<NetnsHandle> NetnsHandle::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("open ", path, ": ", strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("fstat ", path, ": ", strerror(err)));
  }
  // Asks nsfs itself: a plain file (left after a netns was deleted) or
  // another kind of namespace is refused here, not at setns time.
  if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a network namespace"));
  }
  return NetnsHandle(fd, NetnsId{static_cast<uint64_t>(st.st_dev),
                                 static_cast<uint64_t>(st.st_ino)});
}

NetnsHandle::~NetnsHandle() {
  if (fd_ >= 0) close(fd_);
}

NetnsHandle::NetnsHandle(NetnsHandle&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), id_(other.id_) {}

NetnsHandle& NetnsHandle::operator=(NetnsHandle&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    id_ = other.id_;
  }
  return *this;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
NetnsFinder::ListAddresses(const NetnsHandle& netns) {
  if (!netns.valid()) return absl::InvalidArgumentError("no namespace open");
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> result =
      absl::UnknownError("not run");
  std::thread worker(ListInNamespace, netns.fd(), &result);
  worker.join();
  return result;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
NetnsFinder::ListAddresses(const std::string& netns_path) {
  auto netns = NetnsHandle::Open(netns_path);
  if (!netns.ok()) return netns.status();
  auto result = ListAddresses(*netns);
  if (!result.ok()) {
    return absl::Status(
        result.status().code(),
        absl::StrCat(netns_path, ": ", result.status().message()));
  }
  return result;
}

std::vector<std::string> NetnsFinder::Candidates() const {
  std::vector<std::string> paths;
  // The same namespace shows up under many pids: visit each (dev, inode)
  // once (FindByIp checks again what it actually opened).
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
  std::vector<NetnsMatch> matches;
  // Identities of what was opened: the path's stat() in Candidates() may be
  // stale by the time it is opened.
  std::set<NetnsId> examined;
  for (const auto& path : Candidates()) {
    auto netns = NetnsHandle::Open(path);
    if (!netns.ok()) continue;  // gone meanwhile, or not a namespace
    if (!examined.insert(netns->id()).second) continue;
    auto addrs = ListAddresses(*netns);
    if (!addrs.ok()) continue;
    for (const auto& [ifname, addr] : *addrs) {
      if (addr == *want) {
        matches.push_back(NetnsMatch{path, ifname, std::move(*netns)});
        break;
      }
    }
  }
  if (matches.size() == 1) return std::move(matches.front());
  if (matches.size() > 1) {
    std::vector<std::string> where;
    for (const auto& m : matches) {
      where.push_back(absl::StrCat(m.path, " (", m.netns.id().ToString(), ", ",
                                   m.interface, ")"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "ambiguous: ", matches.size(), " network namespaces hold ", *want, ": ",
        absl::StrJoin(where, ", "), "; not capturing any of them"));
  }
  std::vector<std::string> places = options_.dirs;
  if (options_.scan_proc) places.push_back(options_.proc_root + "/*/ns/net");
  return absl::NotFoundError(absl::StrCat("no network namespace holds ", *want,
                                          " (searched ",
                                          absl::StrJoin(places, ", "), ")"));
}

}  // namespace pc::agent
