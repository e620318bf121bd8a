#!/usr/bin/env bash
# Copies seeds into fuzz/corpus/<target>/ (gitignored): fixtures/ files up to 64 KiB, the config
# example, and the small hand-made seeds in fuzz/seeds/. Existing corpus files are kept, so a corpus
# grown by earlier runs keeps growing. Usage: fuzz/seed.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Larger fixtures (the 300 KB-1.6 MB frames) are left out: slow to mutate and to decode thousands of
# times a second. fuzz/seeds/ has tiny siblings of their structures.
max_bytes=65536

copy() { # copy TARGET FILE...
  local target=$1
  shift
  mkdir -p "fuzz/corpus/$target"
  local file
  for file in "$@"; do
    [ -f "$file" ] || continue
    [ "$(stat -c %s "$file")" -le "$max_bytes" ] || continue
    # fixtures/bad/empty.jpg → fixtures-bad-empty.jpg: names stay unique and say where they came from.
    cp "$file" "fuzz/corpus/$target/$(echo "$file" | tr / -)"
  done
}

shopt -s nullglob
images=(fixtures/*/*.jpg fixtures/*/*.png fixtures/bad/*.bin fixtures/fuzz-regressions/decode-* fuzz/seeds/jpeg-* fuzz/seeds/png-*)
payloads=(fixtures/encoded/* fixtures/*/*.b64 fixtures/seed/seed-frame.jpg fixtures/bad/empty.jpg
  fixtures/fuzz-regressions/payload-* fuzz/seeds/payload-* fuzz/seeds/jpeg-420.jpg fuzz/seeds/png-rgb8.png)
copy decode "${images[@]}"
copy payload "${payloads[@]}"
copy frame "${images[@]}" "${payloads[@]}" fixtures/fuzz-regressions/frame-*
copy config config/*.toml fuzz/seeds/config-* fixtures/fuzz-regressions/config-*

for target in decode payload frame config; do
  echo "fuzz/corpus/$target: $(find "fuzz/corpus/$target" -type f | wc -l) files"
done
