#!/bin/sh
# Registers the custom search attributes that Vaporform's workflows set (ProjectId, UserId, both
# Keyword) on the Temporal namespace. Workflow starts that carry them fail until this has run.
#
# Retries because the server reports healthy a few seconds before auto-setup has created the
# namespace; idempotent (an attribute already there is skipped), so it is safe on every `up`.
set -u

address="${TEMPORAL_ADDRESS:-temporal:7233}"
namespace="${TEMPORAL_NAMESPACE:-default}"
deadline=$(($(date +%s) + ${TIMEOUT_SECONDS:-300}))

# `list` prints one "<name>  <type>" row per attribute.
missing() {
    listed=$(temporal operator search-attribute list --address "$address" --namespace "$namespace") ||
        return 2
    for name in ProjectId UserId; do
        printf '%s\n' "$listed" | grep -Eq "^[[:space:]]*${name}[[:space:]]+Keyword[[:space:]]*$" ||
            printf '%s ' "$name"
    done
}

while :; do
    todo=$(missing)
    status=$?
    if [ "$status" -eq 0 ] && [ -z "$todo" ]; then
        echo "search attributes ProjectId and UserId are registered on namespace $namespace"
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "gave up: search attributes still missing on namespace $namespace at $address" >&2
        exit 1
    fi
    # One attribute per call, so one that exists already cannot block the other.
    for name in $todo; do
        temporal operator search-attribute create --address "$address" --namespace "$namespace" \
            --name "$name" --type Keyword
    done
    sleep 2
done
