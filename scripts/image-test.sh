#!/usr/bin/env bash
# `make image-test`: build the reviewer's Docker image for real and run it (CI runs this after
# `make test`). Uses Debian's podman with runc, as root; no registry is needed: the base image is
# made locally with debootstrap from the Debian mirror apt already uses (what debian:bookworm-slim
# is made from), once, then cached in podman's store. The checks against the running container
# are in scripts/image_check.py; every container gets a --cidfile, and the exit trap removes them
# all by id, whatever happened.
# Environment: VAAR_VENV (the host's vaar, whose numbers the container's must equal),
# VAAR_IMAGE (tag to build, default localhost/vaar:test).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VAAR_VENV:-$PWD/.venv}"
image="${VAAR_IMAGE:-localhost/vaar:test}"
base=localhost/bookworm:slim  # made once; `podman rmi` it to make it again

say() { printf '[image-test] %s\n' "$*"; }
fail() { printf '[image-test] FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (rootful podman, Debian's packages): sudo make image-test"
[ -x "$venv/bin/vaar" ] || fail "no $venv/bin/vaar to compare with: run make setup first"

missing=()
for p in podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  timeout 600 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 900 \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

work="$(mktemp -d /tmp/vaar-image-test.XXXXXX)"
cleanup() {
  local f
  for f in "$work"/*.cid; do
    [ -s "$f" ] || continue
    timeout 60 podman rm --force --time 5 "$(cat "$f")" >/dev/null 2>&1 \
      || printf '[image-test] could not remove container %s\n' "$(cat "$f")" >&2
  done
  rm -rf "$work"
}
trap cleanup EXIT

# What this sandbox forbids by default: setting ulimits, systemd cgroups, crun ("cgroups in
# hybrid mode"). Harmless elsewhere.
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"

if ! podman image exists "$base"; then
  mirror="$(apt-get indextargets --format '$(SITE) $(RELEASE)' | awk '$2 == "bookworm" {print $1; exit}')"
  [ -n "$mirror" ] || fail "no Debian bookworm source in apt's configuration (/etc/apt/sources.list*)"
  say "making $base: debootstrap --variant=minbase bookworm from $mirror (once, ~2 min)"
  start=$SECONDS
  rootfs="$work/rootfs"
  timeout 1200 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap (log above)"; }
  # The host's bookworm suites (updates, security), as the official image has them.
  apt-get indextargets --format '$(SITE) $(RELEASE)' | sort -u \
    | awk '$2 ~ /^bookworm(-updates|-security)?$/ {print "deb " $1 " " $2 " main"}' \
    > "$rootfs/etc/apt/sources.list"
  # Slim as debian:bookworm-slim is: no documentation, manual pages or translations.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs"/usr/share/{doc,man,info,locale} \( -type f -o -type l \) \
    ! -name copyright ! -name locale.alias -delete
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | timeout 600 podman import --quiet --change 'CMD ["bash"]' - "$base" > /dev/null
  rm -rf "$rootfs"
  say "made $base in $((SECONDS - start)) s"
fi

# Behind a TLS-intercepting proxy the build trusts what the host trusts: the host's local CAs
# (Debian's place for them) are mounted into every RUN, where ca-certificates picks them up.
build_opts=(--format docker --network host --build-arg "BASE=$base" --tag "$image")
if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
  build_opts+=(--volume /usr/local/share/ca-certificates:/usr/local/share/ca-certificates/host:ro)
fi
say "building $image from $base (the README's docker build, with BASE=$base)"
start=$SECONDS
timeout 3600 podman build "${build_opts[@]}" . 2>&1 | sed -u 's/^/  | /' \
  || fail "podman build (output above)"
size="$(podman image inspect --format '{{.Size}}' "$image")"
say "built $image in $((SECONDS - start)) s; image size $((size / 1000000)) MB"

"$venv/bin/python" scripts/image_check.py "$image" "$work"
