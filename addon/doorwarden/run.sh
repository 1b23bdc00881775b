#!/usr/bin/env bash
# Start doorwarden inside the Home Assistant add-on container.
#
# It only moves bytes: it asks the Supervisor for the MQTT broker, hands the
# answer and the add-on options to `doorwarden addon-config` (which decides
# everything and writes the config plus 0600 password files), then replaces
# itself with `doorwarden run`. Nothing here prints the broker password: the
# Supervisor's answer goes from curl straight into doorwarden through a pipe.
#
# Every path can be overridden through the environment, so the tests can run
# this script against a fake Supervisor on 127.0.0.1.
set -euo pipefail

supervisor_url="${DOORWARDEN_SUPERVISOR_URL:-http://supervisor}"
options="${DOORWARDEN_OPTIONS:-/data/options.json}"
data_dir="${DOORWARDEN_DATA_DIR:-/data}"
config_dir="${DOORWARDEN_ADDON_CONFIG_DIR:-/config}"
config="${DOORWARDEN_CONFIG_OUT:-${data_dir}/doorwarden.yaml}"
doorwarden="${DOORWARDEN_BIN:-doorwarden}"

log() {
    printf '[doorwarden add-on] %s\n' "$*" >&2
}

if [[ -z "${SUPERVISOR_TOKEN:-}" ]]; then
    log "SUPERVISOR_TOKEN is not set: this script must run as a Home Assistant add-on"
    exit 1
fi
if [[ ! -r "${options}" ]]; then
    log "cannot read the add-on options at ${options}"
    exit 1
fi

# The log level is the one option read here, because it is needed before
# doorwarden starts logging. Only the values the schema allows get through.
log_level="$(jq -r '.log_level // "info"' "${options}")"
case "${log_level}" in
    trace | debug | info | warn | error) ;;
    *) log_level=info ;;
esac
export RUST_LOG="doorwarden=${log_level},warn"

log "asking the Supervisor for the MQTT broker"
# The token goes in through a header file on a file descriptor rather than
# the command line, where any process in the container could read it.
# No --fail: an error answer's body says why, and doorwarden reports it. A
# Supervisor that cannot be reached at all leaves doorwarden an empty answer,
# which is fine when config_file brings its own mqtt section.
{
    curl --silent --show-error --max-time 15 \
        --header @<(printf 'Authorization: Bearer %s\n' "${SUPERVISOR_TOKEN}") \
        "${supervisor_url}/services/mqtt" ||
        log "could not fetch ${supervisor_url}/services/mqtt (curl exit status $?)"
} |
    "${doorwarden}" addon-config \
        --options "${options}" \
        --mqtt-service - \
        --out "${config}" \
        --data-dir "${data_dir}" \
        --config-dir "${config_dir}"

log "starting doorwarden with ${config}"
exec "${doorwarden}" run --config "${config}"
