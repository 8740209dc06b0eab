# shellcheck shell=bash disable=SC2154  # log, die and repo come from the caller
# Sourced by the local cluster harness: builds, with no container registry, the images a
# real kubelet+containerd node needs, as docker-archive tarballs for
# `ctr -n k8s.io images import FILE` (manifest.json's RepoTags name them):
#   docker.io/library/packet-capture:latest  the repository's Dockerfile, built by buildah on
#                                           debootstrap'd debian:bookworm(-slim) bases
#   docker.io/library/busybox:1.36 (+latest) Debian's busybox-static
#   registry.k8s.io/pause:3.10              testing/images/pause.c, gcc -static
# images_ensure builds what is missing and sets IMAGE_ARCHIVES. Archives are cached in
# $IMAGE_CACHE under content keys; builder output is appended to $IMAGE_CACHE/build.log.
# Needs the Debian packages buildah, skopeo, runc, debootstrap, gcc, libc6-dev and
# busybox-static (the last is installed here if missing).

IMAGE_CACHE=${IMAGE_CACHE:-/var/cache/packet-capture/images}
IMAGES_SUITE=bookworm
IMAGES_APT_SOURCES=/etc/apt/sources.list.d/debian.sources
IMAGES_RECIPE=2  # part of every cache key: bump it when a recipe below changes
IMAGES_LOG=/dev/null IMAGES_SRC='' IMAGES_DIR='' IMAGES_OUT='' IMAGES_BASE_TAR='' IMAGES_BASE_ID=''
IMAGES_CTRS=() IMAGES_TMP=() IMAGES_LOCK=9  # the lock's fd is set by images_ensure

# images_run CMD...: a builder command, output appended to the build log, without stdin
# and without the caller's lock fd 9; on failure the log's tail, then die.
images_run() {
  echo "=== $(date -u +%FT%TZ) $*" >> "$IMAGES_LOG"
  "$@" < /dev/null >> "$IMAGES_LOG" 2>&1 9>&- {IMAGES_LOCK}>&- || images_fail "${*:1:2} failed (exit $?)"
}

# images_fail MSG: removes this call's working containers and temporary files, shows the
# end of the build log, dies.
images_fail() {
  local x
  for x in "${IMAGES_CTRS[@]}"; do buildah rm "$x" > /dev/null 2>&1 9>&- || true; done
  for x in "${IMAGES_TMP[@]}"; do images_rmtree "$x"; done
  IMAGES_CTRS=() IMAGES_TMP=()
  { echo "----- last 40 lines of $IMAGES_LOG -----"; tail -n 40 "$IMAGES_LOG"; echo "-----"; } >&2
  die "image build: $* (log: $IMAGES_LOG)"
}

# images_rmtree PATH: unmounts what debootstrap left mounted below PATH, removes PATH.
images_rmtree() {
  local m; for m in $(findmnt -rn -o TARGET | grep -F "$1/" | sort -r); do umount -l "$m" 2> /dev/null || true; done
  rm -rf --one-file-system "$1"
}

images_tmpdir() {  # sets IMAGES_DIR to a new 0755 directory in the cache, removed on failure
  IMAGES_DIR=$(mktemp -d "$IMAGE_CACHE/.tmp.XXXXXX") || images_fail "mktemp in $IMAGE_CACHE"
  IMAGES_TMP+=("$IMAGES_DIR")
  chmod 0755 "$IMAGES_DIR"
}

images_keep() {  # PREFIX FILE: deletes every cached PREFIX-*.tar (and .sha256) but FILE
  local f; for f in "$IMAGE_CACHE/$1"-*.tar; do [ "$f" = "$2" ] || rm -f "$f" "$f.sha256"; done
}

images_key() { sha256sum | cut -c1-16; }  # stdin -> short content key

# images_mirror: the Debian mirror of the machine's apt source, found by the mirror_uri
# function of testing/runtime_image_test.sh (read from there, so the two always agree).
images_mirror() {
  (
    # shellcheck disable=SC2034 # read by mirror_uri
    SUITE=$IMAGES_SUITE APT_SOURCES=$IMAGES_APT_SOURCES
    eval "$(sed -n '/^mirror_uri() {$/,/^}$/p' "$IMAGES_SRC/testing/runtime_image_test.sh")"
    declare -F mirror_uri > /dev/null && mirror_uri
  )
}

# images_apt_conf: the machine's apt.conf files with network settings (Acquire::: proxies,
# mirror redirects, release validity), but none that hooks host programs or adds indexes.
images_apt_conf() {
  grep -lE '^[[:space:]]*Acquire' /etc/apt/apt.conf /etc/apt/apt.conf.d/* 2> /dev/null |
    grep -v '/docker-[^/]*$' | xargs -r -d '\n' grep -L IndexTargets || true
}

# images_base: the debootstrap'd minbase root filesystem as a tarball (cached by suite,
# mirror and apt settings) carrying this machine's apt source and settings. Sets
# IMAGES_BASE_TAR and IMAGES_BASE_ID (the tarball's sha256: the base image identity).
images_base() {
  local mirror conf key tar root start=$SECONDS
  mirror=$(images_mirror) || die "no apt source for $IMAGES_SUITE in $IMAGES_APT_SOURCES"
  mapfile -t conf < <(images_apt_conf)
  key=$(cat <(printf '%s\n' "$IMAGES_RECIPE" "$IMAGES_SUITE" "$mirror") "$IMAGES_APT_SOURCES" \
    ${conf[@]+"${conf[@]}"} | images_key)
  tar=$IMAGE_CACHE/base-$key.tar
  if [ ! -s "$tar" ] || [ ! -s "$tar.sha256" ]; then
    log "building the $IMAGES_SUITE base root filesystem (debootstrap from $mirror; log: $IMAGES_LOG)"
    images_tmpdir
    root=$IMAGES_DIR/rootfs
    images_run env PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase "$IMAGES_SUITE" "$root" "$mirror"
    rm -f "$root"/etc/apt/sources.list "$root"/etc/resolv.conf "$root"/etc/hostname
    cp "$IMAGES_APT_SOURCES" "$root/etc/apt/sources.list.d/"
    [ ${#conf[@]} -eq 0 ] || cp "${conf[@]}" "$root/etc/apt/apt.conf.d/"
    # As in Debian's official images (debuerreotype): apt keeps no caches in image layers.
    printf '%s\n' 'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' \
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'Acquire::GzipIndexes "true"; Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    images_run tar --numeric-owner --xattrs -C "$root" -cf "$IMAGES_DIR/base.tar" .
    sha256sum < "$IMAGES_DIR/base.tar" | cut -d' ' -f1 > "$tar.sha256"
    mv -f "$IMAGES_DIR/base.tar" "$tar"
    images_rmtree "$IMAGES_DIR"
    log "built the base root filesystem in $((SECONDS - start)) s ($(du -m "$tar" | cut -f1) MB)"
  fi
  images_keep base "$tar"
  IMAGES_BASE_TAR=$tar IMAGES_BASE_ID=$(< "$tar.sha256")
}

# images_new NAME DIR|TARBALL CONFIG-ARG...: working container NAME (removed on failure)
# from scratch holding that root filesystem, configured by `buildah config CONFIG-ARG...`.
images_new() {
  local name=$1 src=$2 mnt
  shift 2
  buildah rm "$name" > /dev/null 2>&1 9>&- || true
  IMAGES_CTRS+=("$name")
  images_run buildah from --name "$name" scratch
  mnt=$(buildah mount "$name" 2>> "$IMAGES_LOG" 9>&-) || images_fail "buildah mount $name"
  if [ -d "$src" ]; then
    images_run cp -a "$src/." "$mnt/"
  else
    images_run tar --numeric-owner --xattrs -xpf "$src" -C "$mnt"
  fi
  images_run buildah umount "$name"
  images_run buildah config "$@" "$name"
}

# images_export ARCHIVE SOURCE IMAGE [TAG...]: image SOURCE of buildah's storage as a
# docker-archive named IMAGE and TAGs (its RepoTags), written atomically; SOURCE is then
# deleted, so buildah's storage never holds (nor races on) the names of the archives.
images_export() {
  local archive=$1 source=$2 image=$3 extra=() t
  shift 3
  for t in "$@"; do extra+=(--additional-tag "$t"); done
  IMAGES_TMP+=("$archive.tmp")
  rm -f "$archive.tmp"
  images_run skopeo copy ${extra[@]+"${extra[@]}"} "containers-storage:$source" "docker-archive:$archive.tmp:$image"
  mv -f "$archive.tmp" "$archive"
  images_run buildah rmi "$source"
}

# images_context_hash: the build context as buildah sends it (every file, directory and
# symlink that .dockerignore does not exclude, with mode and content or target), hashed.
images_context_hash() {
  local list
  list=$(cd "$IMAGES_SRC" && find . -mindepth 1 \( -type f -o -type d -o -type l \) -printf '%y\t%m\t%P\t%l\n' |
    awk -F'\t' -v ignore="$IMAGES_SRC/.dockerignore" '
      function glob2re(g,   i, j, c, cls, out) {  # Docker pattern syntax; ** spans directories
        for (i = 1; i <= length(g); i++) {
          c = substr(g, i, 1)
          if (substr(g, i, 3) == "**/") { i += 2; out = out "(.*/)?" }
          else if (substr(g, i, 2) == "**") { i++; out = out ".*" }
          else if (c == "*") out = out "[^/]*"
          else if (c == "?") out = out "[^/]"
          else if (c == "\\") { i++; out = out "[" substr(g, i, 1) "]" }
          else if (c == "[" && (j = index(substr(g, i), "]")) > 2) {  # a class, [!...] negated
            cls = substr(g, i + 1, j - 2); sub(/^!/, "^", cls); out = out "[" cls "]"; i += j - 1
          } else if (index(".+()|{}$[]", c)) out = out "[" c "]"
          else if (c == "^") out = out "\\^"
          else out = out c
        }
        return "^" out "(/.*)?$"  # a match also excludes everything below
      }
      BEGIN {
        while ((getline line < ignore) > 0) {
          gsub(/^[ \t]+|[ \t\r]+$/, "", line)
          if (line == "" || line ~ /^#/) continue
          neg = sub(/^![ \t]*/, "", line)
          sub(/^\/+/, "", line); while (sub(/^\.\//, "", line)) {}; sub(/\/+$/, "", line)
          if (line != "" && line != ".") { n++; re[n] = glob2re(line); negated[n] = neg }
        }
      }
      { excluded = 0; for (i = 1; i <= n; i++) if ($3 ~ re[i]) excluded = !negated[i] }
      !excluded' | LC_ALL=C sort -t$'\t' -k3) || return 1
  { printf '%s\n' "$list"; awk -F'\t' '$1 == "f" { print $3 }' <<< "$list" | (cd "$IMAGES_SRC" && xargs -r -d '\n' sha256sum --)
  } | sha256sum | cut -d' ' -f1
}

images_packet_capture() {  # sets IMAGES_OUT
  local image=docker.io/library/packet-capture:latest ctx key base old stale=0 start
  local bud=(buildah bud --pull=never --network host --isolation oci --layers=false --force-rm)
  local a=docker.io/library/debian:bookworm b=docker.io/library/debian:bookworm-slim
  images_base
  start=$SECONDS
  ctx=$(images_context_hash) || images_fail "hashing the build context $IMAGES_SRC"
  key=$(cat <(printf '%s\n' "$IMAGES_RECIPE" "$ctx" "$IMAGES_BASE_ID" "${bud[*]}") "$IMAGES_SRC/Dockerfile" |
    images_key)
  IMAGES_OUT=$IMAGE_CACHE/packet-capture-$key.tar
  if [ ! -s "$IMAGES_OUT" ]; then
    log "building $image from $IMAGES_SRC/Dockerfile with buildah (apt-get and a cold Bazel build inside: minutes; log: $IMAGES_LOG)"
    for base in "$a" "$b"; do  # the Dockerfile's bases: are they the cached tarball?
      [ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "packet-capture.base-rootfs"}}' \
        "$base" 2> /dev/null 9>&-)" = "$IMAGES_BASE_ID" ] || stale=1
    done
    if [ "$stale" = 1 ]; then
      images_new pc-images-debian "$IMAGES_BASE_TAR" --cmd '["bash"]' \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "packet-capture.base-rootfs=$IMAGES_BASE_ID"
      old=$(buildah images -q --no-trunc "$a" 2> /dev/null 9>&-) || true
      images_run buildah commit --rm pc-images-debian "$a"
      images_run buildah tag "$a" "$b"
      [ -z "$old" ] || buildah rmi "$old" > /dev/null 2>&1 9>&- || true  # the previous base
    fi
    images_run "${bud[@]}" -f "$IMAGES_SRC/Dockerfile" -t "localhost/pc-images-build:$key" "$IMAGES_SRC"
    images_export "$IMAGES_OUT" "localhost/pc-images-build:$key" "$image"
    log "built $image in $((SECONDS - start)) s ($(du -m "$IMAGES_OUT" | cut -f1) MB)"
  fi
  images_keep packet-capture "$IMAGES_OUT"
}

images_busybox() {  # sets IMAGES_OUT
  local image=docker.io/library/busybox:1.36 latest=docker.io/library/busybox:latest
  local version key root applet start=$SECONDS
  version=$(dpkg-query -W -f='${Status}|${Version}' busybox-static 2> /dev/null) || true
  if [[ $version != "install ok installed|"* ]]; then
    log "installing busybox-static"
    images_run env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get install -y --no-install-recommends busybox-static ||
      { apt-get update && apt-get install -y --no-install-recommends busybox-static; }'
    version=$(dpkg-query -W -f='${Status}|${Version}' busybox-static)
  fi
  version=${version#*|}
  key=$(printf '%s\n' "$IMAGES_RECIPE" "$version" | images_key)
  IMAGES_OUT=$IMAGE_CACHE/busybox-$key.tar
  if [ ! -s "$IMAGES_OUT" ]; then
    images_tmpdir
    root=$IMAGES_DIR/rootfs
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var,proc,sys,dev,tmp}
    chmod 1777 "$root/tmp" && chmod 0700 "$root/root"
    cp /bin/busybox "$root/bin/busybox"
    while read -r applet; do  # what `busybox --install -s` does, as absolute symlinks
      [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$root/$applet"
    done < <(/bin/busybox --list-full)
    [ -L "$root/bin/sh" ] || images_fail "busybox $version has no sh applet"
    printf '%s\n' root:x:0:0:root:/root:/bin/sh nobody:x:65534:65534:nobody:/home:/bin/false > "$root/etc/passwd"
    printf '%s\n' root:x:0: nobody:x:65534: > "$root/etc/group"
    images_new pc-images-busybox "$root" --env PATH=/usr/sbin:/usr/bin:/sbin:/bin --cmd '["sh"]'
    images_run buildah commit --rm pc-images-busybox "localhost/pc-images-busybox:$key"
    images_export "$IMAGES_OUT" "localhost/pc-images-busybox:$key" "$image" "$latest"
    images_rmtree "$IMAGES_DIR"
    log "built $image from busybox-static $version in $((SECONDS - start)) s"
  fi
  images_keep busybox "$IMAGES_OUT"
}

images_pause() {  # sets IMAGES_OUT
  local image=registry.k8s.io/pause:3.10 src=$IMAGES_SRC/testing/images/pause.c key start=$SECONDS
  key=$(cat <(echo "$IMAGES_RECIPE") "$src" | images_key)
  IMAGES_OUT=$IMAGE_CACHE/pause-$key.tar
  if [ ! -s "$IMAGES_OUT" ]; then
    images_tmpdir
    mkdir "$IMAGES_DIR/rootfs"
    images_run gcc -static -O2 -s -Wall -Wextra -Werror -o "$IMAGES_DIR/rootfs/pause" "$src"
    # As upstream: no shell, /pause as the entrypoint, an unprivileged user.
    images_new pc-images-pause "$IMAGES_DIR/rootfs" --entrypoint '["/pause"]' --user 65535:65535
    images_run buildah commit --rm pc-images-pause "localhost/pc-images-pause:$key"
    images_export "$IMAGES_OUT" "localhost/pc-images-pause:$key" "$image"
    images_rmtree "$IMAGES_DIR"
    log "built $image from $src in $((SECONDS - start)) s"
  fi
  images_keep pause "$IMAGES_OUT"
}

# images_ensure: builds whatever is missing or stale; sets IMAGE_ARCHIVES to the
# docker-archive tarballs of packet-capture, busybox and pause (absolute paths).
images_ensure() {
  local c bb pa
  mkdir -p "$IMAGE_CACHE" || die "cannot create $IMAGE_CACHE"
  # The source tree: $repo itself, or, when the harness runs from a Bazel runfiles tree
  # (its files are symlinks to the workspace's), the workspace the Dockerfile lives in.
  IMAGES_SRC=$(dirname "$(readlink -f "$repo/Dockerfile")")
  [ -f "$IMAGES_SRC/.dockerignore" ] || die "no .dockerignore beside $IMAGES_SRC/Dockerfile"
  IMAGES_LOG=$IMAGE_CACHE/build.log IMAGES_CTRS=() IMAGES_TMP=()
  for c in buildah skopeo runc debootstrap gcc; do
    PATH=$PATH:/usr/sbin:/sbin command -v "$c" > /dev/null || die "$c is not installed (apt-get install $c)"
  done
  # One build at a time per cache (the base images' names in buildah's storage are shared).
  exec {IMAGES_LOCK}> "$IMAGE_CACHE/.lock"
  if ! flock -n "$IMAGES_LOCK"; then
    log "waiting for another image build to finish (lock: $IMAGE_CACHE/.lock)"
    flock -w 3600 "$IMAGES_LOCK" || die "$IMAGE_CACHE/.lock is held for an hour"
  fi
  # Leftovers of a run that was killed: working containers, images, temporary files.
  for c in $(buildah containers --format '{{.ContainerName}}' 2> /dev/null 9>&- | grep '^pc-images-'); do
    buildah rm "$c" > /dev/null 2>&1 9>&- || true
  done
  for c in $(buildah images --format '{{.Name}}:{{.Tag}}' 2> /dev/null 9>&- | grep '^localhost/pc-images-'); do
    buildah rmi "$c" > /dev/null 2>&1 9>&- || true
  done
  for c in "$IMAGE_CACHE"/.tmp.* "$IMAGE_CACHE"/*.tar.tmp; do [ ! -e "$c" ] || images_rmtree "$c"; done
  images_busybox  # the quick ones first
  bb=$IMAGES_OUT
  images_pause
  pa=$IMAGES_OUT
  images_packet_capture
  # shellcheck disable=SC2034 # the caller's result
  IMAGE_ARCHIVES=("$IMAGES_OUT" "$bb" "$pa")
  IMAGES_TMP=()
  exec {IMAGES_LOCK}>&-
}
