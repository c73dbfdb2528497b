#!/usr/bin/env bash
# Builds the page's wasm into web/pkg (wgtrain_web.js and wgtrain_web_bg.wasm): the wgtrain-web crate
# for wasm32-unknown-unknown, then wasm-bindgen's JS glue. Needs `rustup target add
# wasm32-unknown-unknown` and wasm-bindgen-cli at exactly Cargo.lock's wasm-bindgen version:
#   cargo install wasm-bindgen-cli --version "$(web/build.sh --wasm-bindgen-version)"
# Then serve the repository root (the page fetches ../data/mnist) and open /web/:
#   python3 -m http.server 8000   # http://localhost:8000/web/
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ "${1:-}" = "--wasm-bindgen-version" ]; then
    echo "$want"
    exit 0
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }') || true
if [ "$have" != "$want" ]; then
    echo "web/build.sh: wasm-bindgen-cli ${have:-is missing}, Cargo.lock has wasm-bindgen $want: cargo install wasm-bindgen-cli --version $want" >&2
    exit 2
fi
cargo build -p wgtrain-web --release --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
    target/wasm32-unknown-unknown/release/wgtrain_web.wasm
ls -l web/pkg/wgtrain_web_bg.wasm | awk '{ printf "web/pkg/wgtrain_web_bg.wasm: %d bytes", $5 }'
gzip -9c web/pkg/wgtrain_web_bg.wasm | wc -c | awk '{ printf " (%d gzipped)\n", $1 }'
