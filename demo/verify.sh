#!/usr/bin/env bash
# make demo-verify [ARCHIVE=path]: the restore drill (playbooks/verify_backup.yml)
# on an archive of the demo's Alation shell in .demo/, the newest when none is
# named, with the restore role's defaults (only the shell's path set). Prints
# the verdict; exits non-zero when the drill fails. The drill starts its own
# temporary PostgreSQL from the archive, inside the shell.
# make demo-offsite runs it on its own setup: DEMO_DIR (default .demo) and
# DRILL_VARS, a file of more variables for the drill (the decryption key).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
demo=${DEMO_DIR:-$repo/.demo}
py=$repo/.venv/bin/python

if [ ! -f "$demo/role_vars.json" ] || [ ! -f "$demo/inventory.yml" ]; then
  echo "no demo setup in $demo: run make demo first" >&2
  exit 2
fi
root=$demo/alation
"$py" tests/support/alation_shell.py up "$root" > "$demo/role_vars.json"
trap '"$py" tests/support/alation_shell.py down "$root" || true' EXIT
"$py" tests/support/restoring.py restore-vars "$demo/role_vars.json" > "$demo/restore_vars.json"

archive=${1:-}
if [[ "$archive" == */* ]]; then
  archive=$(realpath -e "$archive")   # a host path; a bare name is looked up in the backup storage dir
fi
report=$demo/drill_report.json
rm -f "$report"

echo "== ansible-playbook playbooks/verify_backup.yml (${archive:-the newest archive})"
rc=0
start=$(date +%s%N)
"$repo/.venv/bin/ansible-playbook" -i "$demo/inventory.yml" playbooks/verify_backup.yml \
  -e @"$demo/restore_vars.json" ${DRILL_VARS:+-e @"$DRILL_VARS"} -e alation_restore_report_path="$report" \
  ${archive:+-e alation_restore_archive="$archive"} || rc=$?
end=$(date +%s%N)

if [ ! -f "$report" ]; then
  echo "== Drill verdict: FAILED before it could report (exit $rc)"
  exit $(( rc == 0 ? 1 : rc ))
fi
"$py" - "$report" "$(( (end - start) / 1000000 ))" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))[0]
print()
print('== Drill verdict: %s  %s' % (record['result'].upper(), record['archive']))
if record['engine']:
    print('   engine %s, backup %s %s, taken %s' % (record['engine'], record['backup_mode'], record['backup_id'],
                                                      record['backed_up_utc']))
order = ['sha256', 'extract', 'rebuild', 'files', 'consistent', 'databases', 'amcheck', 'table_counts']
for name, check in sorted(record['checks'].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
    print('   %-13s %-8s %s' % (name, check['result'], check['detail']))
print('   tables recorded at backup time: %s' % record['databases_recorded'])
steps = ['find', 'sha256', 'extract', 'rebuild', 'server', 'check', 'cleanup']
print('   drill: %s s in the role, %s ms for the whole playbook; steps (s): %s' % (
    record['duration_s'], sys.argv[2],
    ', '.join('%s %s' % (s, record['durations_s'][s]) for s in steps if s in record['durations_s'])))
if record['error']:
    print('   error: %s' % record['error'])
PY
exit "$rc"
