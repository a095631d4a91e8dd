#!/usr/bin/env bash
# make demo: a real backup inside a real Alation shell with the backup
# playbook and the role's defaults, on this machine (as root), then the
# restore drill. Everything lives under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
demo=$repo/.demo
root=$demo/alation          # the Alation shell: a Debian 12 chroot, its users only inside it
py=$repo/.venv/bin/python
mkdir -p "$demo"

echo "== The Alation shell at $root (built once with debootstrap and cached; PostgreSQL 15 inside, pgbench scale ${DEMO_SCALE:-10})"
start=$(date +%s%N)
"$py" tests/support/alation_shell.py up "$root" --scale "${DEMO_SCALE:-10}" > "$demo/role_vars.json"
echo "   ready in $(( ($(date +%s%N) - start) / 1000000 )) ms; users alation and alationadmin exist only in $root/etc/passwd"
trap '"$py" tests/support/alation_shell.py down "$root" || true' EXIT

if [ -x "$root/usr/local/bin/pg_probackup" ]; then
  engine=()
  echo "== Engine: pg_probackup (the role's default; the host's copied into the shell)"
else
  engine=(-e alation_backup_engine=pg_basebackup)
  echo "== Engine: pg_basebackup (no pg_probackup on PATH or in \$PG_PROBACKUP; PostgreSQL's own tool stands in)"
fi

cat > "$demo/inventory.yml" <<INV
alation:
  hosts:
    alation-demo:               # this machine, as an Alation host
      ansible_connection: local
      ansible_python_interpreter: $py
INV

echo "== ansible-playbook playbooks/backup.yml (role defaults; only the shell's path, the database port and become set)"
start=$(date +%s%N)
"$repo/.venv/bin/ansible-playbook" -i "$demo/inventory.yml" playbooks/backup.yml \
  -e @"$demo/role_vars.json" -e alation_backup_become=false "${engine[@]}" \
  -e alation_backup_report_path="$demo/report.json"
end=$(date +%s%N)

archive=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["archive"])' "$demo/report.json")
echo
echo "== Archive:  $archive"
echo "   size:     $(stat -c %s "$archive") bytes, mode $(stat -c %a "$archive"), owner uid $(stat -c %u "$archive") ($(awk -F: -v u="$(stat -c %u "$archive")" '$3 == u {print $1}' "$root/etc/passwd") in the shell)"
echo "   sha256:   $(cut -d' ' -f1 "$archive.sha256")"
echo "   playbook: $(( (end - start) / 1000000 )) ms; steps (s, on the host): $("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["durations_s"])' "$demo/report.json")"
echo "   top-level contents:"
tar -tzf "$archive" | awk -F/ '{print $1}' | sort | uniq -c | sed 's/^/     /'
echo "   staging dir left: $(find "$root/data2/tmp" -mindepth 1 | wc -l) entries"

echo
echo "== Restore drill on the archive just made (again any time: make demo-verify [ARCHIVE=path])"
demo/verify.sh "$archive"
