#!/usr/bin/env bash
# Postlog's test command: installs what the tests need (Debian packages, cargo tools), then
# runs every check CI runs. Usage: scripts/test.sh   (FUZZ_SECONDS=N to change the fuzz smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

# Debian packages the tests drive. Each test that needs a program fails (never skips) when it
# is missing, so install them all first.
# python3: smtplib clients; swaks (+ its TLS and SASL modules): SMTP from the command line.
# postfix: a real MTA relaying to Postlog (SMTP, LMTP) and smtp-source for volume.
# isync: mbsync, a real IMAP sync client.
# offlineimap3, fetchmail: more real IMAP clients.
# neomutt, tmux: a terminal mail client driven under tmux.
# dnsmasq-base: a DNS server with test MX/A/TXT records for outbound delivery (no system service).
# openssl: `postlog dkim generate` makes RSA keys with it.
PACKAGES=(ca-certificates python3 swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl postfix isync offlineimap3 fetchmail neomutt tmux dnsmasq-base openssl)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# imapclient (not in Debian) from PyPI, pinned, for server/tests/clients/imapclient_clients.py.
IMAPCLIENT=4.1.0
if ! python3 -c "import imapclient, sys; sys.exit(imapclient.__version__ != '$IMAPCLIENT')" 2>/dev/null; then
  echo "installing: imapclient $IMAPCLIENT"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-pip
  fi
  # Debian's own python3 is "externally managed" (PEP 668): the flag lets pip install beside it.
  python3 -m pip install --quiet "imapclient==$IMAPCLIENT" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "imapclient==$IMAPCLIENT"
fi

# cargo-fuzz for the fuzz smoke run.
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets -- -D warnings
echo "== tests";  cargo test --workspace --release
echo "== fuzz smoke"; fuzz/smoke.sh "${FUZZ_SECONDS:-15}"
echo "== bench smoke"; cargo run --release -q -p postlog-benches --bin storebench -- --quick
echo "all checks passed"
