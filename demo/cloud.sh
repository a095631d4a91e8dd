#!/usr/bin/env bash
# make demo-cloud: a backup that survives the host in a bucket, on this machine (as root).
# A throwaway GnuPG key pair and a throwaway S3 server on loopback (moto's server mode, request signing on, as
# tests/integration/test_object_storage.py starts it); a backup of a real Alation shell encrypted to the public
# key, copied to the bucket through rclone and verified there; the bucket listed with another client (boto3);
# the copy downloaded back and given to the restore drill with the secret key. The S3 server and PostgreSQL are
# stopped at the end; the files stay under .demo/cloud/ (each run starts afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=demo/lib.sh
. demo/lib.sh
repo=$PWD
demo=$repo/.demo/cloud
root=$demo/alation          # the Alation shell (its own overlay, apart from the other demos')
keys=$demo/keys
py=$repo/.venv/bin/python
s3=$repo/tests/support/s3_server.py
host=alation-demo           # the inventory name: the per-host prefix in the bucket
prefix=demo

# What an earlier run left: stopped and removed, so that this run starts afresh.
"$py" "$s3" down "$demo" || true
"$py" tests/support/alation_shell.py down "$root" --purge || true
rm -rf "$demo"
mkdir -p "$keys"
chmod 700 "$keys"

teardown() {
  rc=$?
  set +e
  echo
  echo "== Teardown: the S3 server stopped, PostgreSQL stopped, the shell unmounted"
  "$py" "$s3" down "$demo"
  "$py" tests/support/alation_shell.py down "$root"
  echo "   the copy, downloaded back:    $demo/download/"
  echo "   the archive on the host:      $demo/alation.overlay/upper/data2/backup/ (make demo-cloud again starts afresh)"
  echo "   keys:                         $keys/ (backup-pub.asc, backup-secret.asc, drill_vars.json, s3_vars.json: 0600)"
  echo "   reports:                      $demo/report.json, $demo/drill_report.json"
  exit "$rc"
}
trap teardown EXIT

demo_gpg_keys "$py" "$keys"

echo
echo "== A throwaway S3 server on loopback (moto's server mode, SigV4 signatures checked), one user, one bucket"
"$py" "$s3" up "$demo" > "$demo/s3_up.json"
echo "   $(json "$demo/s3_up.json" endpoint), pid $(json "$demo/s3_up.json" pid), bucket $(json "$demo/s3_up.json" bucket); rclone $(rclone version 2>/dev/null | head -1)"

echo
echo "== The Alation shell at $root (pgbench scale ${DEMO_SCALE:-10})"
"$py" tests/support/alation_shell.py up "$root" --scale "${DEMO_SCALE:-10}" > "$demo/role_vars.json"
if [ -x "$root/usr/local/bin/pg_probackup" ]; then engine=pg_probackup; else engine=pg_basebackup; fi
echo "== Engine: $engine"

demo_inventory "$demo/inventory.yml" "$host"

# The backup's variables beyond the role defaults; the store's keys and the drill's secrets in 0600 files apart.
"$py" - "$demo" "$fingerprint" "$engine" "$prefix" <<'PY'
import json, os, sys
demo, fingerprint, engine, prefix = sys.argv[1:]
s3 = json.load(open(os.path.join(demo, 's3.json')))
out = dict(json.load(open(os.path.join(demo, 'role_vars.json'))), alation_backup_become=False,
           alation_backup_engine=engine,
           alation_backup_encrypt_recipient=fingerprint,
           alation_backup_encrypt_public_key=open(os.path.join(demo, 'keys', 'backup-pub.asc')).read(),
           alation_backup_copy_to='s3://%s/%s' % (s3['bucket'], prefix),
           alation_backup_copy_s3_endpoint=s3['endpoint'], alation_backup_copy_s3_region=s3['region'],
           alation_backup_copy_required=True,
           alation_backup_report_path=os.path.join(demo, 'report.json'))
json.dump(out, open(os.path.join(demo, 'backup_vars.json'), 'w'), indent=2)
fd = os.open(os.path.join(demo, 'keys', 's3_vars.json'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, 'w') as f:
    json.dump(dict(alation_backup_copy_s3_access_key_id=s3['key'], alation_backup_copy_s3_secret_access_key=s3['secret']), f)
PY
echo "== Set for the backup besides the shell's path, port and engine ($demo/backup_vars.json, keys/s3_vars.json):"
"$py" -c 'import json,sys; v=json.load(open(sys.argv[1])); v.update(json.load(open(sys.argv[2])))
for k in sorted(v):
    if k.startswith(("alation_backup_encrypt", "alation_backup_copy")):
        print("   %s: %s" % (k, "<its ASCII-armored public key, %d lines>" % len(v[k].splitlines())
                                if k.endswith("public_key") else "<secret, no_log>" if k.endswith("secret_access_key")
                                else json.dumps(v[k])))' "$demo/backup_vars.json" "$keys/s3_vars.json"

echo
echo "== ansible-playbook playbooks/backup.yml (encrypted, copied to the bucket)"
"$repo/.venv/bin/ansible-playbook" -i "$demo/inventory.yml" playbooks/backup.yml -e @"$demo/backup_vars.json" \
  -e @"$keys/s3_vars.json" | tee "$demo/playbook.log"
if grep -qF "$(json "$keys/s3_vars.json" alation_backup_copy_s3_secret_access_key)" "$demo/playbook.log"; then
  echo "the secret access key shows in the playbook's output" >&2
  exit 1
fi

archive=$(json "$demo/report.json" 0 archive)
name=$(basename "$archive")
echo
echo "== Archive on the host: $archive"
echo "   size $(stat -c %s "$archive") bytes, sha256 $(head -1 "$archive.sha256" | cut -d' ' -f1), md5 $(md5sum < "$archive" | cut -d' ' -f1)"
demo_copy_result "$demo/report.json" "the bucket"

echo
echo "== In the bucket, s3://$(json "$demo/s3_up.json" bucket)/$prefix/$host/ (listed by boto3, another client: size, ETag)"
"$py" "$s3" ls "$demo" "$prefix/$host/" | sed 's/^/   /'

echo
echo "== The copy downloaded back from the bucket, checked against its .sha256 there"
mkdir -p "$demo/download"
"$py" "$s3" get "$demo" "$prefix/$host/$name" "$demo/download/$name"
"$py" "$s3" get "$demo" "$prefix/$host/$name.sha256" "$demo/download/$name.sha256"
(cd "$demo/download" && sha256sum -c "$name.sha256") | sed 's/^/   /'

echo
echo "== Restore drill from the downloaded copy ($demo/download/$name), with the secret key"
DEMO_DIR=$demo DRILL_VARS=$keys/drill_vars.json demo/verify.sh "$demo/download/$name"
