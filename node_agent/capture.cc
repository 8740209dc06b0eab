#include "node_agent/capture.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/capture_layout.h"
#include "common/log.h"
#include "common/time_proto.h"
#include "node_agent/capture_meta.h"
#include "node_agent/capture_options.h"

namespace pc::agent {
namespace {

using CaptureProto = packetcapture::v1::Capture;
namespace fs = std::filesystem;

absl::Duration RetryDelay(int failures) {
  absl::Duration d = absl::Seconds(1);
  for (int i = 1; i < failures && d < absl::Seconds(30); ++i) d *= 2;
  return std::min(d, absl::Seconds(30));
}

}  // namespace

std::string Capture::MakeId(const CaptureSpec& spec, absl::Time now) {
  return MakeCaptureId(spec.ns, spec.pod, spec.uid, absl::ToUnixMillis(now));
}

Capture::Capture(const CaptureEnv* env, std::string id, CaptureSpec spec)
    : env_(env),
      id_(std::move(id)),
      spec_(std::move(spec)),
      files_(absl::StrCat(env->root, "/", id_)) {}

Capture::~Capture() = default;

std::string Capture::dir() const { return absl::StrCat(env_->root, "/", id_); }

absl::StatusOr<std::unique_ptr<Capture>> Capture::Create(
    const CaptureEnv* env, const CaptureSpec& spec, absl::Time now) {
  std::string id = MakeId(spec, now);
  if (!IsValidCaptureId(id)) {
    return absl::InvalidArgumentError(absl::StrCat("unsafe capture id ", id));
  }
  std::unique_ptr<Capture> capture(new Capture(env, id, spec));
  capture->start_time_ = now;
  capture->update_time_ = now;
  capture->limits_start_ = now;
  capture->message_ = "starting";
  if (mkdir(capture->dir().c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("mkdir ", capture->dir(), ": ", strerror(errno)));
  }
  auto saved = capture->SaveMeta();
  if (!saved.ok()) return saved;
  return capture;
}

absl::StatusOr<std::unique_ptr<Capture>> Capture::Recover(
    const CaptureEnv* env, const std::string& id) {
  if (!IsValidCaptureId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", id, "\" is not a capture directory name"));
  }
  auto read = ReadCaptureMeta(absl::StrCat(env->root, "/", id));
  if (!read.ok()) return read.status();
  const CaptureProto& meta = read->status;
  const std::string path = absl::StrCat(env->root, "/", id);
  if (meta.id() != id) {
    return absl::DataLossError(absl::StrCat("unreadable ", path));
  }
  CaptureSpec spec;
  spec.ns = meta.namespace_();
  spec.pod = meta.pod();
  spec.uid = meta.pod_uid();
  spec.ip = meta.pod_ip();
  spec.max_files = static_cast<int>(meta.max_files());
  spec.annotation = meta.annotation();
  spec.options = OptionsFromProto(meta.options());
  spec.labels.insert(meta.pod_labels().begin(), meta.pod_labels().end());
  if (!IsPodUid(spec.uid) || spec.max_files < 1) {
    return absl::DataLossError(absl::StrCat("inconsistent ", path));
  }
  std::unique_ptr<Capture> capture(new Capture(env, id, spec));
  capture->start_time_ = FromProto(meta.start_time());
  capture->update_time_ = absl::Now();
  capture->restarts_ = meta.restarts();
  capture->message_ = "found after an agent restart";
  capture->run_ = capture->files_.LastRunNumber();
  capture->limits_start_ = read->limits_start;
  capture->packets_before_run_ = read->packets_before_run;
  capture->counted_through_run_ = read->counted_through_run;
  const bool limit =
      meta.state() == CaptureProto::STOPPED &&
      (meta.stop_reason() == packetcapture::v1::DURATION_REACHED ||
       meta.stop_reason() == packetcapture::v1::MAX_PACKETS_REACHED);
  if (limit) {
    // Reached its limit before: stays STOPPED with its files.
    capture->limit_reached_ = true;
    capture->state_ = CaptureProto::STOPPED;
    capture->stop_reason_ = meta.stop_reason();
    capture->message_ = meta.message();
    capture->stop_time_ = FromProto(meta.stop_time());
  } else if (capture->run_ > capture->counted_through_run_) {
    // The previous agent died with this run going: what its files hold is
    // what it captured (a lower bound if its ring wrapped).
    capture->ScanFiles(absl::Now());
    capture->CountRunPackets(capture->run_, 0);
  }
  return capture;
}

absl::Status Capture::SaveMeta() const {
  CaptureMeta meta;
  CaptureProto& m = meta.status;
  m.set_id(id_);
  m.set_node(env_->node);
  m.set_namespace_(spec_.ns);
  m.set_pod(spec_.pod);
  m.set_pod_uid(spec_.uid);
  m.set_pod_ip(spec_.ip);
  m.set_max_files(spec_.max_files);
  m.set_annotation(spec_.annotation);
  if (!spec_.options.empty()) {
    *m.mutable_options() = OptionsToProto(spec_.options);
  }
  m.mutable_pod_labels()->insert(spec_.labels.begin(), spec_.labels.end());
  m.set_restarts(restarts_);
  *m.mutable_start_time() = ToProto(start_time_);
  if (limit_reached_) {
    m.set_state(CaptureProto::STOPPED);
    m.set_stop_reason(stop_reason_);
    m.set_message(message_);
    *m.mutable_stop_time() = ToProto(stop_time_);
  }
  meta.limits_start = limits_start_;
  meta.packets_before_run = packets_before_run_;
  meta.counted_through_run = counted_through_run_;
  return WriteCaptureMeta(dir(), meta);
}

void Capture::SaveMetaOrLog() const {
  auto saved = SaveMeta();
  if (!saved.ok()) {
    LogLine("capture_meta_error",
            {{"capture", id_}, {"error", saved.ToString()}});
  }
}

void Capture::Note(bool warning, const std::string& reason,
                   const std::string& message) {
  notes_.push_back({warning, reason, message});
}

std::vector<CaptureNote> Capture::TakeNotes() {
  std::vector<CaptureNote> out;
  out.swap(notes_);
  return out;
}

void Capture::SetState(CaptureProto::State state, const std::string& message,
                       absl::Time now) {
  state_ = state;
  message_ = message;
  update_time_ = now;
}

void Capture::Fail(const std::string& message, absl::Time now) {
  retry_pending_ = false;
  SetState(CaptureProto::FAILED, message, now);
  Note(true, "CaptureFailed", message);
  LogLine("capture_failed", {{"capture", id_}, {"reason", message}});
}

void Capture::Start(absl::Time now) {
  failures_in_a_row_ = 0;
  TryStartRun(now);
}

void Capture::TryStartRun(absl::Time now) {
  retry_pending_ = false;
  if (limit_reached_) return;
  if (now >= LimitDeadline()) {
    ReachLimit(packetcapture::v1::DURATION_REACHED, now);
    return;
  }
  const uint64_t max_packets = spec_.options.max_packets;
  if (max_packets > 0 && packets_before_run_ >= max_packets) {
    ReachLimit(packetcapture::v1::MAX_PACKETS_REACHED, now);
    return;
  }
  auto record_failure = [&](const std::string& why) {
    RecordFailure(why, now);
  };

  NetnsMatch where;
  if (spec_.host_network) {
    // The agent runs with hostNetwork: its own namespace is the node's.
    where.path = "/proc/self/ns/net";
    auto own = NetnsHandle::Open(where.path);
    if (!own.ok()) {
      record_failure(std::string(own.status().message()));
      return;
    }
    where.netns = std::move(*own);
    auto addrs = NetnsFinder::ListAddresses(where.netns);
    if (addrs.ok()) {
      for (const auto& [ifname, addr] : *addrs) {
        if (addr == spec_.ip) where.interface = ifname;
      }
    }
    if (where.interface.empty()) {
      record_failure(absl::StrCat("no interface of the node holds ", spec_.ip));
      return;
    }
  } else {
    auto found = env_->netns->FindByIp(spec_.ip);
    if (!found.ok()) {
      // More than one namespace holds the IP: no retry would pick the right
      // one, and a guess could record another pod's traffic here.
      if (found.status().code() == absl::StatusCode::kFailedPrecondition) {
        Fail(std::string(found.status().message()), now);
      } else {
        record_failure(std::string(found.status().message()));
      }
      return;
    }
    where = std::move(*found);
  }
  const std::string netns_id = where.netns.id().ToString();

  // tcpdump neither fails nor says anything when its volume is full: it goes
  // on "capturing" into files that stop growing. A ring that cannot fit is
  // refused here, with the figures, instead of running empty.
  if (absl::Status room = CheckRoomForRing(); !room.ok()) {
    Fail(std::string(room.message()), now);
    return;
  }

  ++run_;
  const std::string run_dir =
      absl::StrCat(dir(), "/", RunDirName(run_, spec_.max_files));
  if (mkdir(run_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    record_failure(absl::StrCat("mkdir ", run_dir, ": ", strerror(errno)));
    return;
  }
  TcpdumpOptions options = env_->tcpdump;
  options.interface = where.interface;
  options.output_base = absl::StrCat(run_dir, "/", kRingBase);
  options.max_files = spec_.max_files;
  if (spec_.options.snaplen > 0) options.snaplen = spec_.options.snaplen;
  options.filter = spec_.options.filter;
  if (max_packets > 0) {
    options.packet_count =
        static_cast<int64_t>(max_packets - packets_before_run_);
  }
  auto argv = BuildTcpdumpArgv(options);
  if (!argv.ok()) {
    Fail(std::string(argv.status().message()), now);
    return;
  }
  auto process = std::make_unique<Subprocess>();
  // Through the descriptor the namespace was examined by, checked again in
  // the child: a path reopened now could name another pod's namespace.
  auto started = process->Start(
      *argv,
      ChildNetns{where.netns.fd(), where.netns.id().dev, where.netns.id().ino});
  if (!started.ok()) {
    record_failure(std::string(started.message()));
    return;
  }
  process_ = std::move(process);
  output_ = TcpdumpOutput();
  interface_ = where.interface;
  run_started_ = now;
  next_stats_ = now + env_->stats_interval;
  next_scan_ = now;
  std::string message = absl::StrCat(
      "tcpdump capturing on ", interface_, " in ", where.path, " (", netns_id,
      "), keeping at most ", spec_.max_files, " files of 1 MB");
  if (!spec_.options.empty()) {
    absl::StrAppend(&message, "; options: ", DescribeOptions(spec_.options));
  }
  SetState(CaptureProto::RUNNING, message, now);
  Note(false, run_ == 1 ? "CaptureStarted" : "CaptureRestarted", message);
  LogLine("capture_started", {{"capture", id_},
                              {"pod", absl::StrCat(spec_.ns, "/", spec_.pod)},
                              {"interface", interface_},
                              {"netns", where.path},
                              {"netns_id", netns_id},
                              {"run", absl::StrCat(run_)},
                              {"pid", absl::StrCat(process_->pid())}});
}

absl::Status Capture::CheckRoomForRing() const {
  struct statvfs fs;
  if (statvfs(dir().c_str(), &fs) != 0) {
    return absl::OkStatus();  // cannot tell: tcpdump's own errors will say
  }
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  // Files of earlier runs give way to the new run's (PruneOldRuns), so what
  // the capture holds already counts as room.
  const uint64_t room = free_bytes + files_.bytes();
  const uint64_t ring = static_cast<uint64_t>(spec_.max_files) * kRingFileBytes;
  if (room >= ring) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "only ", free_bytes, " bytes free on the capture volume (", env_->root,
      "); a ring of ", spec_.max_files, " files needs ", ring,
      ": free space there or ask for fewer files"));
}

void Capture::Restart(const CaptureSpec& spec, absl::Time now) {
  spec_ = spec;
  // New settings: the limits count afresh, from this run on; the run now
  // ending counts for none (its exit adds nothing).
  limits_start_ = now;
  packets_before_run_ = 0;
  counted_through_run_ = run_;
  duration_stop_pending_ = false;
  limit_reached_ = false;
  stop_reason_ = packetcapture::v1::STOP_REASON_UNSPECIFIED;
  SaveMetaOrLog();
  failures_in_a_row_ = 0;
  if (process_running()) {
    // Stop this run; Tick starts the next one as soon as tcpdump is gone.
    restart_after_exit_ = true;
    process_->Signal(SIGTERM).IgnoreError();
    kill_at_ = now + env_->stop_grace;
    SetState(CaptureProto::PENDING, "restarting with the new settings", now);
    return;
  }
  TryStartRun(now);
}

void Capture::BeginStop(absl::Time now, packetcapture::v1::StopReason reason) {
  stopping_ = true;
  retry_pending_ = false;
  restart_after_exit_ = false;
  if (limit_reached_ && reason != packetcapture::v1::STOP_REASON_UNSPECIFIED) {
    // It stopped capturing at its limit: that stays the reason; only its
    // node files go now.
    SetState(CaptureProto::STOPPED,
             absl::StrCat(message_, "; then ",
                          reason == packetcapture::v1::POD_GONE
                              ? "pod gone"
                              : "annotation removed",
                          ": node files deleted"),
             now);
  } else if (reason != packetcapture::v1::STOP_REASON_UNSPECIFIED) {
    stop_reason_ = reason;
    stop_time_ = now;
    SetState(CaptureProto::STOPPED,
             reason == packetcapture::v1::POD_GONE
                 ? "stopped: pod gone; node files deleted"
                 : "stopped: annotation removed; node files deleted",
             now);
  }
  if (process_running()) {
    process_->Signal(SIGTERM).IgnoreError();
    kill_at_ = now + env_->stop_grace;
  }
}

absl::Status Capture::DeleteFiles() {
  std::error_code ec;
  fs::remove_all(dir(), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("delete ", dir(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

void Capture::OnExit(int wait_status, absl::Time now) {
  output_.Feed(process_->ReadOutput());
  dropped_before_ += output_.dropped_by_kernel();
  const bool was_restart = restart_after_exit_;
  restart_after_exit_ = false;
  kill_at_ = absl::InfiniteFuture();
  process_.reset();
  ScanFiles(now);
  CountRunPackets(run_, output_.has_counters() ? output_.captured() : 0);
  if (stopping_) {
    if (stop_reason_ == packetcapture::v1::STOP_REASON_UNSPECIFIED) {
      SetState(CaptureProto::STOPPED, "stopped", now);
    }
    return;
  }
  if (was_restart) {
    TryStartRun(now);
    return;
  }
  if (duration_stop_pending_) {
    duration_stop_pending_ = false;
    ReachLimit(packetcapture::v1::DURATION_REACHED, now);
    return;
  }
  // tcpdump -c exits 0 after its count; nothing else makes it exit 0
  // unasked.
  if (spec_.options.max_packets > 0 && WIFEXITED(wait_status) &&
      WEXITSTATUS(wait_status) == 0) {
    packets_before_run_ =
        std::max(packets_before_run_, spec_.options.max_packets);
    ReachLimit(packetcapture::v1::MAX_PACKETS_REACHED, now);
    return;
  }
  if (now - run_started_ >= env_->healthy_after) failures_in_a_row_ = 0;
  ++restarts_;
  std::string why =
      absl::StrCat("tcpdump ", Subprocess::DescribeExit(wait_status));
  if (!output_.last_message().empty()) {
    absl::StrAppend(&why, ": ", output_.last_message());
  }
  LogLine("tcpdump_exited", {{"capture", id_}, {"reason", why}});
  RecordFailure(why, now);
}

void Capture::RecordFailure(const std::string& why, absl::Time now) {
  ++failures_in_a_row_;
  if (failures_in_a_row_ >= env_->max_failures) {
    Fail(absl::StrCat(why, " (gave up after ", failures_in_a_row_,
                      " failed starts)"),
         now);
    return;
  }
  const absl::Duration delay = RetryDelay(failures_in_a_row_);
  retry_at_ = now + delay;
  retry_pending_ = true;
  SetState(CaptureProto::PENDING,
           absl::StrCat(why, "; retrying in ", absl::FormatDuration(delay)),
           now);
  LogLine("capture_retry", {{"capture", id_}, {"reason", why}});
}

bool Capture::Tick(absl::Time now) {
  bool changed = false;
  // A FAILED capture keeps saying why it failed.
  if (!stopping_ && !limit_reached_ && !failed() && now >= LimitDeadline()) {
    if (process_running() && !duration_stop_pending_ && !restart_after_exit_) {
      // Stopped like any run; OnExit records the limit.
      duration_stop_pending_ = true;
      process_->Signal(SIGTERM).IgnoreError();
      kill_at_ = now + env_->stop_grace;
    } else if (!process_) {
      ReachLimit(packetcapture::v1::DURATION_REACHED, now);
      changed = true;
    }
  }
  if (process_) {
    output_.Feed(process_->ReadOutput());
    if (auto status = process_->Poll()) {
      OnExit(*status, now);
      changed = true;
    } else if (now >= kill_at_) {
      process_->Signal(SIGKILL).IgnoreError();
      kill_at_ = absl::InfiniteFuture();
    }
  }
  if (!stopping_ && retry_pending_ && now >= retry_at_) {
    TryStartRun(now);
    changed = true;
  }
  if (process_running() && now >= next_stats_) {
    // tcpdump prints its counters (captured, dropped by kernel) on SIGUSR1.
    process_->Signal(SIGUSR1).IgnoreError();
    next_stats_ = now + env_->stats_interval;
  }
  if (now >= next_scan_ && !stopping_) {
    changed |= ScanFiles(now);
    next_scan_ = now + env_->scan_interval;
  }
  if (changed) update_time_ = now;
  return changed;
}

absl::Time Capture::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  if (retry_pending_ && !stopping_) next = std::min(next, retry_at_);
  if (!stopping_ && !limit_reached_ && !failed() && !duration_stop_pending_) {
    next = std::min(next, LimitDeadline());
  }
  if (process_running()) {
    next = std::min(next, std::min(next_stats_, kill_at_));
    if (!stopping_) next = std::min(next, next_scan_);
  }
  return next;
}

bool Capture::ScanFiles(absl::Time now) {
  (void)now;
  files_.PruneOldRuns(spec_.max_files, run_);
  return files_.Scan(process_running() ? run_ : 0);
}

packetcapture::v1::Capture Capture::Status() const {
  packetcapture::v1::Capture s;
  s.set_id(id_);
  s.set_node(env_->node);
  s.set_namespace_(spec_.ns);
  s.set_pod(spec_.pod);
  s.set_pod_uid(spec_.uid);
  s.set_pod_ip(spec_.ip);
  s.set_interface(interface_);
  s.set_max_files(spec_.max_files);
  s.set_state(state_);
  s.set_message(message_);
  *s.mutable_start_time() = ToProto(start_time_);
  if (state_ == CaptureProto::STOPPED) {
    *s.mutable_stop_time() =
        ToProto(stop_time_ == absl::Time() ? update_time_ : stop_time_);
    s.set_stop_reason(stop_reason_);
  }
  if (!spec_.options.empty()) {
    *s.mutable_options() = OptionsToProto(spec_.options);
  }
  s.mutable_pod_labels()->insert(spec_.labels.begin(), spec_.labels.end());
  for (const auto& f : files_.files()) *s.add_files() = f;
  s.set_bytes(files_.bytes());
  s.set_packets(files_.packets());
  s.set_dropped_packets(dropped_before_ +
                        (process_ ? output_.dropped_by_kernel() : 0));
  s.set_annotation(spec_.annotation);
  s.set_restarts(restarts_);
  *s.mutable_update_time() = ToProto(update_time_);
  s.set_on_node(true);
  return s;
}

absl::Time Capture::LimitDeadline() const {
  if (spec_.options.duration <= absl::ZeroDuration()) {
    return absl::InfiniteFuture();
  }
  return limits_start_ + spec_.options.duration;
}

void Capture::CountRunPackets(int run, uint64_t reported) {
  if (run <= counted_through_run_) return;
  // tcpdump's own count when it printed one at exit, else what the files
  // still hold (less if the ring wrapped).
  packets_before_run_ += std::max(reported, files_.PacketsOfRun(run));
  counted_through_run_ = run;
  if (spec_.options.max_packets > 0) SaveMetaOrLog();
}

void Capture::ReachLimit(packetcapture::v1::StopReason reason, absl::Time now) {
  retry_pending_ = false;
  limit_reached_ = true;
  stop_reason_ = reason;
  stop_time_ = now;
  const std::string what =
      reason == packetcapture::v1::DURATION_REACHED
          ? absl::StrCat("duration ",
                         FormatOptionDuration(spec_.options.duration))
          : absl::StrCat("max-packets ", spec_.options.max_packets);
  const std::string message = absl::StrCat(
      what,
      " reached: capture stopped; its files stay on the node until the "
      "annotation is removed");
  SetState(CaptureProto::STOPPED, message, now);
  Note(false, "CaptureStopped", message);
  SaveMetaOrLog();
  LogLine("capture_limit_reached", {{"capture", id_}, {"limit", what}});
}

}  // namespace pc::agent
