#!/usr/bin/env bash
# `make image-dockerfile`: the Dockerfile as users run it. `buildah bud` of the UNCHANGED
# Dockerfile, both targets, its builder stage (cargo build --release) running inside the build.
# No registry here, so the two FROM images are made locally under the names the Dockerfile uses:
#   rust:1.95-bookworm                      a Debian bookworm rootfs (debootstrap, signatures
#                                           checked with Debian's keyring) + this machine's Rust
#                                           toolchain at /usr/local/{cargo,rustup}, as the
#                                           official image has it
#   gcr.io/distroless/cc-debian12:nonroot   the distroless-style base of scripts/images.py
#                                           (images.py cc-base: glibc, libgcc_s, libstdc++,
#                                           libgomp, CA certificates, passwd with nonroot 65532)
# Then each image runs its binary's --version as its own user, the user must be 65532, and the
# sizes are printed. Not part of `make test`: it is a second release build (about 12 minutes cold here).
# Everything heavy is cached under $AUREN_CACHE/dockerfile (rootfs tarball, buildah store).
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# What the official rust:bookworm image (buildpack-deps:bookworm) has that the build needs;
# the Dockerfile itself apt-installs cmake and libcurl4-openssl-dev.
BUILDER_PKGS="ca-certificates,curl,gcc,g++,libc6-dev,make,pkg-config,perl,git,xz-utils,procps"
BUILDER_NAME=docker.io/library/rust:1.95-bookworm
BASE_NAME=gcr.io/distroless/cc-debian12:nonroot
OUT_RUNTIME=localhost/auren/runtime:dockerfile
OUT_OPERATOR=localhost/auren/operator:dockerfile
NONROOT=65532

DF="$AUREN_CACHE/dockerfile"
mkdir -p "$DF"
exec 8>"$DF/lock"
flock 8

apt_ensure buildah runc debootstrap debian-archive-keyring ca-certificates

# A private buildah store (vfs: overlay cannot be mounted on this machine kind). TMPDIR is where
# buildah keeps the RUN --mount=type=cache directories (else /var/tmp/buildah-cache).
mkdir -p "$DF/tmp"
BUILDAH=(env TMPDIR="$DF/tmp" buildah --storage-driver vfs --root "$DF/store/root" --runroot "$DF/store/run")
has_image() { # name key: the image exists and was made from `key` (stamp written after commit)
  local stamp="$DF/store/${1//[\/:]/_}.key"
  [ -s "$stamp" ] && [ "$(cat "$stamp")" = "$2" ] && "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1
}
stamp() { echo "$2" > "$DF/store/${1//[\/:]/_}.key"; }

# ---------------------------------------------------------------- rust:1.95-bookworm
toolchain_name="$(awk -F'"' '/^channel/ {print $2}' rust-toolchain.toml)"
toolchain="$(rustup toolchain list -v | awk -v t="$toolchain_name-" 'index($1, t) == 1 {print $NF; exit}')"
[ -n "$toolchain" ] && [ -x "$toolchain/bin/cargo" ] || die "Rust toolchain $toolchain_name not installed (rustup toolchain list)"
toolchain="$(readlink -f "$toolchain")"
host_triple="$(rustc -vV | awk '/^host:/ {print $2}')"
rootfs_key="$(printf '%s\n' "$SUITE" "$MIRROR" "$BUILDER_PKGS" "$(debootstrap --version)" | sha256sum | cut -c1-16)"
rootfs_tar="$DF/rootfs-$SUITE-$rootfs_key.tar.gz"
if [ ! -s "$rootfs_tar" ]; then
  say "debootstrap $SUITE (minbase + $BUILDER_PKGS) -> $rootfs_tar"
  tmp="$(mktemp -d "$DF/rootfs.XXXX")"
  nice -n 19 debootstrap --variant=minbase --keyring="$KEYRING" --include="$BUILDER_PKGS" \
    "$SUITE" "$tmp" "$MIRROR" >&2
  # apt sources as in the official debian:bookworm image (updates and security too)
  rm -f "$tmp/etc/apt/sources.list"
  cat > "$tmp/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/debootstrap
  tar -C "$tmp" --numeric-owner -czf "$rootfs_tar.part" .
  mv "$rootfs_tar.part" "$rootfs_tar"
  rm -rf "$tmp"
  find "$DF" -maxdepth 1 -name "rootfs-*.tar.gz" ! -name "$(basename "$rootfs_tar")" -delete
fi
builder_key="$(printf '%s\n' "$rootfs_key" "$(rustc -vV)" "$(rustup --version 2>/dev/null)" \
  "$(cat "$toolchain/lib/rustlib/components")" "recipe 2" \
  "$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum)" | sha256sum | cut -c1-16)"
if ! has_image "$BUILDER_NAME" "$builder_key"; then
  say "making $BUILDER_NAME (rootfs $rootfs_key + $(rustc --version))"
  c="$("${BUILDAH[@]}" from scratch)"
  m="$("${BUILDAH[@]}" mount "$c")"
  tar -C "$m" --numeric-owner -xzf "$rootfs_tar"
  # the toolchain as rustup installs it in the official image: named after the pinned version
  # (rust-toolchain.toml), docs left out (share/doc is 0.8 GB), cargo/rustc/... -> rustup
  tc="$m/usr/local/rustup/toolchains/$toolchain_name-$host_triple"
  mkdir -p "$tc" "$m/usr/local/cargo/bin"
  tar -C "$toolchain" --exclude=./share/doc -cf - . | tar -C "$tc" -xf -
  cp "$(readlink -f "$(command -v rustup)")" "$m/usr/local/cargo/bin/rustup"
  for t in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-gdbgui rust-lldb; do
    ln -s rustup "$m/usr/local/cargo/bin/$t"
  done
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n\n[overrides]\n' \
    "$toolchain_name-$host_triple" > "$m/usr/local/rustup/settings.toml"
  chmod -R a+w "$m/usr/local/rustup" "$m/usr/local/cargo"
  # The CAs this machine trusts beyond Debian's (its egress proxy re-signs TLS): without them
  # cargo inside the build fails on crates.io with "self-signed certificate in certificate
  # chain". A corporate proxy needs the same on any machine; a clean network does not.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$m/usr/local/share/ca-certificates/"
    chroot "$m" update-ca-certificates >&2
  fi
  "${BUILDAH[@]}" umount "$c" >/dev/null
  "${BUILDAH[@]}" config \
    --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUST_VERSION="$toolchain_name" --cmd bash "$c"
  "${BUILDAH[@]}" rmi -f "$BUILDER_NAME" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" commit --rm --format docker "$c" "$BUILDER_NAME" >/dev/null
  stamp "$BUILDER_NAME" "$builder_key"
  "${BUILDAH[@]}" run "$("${BUILDAH[@]}" from --pull=never "$BUILDER_NAME")" -- sh -c \
    'cargo --version && rustc --version && gcc --version | head -1' >&2
  "${BUILDAH[@]}" rm --all >/dev/null
fi

# ---------------------------------------------------------------- distroless/cc-debian12:nonroot
base_key="$(python3 scripts/images.py cc-base-key)"
if ! has_image "$BASE_NAME" "$base_key"; then
  say "making $BASE_NAME (scripts/images.py cc-base, key $base_key)"
  tmp="$(mktemp -d)"
  python3 scripts/images.py cc-base "$tmp/rootfs"
  c="$("${BUILDAH[@]}" from scratch)"
  "${BUILDAH[@]}" copy "$c" "$tmp/rootfs/." / >/dev/null
  "${BUILDAH[@]}" config --user "$NONROOT:$NONROOT" --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
  "${BUILDAH[@]}" rmi -f "$BASE_NAME" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" commit --rm --format docker "$c" "$BASE_NAME" >/dev/null
  stamp "$BASE_NAME" "$base_key"
  rm -rf "$tmp"
fi

# ---------------------------------------------------------------- buildah bud, as written
# --network host: the builder stage fetches Debian packages and crates (buildah's own network
# needs CNI set up, which this machine lacks). --pull=never: the FROM images are the local ones.
# The RUN --mount=type=cache directories persist between builds (buildah keeps them), so the
# second target's cargo finds the first one's build.
"${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
start=$(date +%s)
for target in runtime operator; do
  if [ "$target" = runtime ]; then name=$OUT_RUNTIME; args=(--target runtime); else name=$OUT_OPERATOR; args=(); fi
  say "buildah bud ${args[*]:+${args[*]} }-t $name . (unchanged Dockerfile)"
  "${BUILDAH[@]}" rmi -f "$name" >/dev/null 2>&1 || true  # vfs keeps full copies: no stale ones
  t0=$(date +%s)
  nice -n 19 "${BUILDAH[@]}" bud --pull=never --network host --layers=false "${args[@]}" \
    -f Dockerfile -t "$name" . >&2
  say "$target: $(( $(date +%s) - t0 )) s"
done
wall=$(( $(date +%s) - start ))

# ---------------------------------------------------------------- checks
# Each image runs its binary as its own user (no shell in it: the binary is exec'd directly),
# then both go to OCI archives in $DF/out and through `images.py check`, the same comparison
# with the Dockerfile that `make test` applies to the images of `make images` (binaries, user,
# entrypoint, env, ports, no shell, CA certificates, stripped, size goals).
fail=0
out="$DF/out"
mkdir -p "$out"
for target in runtime operator; do
  if [ "$target" = runtime ]; then name=$OUT_RUNTIME; else name=$OUT_OPERATOR; fi
  bin="auren-$target"
  user="$("${BUILDAH[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$name")"
  c="$("${BUILDAH[@]}" from --pull=never "$name")"
  version="$("${BUILDAH[@]}" run "$c" -- "/usr/local/bin/$bin" --version 2>&1)" ||
    { say "FAIL $target: $bin --version: $version"; fail=1; }
  "${BUILDAH[@]}" rm "$c" >/dev/null
  [ "$user" = "$NONROOT:$NONROOT" ] || { say "FAIL $target: user $user, want $NONROOT:$NONROOT"; fail=1; }
  say "$target: $name runs as $user: $version"
  rm -f "$out/$target.tar"
  "${BUILDAH[@]}" push --quiet "$name" "oci-archive:$out/$target.tar:$name" >&2
done
python3 -c '
import json, sys
sys.path.insert(0, "scripts")
import images
out = sys.argv[1]
sizes = {t: images.archive_sizes(f"{out}/{t}.tar") for t in images.IMAGES}
json.dump(sizes, open(f"{out}/sizes.json", "w"), indent=1)
for t, s in sizes.items():
    u, a = s["unpacked"] / 2**20, s["archive"] / 2**20
    print(f"{t:8} {u:5.1f} MiB unpacked, {a:5.1f} MiB compressed")
' "$out"
python3 scripts/images.py check "$out" >/dev/null || fail=1
"${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'rust|distroless' >&2
say "buildah bud of both targets: ${wall} s; archives in $out"
exit "$fail"
