# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet in one go: 20 Alation hosts on this machine, one ansible-playbook with forks 10.

Each host is its own real Alation shell (an overlay of the cached debootstrap
base, tests/support/alation_shell.py) with its own PostgreSQL 15 on its own
port, reached over a local connection. Before the run every host's database
gets a marker of its own (a database and a table ``fleet_marker_<nn>``).

First one host alone (a shell of its own, same data) runs the playbook: the
slowest single host. Then the fleet of ``--hosts`` runs ONE
``ansible-playbook -f <forks>``. Checked: the summary has one line a host, every
record is ok, and each host's archive holds its own marker and no other (its
manifest's ``databases``, and the whole decompressed tar stream grepped for
every marker). Printed: the summary, the fleet's wall time against the lone
host's wall time x ceil(hosts / forks), as a ratio. Times are printed, never
asserted; a failed check exits 1. Every shell is taken down at the end.

    .venv/bin/python bench/fleet_bench.py [--hosts 20] [--forks 10] [--scale 1]
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'support'))

import alation_shell  # noqa: E402
from playbook import COLLECTIONS, local_host  # noqa: E402

MARKER = 'fleet_marker_%02d'
MARKER_RE = re.compile(rb'fleet_marker_(\d\d)')
MANIFEST = 'alation_backup_manifest.json'


def log(msg):
    sys.stderr.write('fleet_bench: %s\n' % msg)
    sys.stderr.flush()


def bring_up(workdir, index, scale):
    """A shell with PostgreSQL running and this host's marker written; returns (name, ShellHost)."""
    root = os.path.join(workdir, 'host%02d' % index)
    host = alation_shell.ShellHost(root, alation_shell.up(root, scale=scale))
    marker = MARKER % index
    host.psql('CREATE DATABASE %s' % marker)
    host.psql('CREATE TABLE %s (host int); INSERT INTO %s VALUES (%d)' % (marker, marker, index))
    return 'alation-fleet-%02d' % index, host


def summary_lines(output):
    """The lines of the task 'Summary | One line a host' (its msg list)."""
    if 'Summary | One line a host' not in output:
        return []
    block = output.split('Summary | One line a host', 1)[1].split('TASK [', 1)[0]
    return re.findall(r'^\s+"(.*)",?$', block, re.M)


def play(workdir, hosts, forks):
    """One ansible-playbook over ``hosts`` (name: ShellHost); returns (wall s, rc, output, records by host)."""
    os.makedirs(workdir, exist_ok=True)
    inventory = os.path.join(workdir, 'inventory.json')
    with open(inventory, 'w') as f:
        # The root and port go per host in the inventory; the interpreter is set, never discovered.
        json.dump({'alation': {'hosts': {name: local_host(**h.role_vars) for name, h in hosts.items()}}}, f)
    report = os.path.join(workdir, 'report.json')
    variables = os.path.join(workdir, 'vars.json')
    with open(variables, 'w') as f:
        json.dump({'alation_backup_become': False, 'alation_backup_report_path': report}, f)
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory,
            os.path.join(REPO, 'playbooks', 'backup.yml'), '-e', '@' + variables, '-f', str(forks)]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCALHOST_WARNING='0')
    log('%s (%d hosts)' % (' '.join(argv[1:]), len(hosts)))
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, check=False)
    wall = time.perf_counter() - t0
    with open(os.path.join(workdir, 'output.txt'), 'w') as f:
        f.write(p.stdout)
    records = {}
    if os.path.exists(report):
        with open(report) as f:
            records = {r['host']: r for r in json.load(f)}
    return wall, p.returncode, p.stdout, records


def markers_in_archive(path):
    """(the manifest's databases, the marker numbers found anywhere in the decompressed tar stream)."""
    with tarfile.open(path, 'r:gz') as tar:
        first = tar.next()
        manifest = json.load(tar.extractfile(first)) if first is not None and first.name == MANIFEST else {}
    found = set()
    tail = b''
    with subprocess.Popen(['pigz' if shutil.which('pigz') else 'gzip', '-dc', path], stdout=subprocess.PIPE) as p:
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            # The tail of the last chunk: a marker cut in two by a chunk boundary is still found.
            found.update(int(m) for m in MARKER_RE.findall(tail + chunk))
            tail = chunk[-32:]
    return manifest.get('databases', {}), found


def check_host(name, index, host, record, problems):
    if not record or record.get('result') != 'ok':
        problems.append('%s: record %s' % (name, json.dumps(record)[:300]))
        return
    # The record's archive is the host path; archive_shell_path the path inside the shell.
    archive = record['archive']
    if not archive.startswith(host.root + '/') or not os.path.isfile(archive):
        problems.append('%s: archive %s not under its own root' % (name, archive))
        return
    databases, found = markers_in_archive(archive)
    markers = sorted(d for d in databases if d.startswith('fleet_marker_'))
    if markers != [MARKER % index]:
        problems.append('%s: manifest databases %s (expected only %s)' % (name, sorted(databases), MARKER % index))
    if found != {index}:
        problems.append('%s: markers in the archive: %s (expected only %02d)' % (name, sorted(found), index))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--hosts', type=int, default=20)
    p.add_argument('--forks', type=int, default=10)
    p.add_argument('--scale', type=int, default=1, help='pgbench -i scale of each host (0: no pgbench tables)')
    p.add_argument('--keep', action='store_true', help='keep the work dir (the shells are taken down anyway)')
    args = p.parse_args(argv)
    if args.hosts > 99:
        p.error('at most 99 hosts (two-digit markers)')
    workdir = tempfile.mkdtemp(prefix='alation-fleet-bench-')
    os.chmod(workdir, 0o755)
    shells = []
    problems = []
    try:
        alation_shell.build()
        # The lone host: the same data in a shell of its own, the only one up while it runs.
        t0 = time.perf_counter()
        solo_name, solo = bring_up(workdir, 0, args.scale)
        shells.append(solo)
        solo_wall, solo_rc, solo_out, solo_records = play(os.path.join(workdir, 'solo'), {solo_name: solo}, 1)
        if solo_rc != 0:
            raise SystemExit('fleet_bench: the lone host failed (rc %d):\n%s' % (solo_rc, solo_out[-3000:]))
        solo_total = float(solo_records[solo_name]['durations_s']['total'])
        solo_role_wall = float(solo_records[solo_name]['durations_s'].get('wall', 0))
        alation_shell.down(solo.root, purge=True)
        shells.remove(solo)

        fleet = {}
        for i in range(1, args.hosts + 1):
            name, host = bring_up(workdir, i, args.scale)
            shells.append(host)
            fleet[name] = host
        log('%d shells up in %.0f s (scale %d each)' % (args.hosts, time.perf_counter() - t0, args.scale))

        wall, rc, output, records = play(os.path.join(workdir, 'fleet'), fleet, args.forks)
        lines = summary_lines(output)
        print('== summary of the %d-host run (ansible-playbook -f %d)' % (args.hosts, args.forks))
        for line in lines:
            print(line)
        if rc != 0:
            problems.append('ansible-playbook exited %d' % rc)
        if len(lines) != args.hosts:
            problems.append('the summary has %d lines, not %d' % (len(lines), args.hosts))
        for i, (name, host) in enumerate(fleet.items(), 1):
            if not any(line.startswith('%s: OK ' % name) for line in lines):
                problems.append('%s: no OK line in the summary' % name)
            check_host(name, i, host, records.get(name), problems)
        if 'Summary | One line a host' in output and output.count('TASK [alation.backup.backup : Summary | One line') != 1:
            problems.append('more than one summary task ran')

        batches = math.ceil(args.hosts / args.forks)
        ideal = solo_wall * batches
        steps = [float(r['durations_s']['total']) for r in records.values() if r.get('durations_s')] or [0]
        walls = [float(r['durations_s'].get('wall', 0)) for r in records.values() if r.get('durations_s')] or [0]
        print()
        print('== timing (%d CPUs here; data: pgbench scale %d a host)' % (os.cpu_count(), args.scale))
        print("lone host:  ansible-playbook %6.1f s wall; the role on the host %.1f s, its five steps %.1f s"
              % (solo_wall, solo_role_wall, solo_total))
        print("fleet:      ansible-playbook %6.1f s wall for %d hosts, -f %d; the role on each host %.1f to %.1f s, "
              "its steps %.1f to %.1f s" % (wall, args.hosts, args.forks, min(walls), max(walls), min(steps), max(steps)))
        print('expected:   lone wall x ceil(%d/%d) = %.1f x %d = %.1f s'
              % (args.hosts, args.forks, solo_wall, batches, ideal))
        print('ratio:      fleet / expected = %.2f  (1.00: %d forks in parallel at no cost; %.1f s of wall a host)'
              % (wall / ideal, args.forks, wall / args.hosts))
        mixed = any('marker' in x for x in problems)
        print('archives:   each holds its own marker only: %s' % ('NO' if mixed else 'yes'))
    finally:
        for host in shells:
            alation_shell.down(host.root, purge=True)
        if args.keep:
            log('work dir kept: %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        print('\nFAILED checks:\n  ' + '\n  '.join(problems))
        return 1
    print('all checks passed: %d summary lines, %d records ok, no cross-host data' % (args.hosts, args.hosts))
    return 0


if __name__ == '__main__':
    sys.exit(main())
