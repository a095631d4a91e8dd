# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One whole backup through the role against the same steps as a bare shell script.

One real Alation shell (tests/support/alation_shell.py) holds PostgreSQL 15
filled by ``pgbench -i -s <scale>``. In the same run this times:

- the anchor, a bare script run on the host: empty the staging dir, the
  database tool inside the shell the way the role runs it (``chroot
  --userspec=alation:alation <root> pg_probackup init / add-instance / backup
  -b FULL --stream``; pg_basebackup when the shell has no pg_probackup), then
  ``tar -c <staging dir> <pg staging dir> | pigz -<level>`` into the backup
  storage dir, then remove the pg staging dir;
- the role: ``ansible-playbook playbooks/backup.yml`` over that one host, with
  the role's defaults (a FULL backup, incremental off), through bench/playrun.py:
  its task entries (the bench_events callback) and the controller's CPU (less
  the modules', which run as its children on a local connection).

The bare script runs once untimed first (the page cache and the programs warm
for both), then the role and the bare script are timed ``--runs`` times each,
alternately; the medians are compared. Printed: the ratio role / bare, the
role's fixed overhead per host (role wall time minus the bare script's), the
task entries by kind and the controller's CPU (of the last role run); with -v
or --entries FILE the entries one by one. Nothing is asserted about times.

    .venv/bin/python bench/run_bench.py [--scale 20] [--runs 1] [-v] [--entries FILE]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'support'))

import alation_shell  # noqa: E402
import playrun  # noqa: E402
from playbook import HOST  # noqa: E402

# The role's defaults (roles/backup/defaults/main.yml) and Alation's dirs inside the shell.
LEVEL = 6
STAGING = '/data2/tmp'
STORAGE = '/data2/backup'
PG_STAGING = STORAGE + '/pgbackup'
BARE_ARCHIVE = STORAGE + '/bare.tar.gz'

BARE_PG_PROBACKUP = r'''
chroot --userspec=alation:alation "$ROOT" /usr/local/bin/pg_probackup init -B {pg_staging}
chroot --userspec=alation:alation "$ROOT" /usr/local/bin/pg_probackup add-instance -B {pg_staging} \
  -D {pgdata} --instance alation
chroot --userspec=alation:alation "$ROOT" /usr/local/bin/pg_probackup backup -B {pg_staging} --instance alation \
  -b FULL --stream --no-validate -h 127.0.0.1 -p "$PORT" -U alation -d postgres
'''
BARE_PG_BASEBACKUP = r'''
chroot --userspec=alation:alation "$ROOT" {pg_bin}/pg_basebackup -D {pg_staging} -F tar -X stream \
  -h 127.0.0.1 -p "$PORT" -U alation
'''
# The bare script in its steps (each timed): stage, database, archive, cleanup.
BARE_STAGE = r'''
find "$ROOT{staging}" -mindepth 1 -delete
install -d -o {uid} -g {gid} -m 0700 "$ROOT{pg_staging}"
'''
BARE_ARCHIVE_STEP = r'''
tar -c -C "$ROOT{data2}" tmp -C "$ROOT{storage}" pgbackup | pigz -{level} > "$ROOT{archive}"
'''
BARE_CLEANUP = r'''
find "$ROOT{staging}" -mindepth 1 -delete
rm -rf "$ROOT{pg_staging}"
'''


def log(msg):
    sys.stderr.write('run_bench: %s\n' % msg)
    sys.stderr.flush()


def bare_script(host):
    """The bare script's steps: [(name, bash text)]."""
    uid, gid = alation_shell.shell_ids(host.root, 'alation')
    database = BARE_PG_PROBACKUP if host.has_pg_probackup else BARE_PG_BASEBACKUP
    fields = dict(staging=STAGING, pg_staging=PG_STAGING, uid=uid, gid=gid, pgdata=alation_shell.PGDATA,
                  pg_bin=alation_shell.PG_BIN, data2='/data2', storage=STORAGE, level=LEVEL, archive=BARE_ARCHIVE)
    return [(name, text.format(**fields).strip()) for name, text in (
        ('stage', BARE_STAGE), ('database', database), ('archive', BARE_ARCHIVE_STEP), ('cleanup', BARE_CLEANUP))]


def time_bare(host, script):
    """Run the bare script's steps one after the other; return ({step: s, 'total': s}, archive bytes)."""
    env = dict(os.environ, ROOT=host.root, PORT=str(host.port))
    times = {}
    for name, text in script:
        t0 = time.perf_counter()
        p = subprocess.run(['bash', '-c', 'set -euo pipefail\n' + text], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        times[name] = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit('run_bench: the bare script failed at %s (%d):\n%s'
                             % (name, p.returncode, p.stdout[-3000:]))
    times['total'] = sum(times.values())
    size = os.path.getsize(host.path(BARE_ARCHIVE))
    os.unlink(host.path(BARE_ARCHIVE))
    return times, size


def time_role(host, engine, workdir):
    """One role run: (wall s, the host's record, the playrun.Play)."""
    run = playrun.play(workdir, {HOST: host.role_vars}, extra_vars={'alation_backup_engine': engine}, timeout=900)
    if run.rc != 0 or HOST not in run.records:
        raise SystemExit('run_bench: the role failed (%d):\n%s' % (run.rc, run.output[-3000:]))
    record = run.records[HOST]
    # The archive and its sidecar go: the next run then has its minute free (names have minute resolution).
    storage = os.path.dirname(record['archive'])
    for name in os.listdir(storage):
        if name.startswith(os.path.basename(record['archive'])):
            os.unlink(os.path.join(storage, name))
    return run.wall, record, run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scale', type=int, default=20, help='pgbench -i scale (20: ~300 MB of PGDATA)')
    p.add_argument('--runs', type=int, default=1, help='timed runs of each (medians compared)')
    p.add_argument('-v', '--verbose', action='store_true', help="print the role's task entries one by one")
    p.add_argument('--entries', metavar='FILE', help="write the role's task entries one by one to FILE")
    args = p.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix='alation-run-bench-')
    os.chmod(workdir, 0o755)
    root = os.path.join(workdir, 'alation')
    try:
        t0 = time.perf_counter()
        host = alation_shell.ShellHost(root, alation_shell.up(root, scale=args.scale))
        engine = 'pg_probackup' if host.has_pg_probackup else 'pg_basebackup'
        if engine != 'pg_probackup':
            print('NOTE: no pg_probackup in the shell ($PG_PROBACKUP unset, none on PATH): '
                  'pg_basebackup for both the role and the bare script')
        pgdata = int(subprocess.run(['du', '-sb', host.path(alation_shell.PGDATA)], stdout=subprocess.PIPE,
                                    universal_newlines=True, check=True).stdout.split()[0])
        log('shell up in %.0f s, PGDATA %.0f MB (scale %d)' % (time.perf_counter() - t0, pgdata / 1e6, args.scale))
        script = bare_script(host)
        time_bare(host, script)  # warm-up, untimed
        bare, role, records = [], [], []
        for i in range(args.runs):
            wall, record, run = time_role(host, engine, os.path.join(workdir, 'play%d' % i))
            role.append(wall)
            records.append(record)
            bare.append(time_bare(host, script)[0])
        bare_s, role_s = statistics.median(b['total'] for b in bare), statistics.median(role)
        bare_steps = bare[-1]
        steps = records[-1]['durations_s']
        print('== one whole backup, %s FULL, PGDATA %.0f MB (pgbench scale %d), %d CPUs, %d run(s) each'
              % (engine, pgdata / 1e6, args.scale, os.cpu_count(), args.runs))
        print('bare script (anchor): %7.2f s   steps: %s  (%s, then tar | pigz -%d)'
              % (bare_s, ', '.join('%s %.2f' % (k, bare_steps[k]) for k in ('stage', 'database', 'archive', 'cleanup')),
                 engine, LEVEL))
        print('role (ansible-playbook): %4.2f s   steps on the host: %s; the role on the host %.2f s; compressor %s'
              % (role_s, ', '.join('%s %.2f' % (k, steps[k]) for k in ('stage', 'database', 'archive', 'cleanup')
                                   if k in steps), steps.get('wall', 0), records[-1].get('compressor')))
        print('ratio role / bare: %.2f' % (role_s / bare_s))
        print("the role's fixed overhead per host: %.2f s (role wall - bare wall); of it, outside the five steps: "
              '%.2f s (role wall - the steps\' total %.2f s)' % (role_s - bare_s, role_s - steps['total'],
                                                                 steps['total']))
        print('\n== the controller\'s work (the last role run; CPU through an interpreter wrapper, bench/playrun.py)')
        for line in run.report():
            print(line)
        print("ratio controller CPU per host / bare script wall: %.2f  (the anchor's %.2f s)"
              % (run.cpu['per_host'] / bare_s, bare_s))
        listing = ['%s: %d task entries (kind, action, task; * changed)' % (HOST, len(run.entries[HOST]))]
        listing += playrun.entry_lines(run.entries[HOST])
        if args.entries:
            with open(args.entries, 'w') as f:
                f.write('\n'.join(listing) + '\n')
            print('task entries one by one: %s' % args.entries)
        if args.verbose:
            print('\n' + '\n'.join(listing))
        print('\nthe bare script, as run ($ROOT=%s, $PORT=%d):' % (host.root, host.port))
        for name, text in script:
            print('# %s\n%s' % (name, text))
    finally:
        alation_shell.down(root, purge=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
