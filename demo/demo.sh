#!/usr/bin/env bash
# make demo: a real backup of a throwaway PostgreSQL 15 cluster with the
# backup playbook, on this machine (as root), everything under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
demo=$repo/.demo
root=$demo/alation          # a plain tree standing in for the Alation shell
py=$repo/.venv/bin/python
mkdir -p "$demo"

stop_cluster() { "$py" tests/support/fake_alation.py down "$root" || true; }
trap stop_cluster EXIT

echo "== Starting a throwaway PostgreSQL 15 cluster (pgbench scale ${DEMO_SCALE:-10}) under $root/data1/pgsql"
"$py" tests/support/fake_alation.py up "$root" --scale "${DEMO_SCALE:-10}" > "$demo/role_vars.json"

if pgpb=$(command -v "${PG_PROBACKUP:-pg_probackup}" 2>/dev/null || command -v pg_probackup-15 2>/dev/null); then
  engine=pg_probackup
  echo "== Engine: pg_probackup ($pgpb found)"
else
  engine=pg_basebackup
  echo "== Engine: pg_basebackup (no pg_probackup on PATH or in \$PG_PROBACKUP; PostgreSQL's own tool stands in)"
fi

cat > "$demo/inventory.yml" <<INV
alation:
  hosts:
    alation-demo:               # this machine, as a fake Alation host
      ansible_connection: local
      ansible_python_interpreter: $py
INV

echo "== ansible-playbook playbooks/backup.yml"
start=$(date +%s%N)
"$repo/.venv/bin/ansible-playbook" -i "$demo/inventory.yml" playbooks/backup.yml \
  -e @"$demo/role_vars.json" -e alation_backup_engine=$engine -e alation_backup_become=false \
  ${pgpb:+-e alation_backup_pg_probackup_binary=$pgpb} \
  -e alation_backup_report_path="$demo/report.json"
end=$(date +%s%N)

archive=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["archive"])' "$demo/report.json")
echo
echo "== Archive:  $archive"
echo "   size:     $(stat -c %s "$archive") bytes"
echo "   sha256:   $(cut -d' ' -f1 "$archive.sha256")"
echo "   playbook: $(( (end - start) / 1000000 )) ms; steps: $("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["durations_s"])' "$demo/report.json")"
echo "   top-level contents:"
tar -tzf "$archive" | awk -F/ '{print $1}' | sort | uniq -c | sed 's/^/     /'
echo "   staging dir left: $(find "$root/data2/tmp" -mindepth 1 | wc -l) entries"

echo
echo "== Restore drill on the archive just made (again any time: make demo-verify [ARCHIVE=path])"
demo/verify.sh "$archive"
