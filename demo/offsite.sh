#!/usr/bin/env bash
# make demo-offsite: a backup that survives the host, on this machine (as root).
# A throwaway GnuPG key pair and a throwaway backup host (a real sshd on
# loopback, its own host key, user and key pair); a backup of a real Alation
# shell encrypted to the public key, copied to the backup host and verified
# there, with node_exporter metrics; then the restore drill restoring from the
# copy on the backup host with the secret key; then the metrics. sshd, its user
# and PostgreSQL are stopped at the end; the files stay under .demo/offsite/
# (each run starts afresh). make demo is the plain process: no copy, no gpg.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=demo/lib.sh
. demo/lib.sh
repo=$PWD
demo=$repo/.demo/offsite
root=$demo/alation          # the Alation shell (its own overlay, apart from make demo's)
backup_host=$demo/backup_host
keys=$demo/keys
textfile=$demo/textfile     # node_exporter's textfile collector dir, as it would be on the host
py=$repo/.venv/bin/python
host=alation-demo           # the inventory name: the per-host dir on the backup host

# What an earlier run left: stopped and removed, so that this run starts afresh.
"$py" tests/support/backup_host.py down "$backup_host" || true
"$py" tests/support/alation_shell.py down "$root" --purge || true
rm -rf "$demo"
mkdir -p "$keys" "$textfile"
chmod 755 "$repo/.demo" "$demo"   # the backup host's user reaches its home below
chmod 700 "$keys"

teardown() {
  rc=$?
  set +e
  echo
  echo "== Teardown: sshd stopped and its user removed (its files kept, now root's), PostgreSQL stopped, the shell unmounted"
  "$py" tests/support/backup_host.py down --keep "$backup_host"
  "$py" tests/support/alation_shell.py down "$root"
  if [ -n "${far_dir:-}" ]; then
    echo "   the copy on the backup host:  $far_dir/"
  fi
  echo "   the archive on the host:      $demo/alation.overlay/upper/data2/backup/ (the shell's overlay; make demo-offsite again starts afresh)"
  echo "   keys:                         $keys/ (backup-pub.asc, backup-secret.asc, drill_vars.json with the passphrase)"
  echo "   metrics:                      $textfile/alation_backup.prom"
  echo "   reports, sshd log:            $demo/report.json, $demo/drill_report.json, $backup_host/sshd.log"
  exit "$rc"
}
trap teardown EXIT

demo_gpg_keys "$py" "$keys"

echo
echo "== A throwaway backup host on loopback: sshd with its own host key, a throwaway user and key pair"
"$py" tests/support/backup_host.py up "$backup_host" > "$demo/backup_host.json"
bh_user=$(json "$demo/backup_host.json" user)
bh_port=$(json "$demo/backup_host.json" port)
echo "   sshd pid $(json "$demo/backup_host.json" pid) on 127.0.0.1:$bh_port (config $backup_host/sshd_config), host key $(json "$demo/backup_host.json" host_key_fingerprint)"
echo "   user $bh_user (uid $(json "$demo/backup_host.json" uid)), only with the key $backup_host/user_key; known_hosts $backup_host/known_hosts:"
sed 's/^/     /' "$backup_host/known_hosts"
echo "   destination $(json "$demo/backup_host.json" backups) (per-host dirs below it)"

echo
echo "== The Alation shell at $root (pgbench scale ${DEMO_SCALE:-10})"
"$py" tests/support/alation_shell.py up "$root" --scale "${DEMO_SCALE:-10}" > "$demo/role_vars.json"
if [ -x "$root/usr/local/bin/pg_probackup" ]; then
  engine=pg_probackup
  echo "== Engine: pg_probackup (the role's default; the host's copied into the shell)"
else
  engine=pg_basebackup
  echo "== Engine: pg_basebackup (no pg_probackup on PATH or in \$PG_PROBACKUP; PostgreSQL's own tool stands in)"
fi

demo_inventory "$demo/inventory.yml" "$host"

# The backup's variables beyond the role defaults (as group_vars would hold them); the drill's secrets apart.
"$py" - "$demo" "$fingerprint" "$engine" <<'PY'
import json, os, sys
demo, fingerprint, engine = sys.argv[1:]
host = json.load(open(os.path.join(demo, 'backup_host.json')))
out = dict(json.load(open(os.path.join(demo, 'role_vars.json'))), alation_backup_become=False,
           alation_backup_engine=engine,
           alation_backup_encrypt_recipient=fingerprint,
           alation_backup_encrypt_public_key=open(os.path.join(demo, 'keys', 'backup-pub.asc')).read(),
           alation_backup_copy_to=host['dest'], alation_backup_copy_ssh_key=host['user_key'],
           alation_backup_copy_known_hosts=host['known_hosts'], alation_backup_copy_required=True,
           alation_backup_metrics_dir=os.path.join(demo, 'textfile'),
           alation_backup_report_path=os.path.join(demo, 'report.json'))
json.dump(out, open(os.path.join(demo, 'backup_vars.json'), 'w'), indent=2)
PY
echo "== Set for the backup besides the shell's path, port and engine ($demo/backup_vars.json):"
"$py" -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sorted(v):
    if k.startswith(("alation_backup_encrypt", "alation_backup_copy", "alation_backup_metrics")):
        print("   %s: %s" % (k, "<its ASCII-armored public key, %d lines>" % len(v[k].splitlines())
                                if k.endswith("public_key") else json.dumps(v[k])))' "$demo/backup_vars.json"

echo
echo "== ansible-playbook playbooks/backup.yml (encrypted, copied to the backup host, metrics)"
start=$(date +%s%N)
"$repo/.venv/bin/ansible-playbook" -i "$demo/inventory.yml" playbooks/backup.yml -e @"$demo/backup_vars.json"
end=$(date +%s%N)

archive=$(json "$demo/report.json" 0 archive)
name=$(basename "$archive")
far_dir=$(json "$demo/backup_host.json" backups)/$host
echo
echo "== Archive on the host: $archive"
echo "   size $(stat -c %s "$archive") bytes, sha256 $(head -1 "$archive.sha256" | cut -d' ' -f1); playbook $(( (end - start) / 1000000 )) ms"
echo "   steps (s): $(json "$demo/report.json" 0 durations_s)"
echo "   files in the storage dir (ciphertext only): $(find "$(dirname "$archive")" -mindepth 1 -maxdepth 1 -type f ! -name '.*' -printf '%f\n' | sort | tr '\n' ' ')"
echo "   gpg --list-packets without any key (what a thief of the host gets):"
empty=$(mktemp -d)
{ gpg --homedir "$empty" --batch --list-packets "$archive" 2>&1 || true; } | grep -E 'pubkey enc packet|keyid|encrypted data packet|No secret key' \
  | sed 's/^/     /'
rm -rf "$empty"
demo_copy_result "$demo/report.json" "the backup host"

echo
echo "== On the backup host, $far_dir (listed and checked over ssh as $bh_user):"
ssh_=(ssh -p "$bh_port" -i "$backup_host/user_key" -o UserKnownHostsFile="$backup_host/known_hosts"
      -o StrictHostKeyChecking=yes -o BatchMode=yes "$bh_user@127.0.0.1")
"${ssh_[@]}" "cd '$far_dir' && ls -ln && sha256sum -c '$name.sha256'" 2>&1 | sed 's/^/   /'
echo "   sshd accepted $(grep -c 'Accepted publickey' "$backup_host/sshd.log") sessions with the key, refused $(grep -cE 'Failed|Invalid user' "$backup_host/sshd.log" || true)"

echo
echo "== Restore drill from the copy on the backup host ($far_dir/$name), with the secret key"
DEMO_DIR=$demo DRILL_VARS=$keys/drill_vars.json demo/verify.sh "$far_dir/$name"

echo
echo "== Metrics: $textfile/alation_backup.prom (node_exporter's textfile collector reads it)"
sed 's/^/   /' "$textfile/alation_backup.prom"
"$py" - "$textfile/alation_backup.prom" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
print('   parsed by prometheus_client: %d metrics, %d samples' % (len(families), sum(len(f.samples) for f in families)))
PY
