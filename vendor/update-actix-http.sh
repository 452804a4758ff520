#!/usr/bin/env bash
# Re-creates vendor/actix-http from the actix-http release published on crates.io plus
# vendor/actix-http.patch, so the vendored copy is never edited by hand (see vendor/README.md for
# why rollcall patches actix-http at all).
#
#   vendor/update-actix-http.sh --check               regenerate into a temp dir and fail if
#                                                     vendor/actix-http differs (CI runs this)
#   vendor/update-actix-http.sh --write               replace vendor/actix-http with the result
#   vendor/update-actix-http.sh --make-patch          rewrite vendor/actix-http.patch as the diff
#                                                     between the published crate and the current
#                                                     vendor/actix-http (after editing it on purpose)
#   vendor/update-actix-http.sh --write-unpatched     replace vendor/actix-http with the published
#                                                     crate alone (to re-apply the patch by hand)
#   ... --version 3.x.y                               use that release instead of the version in
#                                                     vendor/actix-http/Cargo.toml (upgrades)
#
# The published crate is obtained through cargo itself: a throwaway crate in a temp dir depends on
# `actix-http = "=VERSION"`, `cargo fetch` downloads it from crates.io into cargo's cache, and the
# .crate archive (checked against the checksum in the throwaway Cargo.lock) is unpacked. What the
# vendored copy leaves out is then removed: benches/, examples/, tests/, CHANGES.md, Cargo.lock,
# Cargo.toml.orig, .cargo_vcs_info.json, and the [[example]], [[test]], [[bench]] and
# dev-dependency tables of the (normalized) Cargo.toml. Last, vendor/actix-http.patch is applied
# with `patch -p1 --fuzz=0`. If it no longer applies to a new release: `--version NEW
# --write-unpatched`, apply the patch in vendor/actix-http by hand (`patch -p1 --merge` helps),
# then `--make-patch` and `--check` (vendor/README.md has the whole upgrade procedure).
set -euo pipefail

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

mode=""
version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --check | --write | --make-patch | --write-unpatched)
      [ -z "$mode" ] || usage
      mode="${1#--}"
      ;;
    --version)
      [ $# -ge 2 ] || usage
      version="$2"
      shift
      ;;
    --version=*) version="${1#--version=}" ;;
    -h | --help) usage 0 ;;
    *) usage ;;
  esac
  shift
done
[ -n "$mode" ] || usage

vendor_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate_dir="$vendor_dir/actix-http"
patch_file="$vendor_dir/actix-http.patch"

if [ -z "$version" ]; then
  version="$(awk '/^\[/ { in_package = ($0 == "[package]") }
                  in_package && $1 == "version" && $2 == "=" { gsub(/"/, "", $3); print $3; exit }' \
    "$crate_dir/Cargo.toml")"
  [ -n "$version" ] || { echo "update-actix-http: no [package] version in $crate_dir/Cargo.toml" >&2; exit 1; }
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] ||
  { echo "update-actix-http: '$version' is not a version number" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/update-actix-http.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# Unpacks the published actix-http $version, minus what the vendored copy leaves out, into $1.
pristine() {
  local out="$1" fetch="$tmp/fetch" checksum crate_file="" f
  mkdir -p "$fetch/src"
  : >"$fetch/src/lib.rs"
  cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "fetch-actix-http"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
actix-http = { version = "=$version", default-features = false }
EOF
  # Outside the rollcall workspace, so `[patch.crates-io]` does not apply here.
  (cd "$fetch" && cargo fetch --quiet --target "$(rustc -vV | sed -n 's/^host: //p')") ||
    { echo "update-actix-http: cargo could not fetch actix-http $version from crates.io" >&2; exit 1; }
  checksum="$(awk '$0 == "name = \"actix-http\"" { found = 1 }
                   found && $1 == "checksum" { gsub(/"/, "", $3); print $3; exit }' "$fetch/Cargo.lock")"
  [ -n "$checksum" ] || { echo "update-actix-http: no checksum for actix-http in $fetch/Cargo.lock" >&2; exit 1; }
  for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"actix-http-$version.crate"; do
    if [ -f "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$checksum" ]; then
      crate_file="$f"
      break
    fi
  done
  [ -n "$crate_file" ] ||
    { echo "update-actix-http: no actix-http-$version.crate with checksum $checksum in cargo's cache" >&2; exit 1; }

  mkdir -p "$tmp/unpack"
  tar -xzf "$crate_file" -C "$tmp/unpack"
  mv "$tmp/unpack/actix-http-$version" "$out"
  rm -rf "$out/benches" "$out/examples" "$out/tests" \
    "$out/CHANGES.md" "$out/Cargo.lock" "$out/Cargo.toml.orig" "$out/.cargo_vcs_info.json"
  # Drops whole tables (header to the next header) from the normalized Cargo.toml; blank lines
  # are printed only before a kept line, so the file keeps one blank line between tables.
  awk '/^\[/ { drop = ($0 ~ /^\[\[(example|test|bench)\]\]$/ ||
                       $0 ~ /^\[(target\..+\.)?dev-dependencies(\..+)?\]$/) }
       drop { next }
       /^[ \t]*$/ { blanks++; next }
       { while (blanks > 0) { print ""; blanks-- } print }' \
    "$out/Cargo.toml" >"$tmp/Cargo.toml.stripped"
  mv "$tmp/Cargo.toml.stripped" "$out/Cargo.toml"
}

# The published crate with vendor/actix-http.patch applied, in $1.
regenerate() {
  local out="$1"
  pristine "$out"
  if ! patch -d "$out" -p1 -E --fuzz=0 --forward --batch --no-backup-if-mismatch --quiet \
    -r "$tmp/rejects" <"$patch_file"; then
    echo "update-actix-http: vendor/actix-http.patch does not apply cleanly to actix-http $version;" \
      "run 'bash vendor/update-actix-http.sh --version $version --write-unpatched', re-apply the" \
      "patch in vendor/actix-http by hand, then run --make-patch (see vendor/README.md)" >&2
    exit 1
  fi
}

case "$mode" in
  check)
    regenerate "$tmp/actix-http"
    if ! diff -r "$tmp/actix-http" "$crate_dir" >"$tmp/diff"; then
      sed "s|$tmp/actix-http|<regenerated>|g" "$tmp/diff" | head -n 200 >&2
      echo "update-actix-http: vendor/actix-http is not actix-http $version from crates.io plus" \
        "vendor/actix-http.patch (differences above). Edit the patch, not the folder: run" \
        "'bash vendor/update-actix-http.sh --write' to regenerate the folder, or '--make-patch' to" \
        "keep deliberate edits to vendor/actix-http in the patch." >&2
      exit 1
    fi
    echo "update-actix-http: vendor/actix-http is actix-http $version from crates.io plus vendor/actix-http.patch"
    ;;
  write)
    regenerate "$tmp/actix-http"
    rm -rf "$crate_dir"
    cp -R "$tmp/actix-http" "$crate_dir"
    echo "update-actix-http: wrote vendor/actix-http (actix-http $version + vendor/actix-http.patch)"
    ;;
  write-unpatched)
    pristine "$tmp/actix-http"
    rm -rf "$crate_dir"
    cp -R "$tmp/actix-http" "$crate_dir"
    echo "update-actix-http: wrote vendor/actix-http (actix-http $version, without vendor/actix-http.patch)"
    ;;
  make-patch)
    mkdir -p "$tmp/diff-root"
    pristine "$tmp/diff-root/a"
    cp -R "$crate_dir" "$tmp/diff-root/b"
    {
      cat <<EOF
rollcall's changes to actix-http $version as published on crates.io (after removing benches/,
examples/, tests/ and the example, test, bench and dev-dependency tables of Cargo.toml).
Written by vendor/update-actix-http.sh --make-patch, applied by --write and --check with
patch -p1 inside the crate folder; vendor/README.md says why. Text before the first diff
line is ignored by patch.

EOF
      # GNU diff's file timestamps would make the patch differ on every run; drop them.
      (cd "$tmp/diff-root" && diff -ruN a b || [ $? -eq 1 ]) | sed -E 's/^((---|\+\+\+) [^\t]*)\t.*$/\1/'
    } >"$tmp/actix-http.patch"
    mv "$tmp/actix-http.patch" "$patch_file"
    echo "update-actix-http: wrote vendor/actix-http.patch ($(grep -c '^@@' "$patch_file") hunks)"
    ;;
esac
