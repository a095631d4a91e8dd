# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet in one go: 20 Alation hosts on this machine, one ansible-playbook with forks 10; then a mixed fleet.

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
host's wall time x ceil(hosts / forks), as a ratio, and for the lone host and
the fleet the task entries per host and the controller's CPU per host
(bench/playrun.py: the bench_events callback, and the CPU of ansible-playbook
and its workers less the modules').

Then the mixed fleet (``--no-mixed`` leaves it out, ``--mixed-only`` runs it
alone): the same hosts refilled, the small ones at ``pgbench -i -s
<--mixed-scale>`` and one (host 01) with ten times that, one ansible-playbook
again. The small hosts' scale is 10, not the fleet's 1: pg_probackup's backup
takes some 10 s whatever the data at small scales, and the big host's extra data
must outweigh that for its time to differ. Printed: each
host's record ``durations_s.wall`` (the role's time on the controller from its
start to its record), the big host's, and max(small) / big: below 1 when the
small hosts are done before the big one, 1.00 when they wait for it.

Times are printed, never asserted; a failed check exits 1. Every shell is
taken down at the end.

    .venv/bin/python bench/fleet_bench.py [--hosts 20] [--forks 10] [--scale 1] [--no-mixed | --mixed-only]
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
import playrun  # noqa: E402

MARKER = 'fleet_marker_%02d'
MARKER_RE = re.compile(rb'fleet_marker_(\d\d)')
MANIFEST = 'alation_backup_manifest.json'
SUMMARY_RE = re.compile(r'^\s+"(alation-fleet-\d\d: [A-Z]+\b.*?)",?$', re.M)


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
    """The summary's lines ("alation-fleet-NN: OK ..."), wherever the play prints them (a debug msg list)."""
    return SUMMARY_RE.findall(output)


def play(workdir, hosts, forks):
    """One ansible-playbook over ``hosts`` (name: ShellHost), -f ``forks``: a playrun.Play."""
    return playrun.play(workdir, {name: h.role_vars for name, h in hosts.items()}, forks=forks, log=log)


def drop_archives(records):
    """Remove each record's archive and its sidecars: the next run on the host starts with its minute free."""
    for record in records.values():
        archive = record.get('archive') or ''
        storage = os.path.dirname(archive)
        if archive and os.path.isdir(storage):
            for name in os.listdir(storage):
                if name.startswith(os.path.basename(archive)):
                    os.unlink(os.path.join(storage, name))


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


def check_fleet(run, fleet, hosts, problems):
    """The summary has a line a host, every record is ok and holds its own marker only."""
    lines = summary_lines(run.output)
    if run.rc != 0:
        problems.append('ansible-playbook exited %d' % run.rc)
    if len(lines) != hosts:
        problems.append('the summary has %d lines, not %d' % (len(lines), hosts))
    for i, (name, host) in enumerate(fleet.items(), 1):
        mine = [line for line in lines if line.startswith(name + ': ')]
        if len(mine) != 1 or not mine[0].startswith('%s: OK ' % name):
            problems.append('%s: summary lines %s (expected one OK line)' % (name, mine))
        check_host(name, i, host, run.records.get(name), problems)
    return lines


def durations(records, key):
    return [float(r['durations_s'].get(key, 0)) for r in records.values() if r.get('durations_s')] or [0]


def uniform(args, workdir, shells, problems):
    """The lone host, then the fleet of ``args.hosts``; returns the fleet's shells (name: ShellHost)."""
    t0 = time.perf_counter()
    solo_name, solo = bring_up(workdir, 0, args.scale)
    shells.append(solo)
    lone = play(os.path.join(workdir, 'solo'), {solo_name: solo}, 1)
    if lone.rc != 0 or solo_name not in lone.records:
        raise SystemExit('fleet_bench: the lone host failed (rc %d):\n%s' % (lone.rc, lone.output[-3000:]))
    solo_total = float(lone.records[solo_name]['durations_s']['total'])
    solo_role_wall = float(lone.records[solo_name]['durations_s'].get('wall', 0))
    alation_shell.down(solo.root, purge=True)
    shells.remove(solo)

    fleet = bring_up_fleet(workdir, args.hosts, args.scale, shells)
    log('%d shells up in %.0f s (scale %d each)' % (args.hosts, time.perf_counter() - t0, args.scale))

    run = play(os.path.join(workdir, 'fleet'), fleet, args.forks)
    lines = check_fleet(run, fleet, args.hosts, problems)
    print('== summary of the %d-host run (ansible-playbook -f %d)' % (args.hosts, args.forks))
    for line in lines:
        print(line)

    batches = math.ceil(args.hosts / args.forks)
    ideal = lone.wall * batches
    steps, walls = durations(run.records, 'total'), durations(run.records, 'wall')
    print()
    print('== timing (%d CPUs here; data: pgbench scale %d a host)' % (os.cpu_count(), args.scale))
    print("lone host:  ansible-playbook %6.1f s wall; the role on the host %.1f s, its five steps %.1f s"
          % (lone.wall, solo_role_wall, solo_total))
    print("fleet:      ansible-playbook %6.1f s wall for %d hosts, -f %d; the role on each host %.1f to %.1f s, "
          "its steps %.1f to %.1f s" % (run.wall, args.hosts, args.forks, min(walls), max(walls), min(steps), max(steps)))
    print('expected:   lone wall x ceil(%d/%d) = %.1f x %d = %.1f s'
          % (args.hosts, args.forks, lone.wall, batches, ideal))
    print('ratio:      fleet / expected = %.2f  (1.00: %d forks in parallel at no cost; %.1f s of wall a host)'
          % (run.wall / ideal, args.forks, run.wall / args.hosts))
    # Here the hosts are not machines of their own: the 20 backups and the controller share this machine's CPUs.
    print('CPUs:       %s' % playrun.busy_text(run.busy, run.wall, run.cpus))
    print('ratio:      fleet / max(expected, that floor %.1f s) = %.2f  (1.00: the fleet went as fast as this '
          "machine's CPUs let it, or as fast as the ideal; above: time lost to pacing)"
          % (run.floor, run.wall / max(ideal, run.floor)))
    mixed = any('marker' in x for x in problems)
    print('archives:   each holds its own marker only: %s' % ('NO' if mixed else 'yes'))
    print()
    print("== the controller's work (bench/playrun.py)")
    print('lone host:')
    for line in lone.report():
        print('  ' + line)
    print('fleet of %d, -f %d:' % (args.hosts, args.forks))
    for line in run.report():
        print('  ' + line)
    if lone.cpu['per_host']:
        print('ratio:      controller CPU per host, fleet / lone host = %.2f' % (run.cpu['per_host'] / lone.cpu['per_host']))
    drop_archives(run.records)
    return fleet


def bring_up_fleet(workdir, hosts, scale, shells, big_scale=None):
    """Hosts 01..``hosts`` (host 01 at ``big_scale`` when given); returns name: ShellHost."""
    fleet = {}
    for i in range(1, hosts + 1):
        name, host = bring_up(workdir, i, big_scale if big_scale and i == 1 else scale)
        shells.append(host)
        fleet[name] = host
    return fleet


def fill(host, scale):
    """Fill the host's database to pgbench ``scale`` (pgbench -i drops and recreates its tables)."""
    host.run([alation_shell.PG_BIN + '/pgbench', '-i', '-q', '-s', str(scale), '-h', '127.0.0.1', '-p', str(host.port),
              '-U', 'alation', 'postgres'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pgdata_mb(host):
    return int(subprocess.run(['du', '-sb', host.path(alation_shell.PGDATA)], stdout=subprocess.PIPE,
                              universal_newlines=True, check=True).stdout.split()[0]) / 1e6


def mixed(args, workdir, fleet, shells, problems):
    """The mixed fleet: host 01 with ``args.big_factor`` times the data of the others, one run."""
    big_scale = args.mixed_scale * args.big_factor
    t0 = time.perf_counter()
    if fleet is None:
        fleet = bring_up_fleet(workdir, args.hosts, args.mixed_scale, shells, big_scale)
    else:
        # The uniform fleet's shells, refilled: the small ones at the mixed fleet's scale, host 01 at the big one.
        for i, host in enumerate(fleet.values()):
            if i == 0 or args.mixed_scale != args.scale:
                fill(host, big_scale if i == 0 else args.mixed_scale)
    big = next(iter(fleet))
    sizes = [pgdata_mb(h) for h in fleet.values()]
    log('mixed fleet ready in %.0f s: %s at pgbench scale %d (PGDATA %.0f MB), the others at %d (%.0f MB)'
        % (time.perf_counter() - t0, big, big_scale, sizes[0], args.mixed_scale, max(sizes[1:])))
    run = play(os.path.join(workdir, 'mixed'), fleet, args.forks)
    check_fleet(run, fleet, args.hosts, problems)
    walls = {name: float(r['durations_s'].get('wall', 0)) for name, r in run.records.items() if r.get('durations_s')}
    steps = {name: float(r['durations_s'].get('total', 0)) for name, r in run.records.items() if r.get('durations_s')}
    small = [walls[n] for n in fleet if n != big and n in walls]
    print()
    print('== mixed fleet: %d hosts, -f %d; %s at pgbench scale %d (PGDATA %.0f MB), the others at %d (%.0f MB)'
          % (args.hosts, args.forks, big, big_scale, sizes[0], args.mixed_scale, max(sizes[1:])))
    print("the role's time on the controller, start to record (durations_s.wall), and its five steps (total):")
    for name in fleet:
        if name in walls:
            print('  %s %7.1f s  (steps %5.1f s)%s' % (name, walls[name], steps[name], '  <- big' if name == big else ''))
    if small and walls.get(big):
        print('small hosts: %.1f to %.1f s; big host: %.1f s; ansible-playbook %.1f s wall'
              % (min(small), max(small), walls[big], run.wall))
        print('ratio:      max(small) / big = %.2f  (1.00: the small hosts waited for the big one; '
              'near 0: done long before it)' % (max(small) / walls[big]))
        print('CPUs:       %s' % playrun.busy_text(run.busy, run.wall, run.cpus))
    small_steps = [steps[n] for n in fleet if n != big and n in steps] or [0]
    print("the five steps on the host: the big one's %.1f s, the small ones' %.1f to %.1f s"
          % (steps.get(big, 0), min(small_steps), max(small_steps)))
    for line in run.report():
        print('  ' + line)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--hosts', type=int, default=20)
    p.add_argument('--forks', type=int, default=10)
    p.add_argument('--scale', type=int, default=1, help='pgbench -i scale of each host (0: no pgbench tables)')
    # pg_probackup's backup costs ~10 s whatever the data at small scales: the big host's data must outweigh that.
    p.add_argument('--mixed-scale', type=int, default=10, help="the mixed fleet: the small hosts' pgbench scale")
    p.add_argument('--big-factor', type=int, default=10, help="the mixed fleet: host 01 has this times their scale")
    group = p.add_mutually_exclusive_group()
    group.add_argument('--no-mixed', action='store_true', help='leave the mixed fleet out')
    group.add_argument('--mixed-only', action='store_true', help='only the mixed fleet')
    p.add_argument('--keep', action='store_true', help='keep the work dir (the shells are taken down anyway)')
    args = p.parse_args(argv)
    if args.hosts > 99:
        p.error('at most 99 hosts (two-digit markers)')
    if not args.no_mixed and (args.hosts < 2 or args.mixed_scale < 1 or args.big_factor < 2):
        p.error('the mixed fleet needs at least 2 hosts, --mixed-scale 1 or more and --big-factor 2 or more '
                '(or --no-mixed)')
    workdir = tempfile.mkdtemp(prefix='alation-fleet-bench-')
    os.chmod(workdir, 0o755)
    shells = []
    problems = []
    try:
        alation_shell.build()
        fleet = None if args.mixed_only else uniform(args, workdir, shells, problems)
        if not args.no_mixed:
            mixed(args, workdir, fleet, shells, problems)
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
    print('\nall checks passed: the summary has a line a host, every record is ok, no cross-host data')
    return 0


if __name__ == '__main__':
    sys.exit(main())
