#!/bin/sh
# Creates the S3 bucket Vaporform keeps file contents in ($VAPORFORM_S3_BUCKET) on SeaweedFS,
# through `weed shell` on its master. Until the bucket exists, listing it (garbage collection,
# backups) fails, although the first write would create it.
#
# Retries because the master reports its filer a moment after the S3 API answers; idempotent
# (a bucket already there is left as it is), so it is safe on every `up`.
set -u

master="${SEAWEEDFS_MASTER:-seaweedfs:9333}"
bucket="${VAPORFORM_S3_BUCKET:?set VAPORFORM_S3_BUCKET}"
weed="${WEED:-weed}"
deadline=$(($(date +%s) + ${TIMEOUT_SECONDS:-120}))

# `s3.bucket.list` prints one "  <name>\tsize:..." row per bucket. The shell waits for its
# master as long as it takes, hence the timeout on every call.
listed() {
    printf 's3.bucket.list\n' | timeout 30 "$weed" shell -master="$master" 2>/dev/null |
        awk -v bucket="$bucket" '$1 == bucket { found = 1 } END { exit !found }'
}

while :; do
    if listed; then
        echo "bucket $bucket is on $master"
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "gave up: bucket $bucket is still missing on $master" >&2
        exit 1
    fi
    printf 's3.bucket.create -name %s\n' "$bucket" | timeout 30 "$weed" shell -master="$master"
    sleep 2
done
