# Install what the demo, the tests and the benchmarks need, each piece only when it is missing.
# Sourced by scripts/*.sh. Safe to run again: a fully set-up machine installs nothing.

PGRX_VERSION=0.18.1
# faketime: the end-to-end tests run a relay with a skewed clock (tests/tests/adversarial.rs);
# postgresql-15-pgq3: PgQ, a peer in the writer benchmark (bench/writer_overhead.sh)
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo
              pkg-config python3-venv curl php-cli faketime postgresql-15-pgq3)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_cargo_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a while on a small machine, once)"
        cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
    fi
    if ! grep -qs '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        log "pointing cargo-pgrx at the system PostgreSQL 15"
        cargo pgrx init --pg15 /usr/bin/pg_config >/dev/null
    fi
}

ensure_deps() {
    ensure_apt_packages
    ensure_cargo_pgrx
}

# A Python venv with the official Standard Webhooks verifier, an independent check of our
# signatures (used by the end-to-end tests and the demo's receiver).
ensure_python_verifier() {
    local venv=$1
    if ! "$venv/bin/python" -c "import standardwebhooks" 2>/dev/null; then
        log "installing the standardwebhooks verifier (PyPI) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q standardwebhooks
    fi
}

# Build the extension and install it into the system PostgreSQL 15, with 0.1.0's install
# script beside it (pg_webhooks/sql/README.md: the upgrade test starts from it; cargo pgrx
# copies only upgrade scripts).
install_extension() {
    local profile_flag=${1:-}
    log "building and installing the pg_webhooks extension"
    (cd "$REPO/pg_webhooks" && cargo pgrx install $profile_flag --pg-config /usr/bin/pg_config >/dev/null)
    install -m 644 "$REPO/pg_webhooks/sql/pg_webhooks--0.1.0.sql" \
        "$(/usr/bin/pg_config --sharedir)/extension/"
}
