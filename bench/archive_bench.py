# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How fast the archive module packs a realistic Alation backup, against GNU tar and pigz.

Builds (once, cached under .bench/) a stopped PostgreSQL 15 data directory
filled by ``pgbench -i`` (~1 GB), 20,000 small text/JSON/HTML files and
~14 MB of already-compressed files; then, on the same data in one run, times
GNU ``tar -czf`` (the anchor), ``tar | pigz`` at levels 6 and 1, the I/O
floor, and the archive module itself (run for real in its own process) with
every compressor this host has. Each method gets one warm-up and ``--runs``
timed runs; peak RSS comes from ``/usr/bin/time -v`` (else wait4's
ru_maxrss). Targets are printed as PASS/FAIL lines; nothing here is asserted
by the test suite.

    .venv/bin/python bench/archive_bench.py [--quick] [--runs N]
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
sys.path.insert(0, HERE)
sys.path.insert(0, COLLECTIONS)

import benchdata  # noqa: E402
from ansible_collections.alation.backup.plugins.module_utils import _gzip  # noqa: E402
from ansible_collections.alation.backup.plugins.module_utils._runner import join_argv  # noqa: E402

GNU_TIME = '/usr/bin/time'
MB = 1e6
ANCHOR = 'tar -czf'
TS = '202401010000'

# Python read loop for the I/O floor: every file of the sources, 1 MiB reads.
READ_LOOP = r'''
import os, sys
buf = bytearray(1 << 20)
for top in sys.argv[1:]:
    for d, _, files in os.walk(top):
        for n in files:
            p = os.path.join(d, n)
            if os.path.islink(p):
                continue
            with open(p, 'rb', buffering=0) as f:
                while f.readinto(buf):
                    pass
'''


def run_measured(argv, env=None):
    """Run argv; return (wall s, peak RSS bytes, CPU s). Fails loudly on a non-zero exit."""
    if os.access(GNU_TIME, os.X_OK):
        fd, tfile = tempfile.mkstemp(prefix='bench-time-')
        os.close(fd)
        t0 = time.perf_counter()
        p = subprocess.run([GNU_TIME, '-v', '-o', tfile] + argv, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - t0
        with open(tfile) as f:
            report = f.read()
        os.unlink(tfile)
        if p.returncode != 0:
            raise SystemExit('failed (%d): %s\n%s\n%s'
                             % (p.returncode, join_argv(argv), p.stdout[-2000:], p.stderr[-2000:]))
        rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', report).group(1)) * 1024
        cpu = sum(float(re.search(r'%s time \(seconds\): ([\d.]+)' % k, report).group(1)) for k in ('User', 'System'))
        return wall, rss, cpu, p.stdout
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    status, usage = os.wait4(proc.pid, 0)[1:]
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit('failed: %s\n%s' % (join_argv(argv), out[-2000:]))
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, out


class Method(object):
    def __init__(self, name, argv, output=None, env=None, module=False):
        self.name, self.argv, self.output, self.env, self.module = name, argv, output, env, module
        self.walls, self.rss, self.cpu, self.size, self.note = [], 0, [], None, ''

    def once(self, timed):
        wall, rss, cpu, out = run_measured(self.argv, self.env)
        if self.module:
            result = json.loads(out[out.index(b'{'):])
            if result.get('failed'):
                raise SystemExit('%s failed: %s' % (self.name, result.get('msg')))
            self.size = result['size']
            self.note = '%s level %d' % (result['compressor'], result['compression_level'])
            for p in (result['path'], result['sha256_path']):
                os.unlink(p)
        elif self.output:
            self.size = os.path.getsize(self.output)
            os.unlink(self.output)
        if timed:
            self.walls.append(wall)
            self.cpu.append(cpu)
            self.rss = max(self.rss, rss)

    @property
    def median(self):
        return statistics.median(self.walls)


def shell(cmd):
    return ['bash', '-o', 'pipefail', '-c', cmd]


def methods(data, out_dir, threads):
    (pg, staging) = (s['path'] for s in data['sources'])
    tar_in = '-C %s %s -C %s %s' % (shlex.quote(os.path.dirname(pg)), shlex.quote(os.path.basename(pg)),
                                    shlex.quote(os.path.dirname(staging)), shlex.quote(os.path.basename(staging)))
    out = os.path.join(out_dir, 'out.tar.gz')
    ms = [
        Method('read all files (python, 1 MiB reads)', [sys.executable, '-c', READ_LOOP, pg, staging]),
        Method('tar -cf - | cat > /dev/null', shell('tar -cf - %s | cat > /dev/null' % tar_in)),
        Method(ANCHOR, shell('tar -czf %s %s' % (out, tar_in)), out),
        Method('tar -cf - | pigz -p %d -6' % threads, shell('tar -cf - %s | pigz -p %d -6 > %s' % (tar_in, threads, out)),
               out),
        Method('tar -cf - | pigz -p %d -1' % threads, shell('tar -cf - %s | pigz -p %d -1 > %s' % (tar_in, threads, out)),
               out),
    ]
    if shutil.which('igzip'):
        ms.append(Method('tar -cf - | igzip -2 -T %d' % threads,
                         shell('tar -cf - %s | igzip -2 -T %d -c > %s' % (tar_in, threads, out)), out))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    available = _gzip.available_compressors()
    for compressor in ('auto',) + _gzip.COMPRESSORS:
        if compressor != 'auto' and not available[compressor]:
            print('module compressor=%s: not available here, skipped (%s)'
                  % (compressor, _gzip.INSTALL_HINTS[compressor]))
            continue
        args = dict(sources=data['sources'], dest=out_dir, version_tag='5-17-0-116556', timestamp=TS,
                    compressor=compressor, _ansible_remote_tmp=tempfile.gettempdir())
        fd, args_file = tempfile.mkstemp(prefix='bench-args-', suffix='.json', dir=out_dir)
        with os.fdopen(fd, 'w') as f:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, f)
        ms.append(Method('module compressor=%s' % compressor,
                         [sys.executable, '-m', 'ansible_collections.alation.backup.plugins.modules.archive',
                          args_file], env=env, module=True))
    return ms


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='a ~150 MB data set instead of ~1.35 GB')
    p.add_argument('--runs', type=int, default=3, help='timed runs per method (after one warm-up)')
    args = p.parse_args(argv)
    if not os.path.isdir(COLLECTIONS):
        raise SystemExit('run `make collection` first (the module is imported from %s)' % COLLECTIONS)
    size = 'quick' if args.quick else 'full'
    data = benchdata.build(os.path.join(REPO, '.bench', size), size)
    out_dir = os.path.join(REPO, '.bench', 'out')
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    threads = _gzip.default_threads()
    total = data['bytes']
    print('data set: %s, %.0f MB in %d entries (pgbench data dir + small files + compressed files); %d CPUs; '
          'memory measured with %s; 1 warm-up + %d runs each; MB = 10^6 bytes'
          % (size, total / MB, data['entries'], threads,
             '/usr/bin/time -v' if os.access(GNU_TIME, os.X_OK) else 'wait4 ru_maxrss', args.runs))
    ms = methods(data, out_dir, threads)
    for m in ms:
        sys.stdout.write('  %-40s' % m.name)
        sys.stdout.flush()
        for i in range(args.runs + 1):
            m.once(timed=i > 0)
        print(' %6.2f s median' % m.median)
    anchor = next(m for m in ms if m.name == ANCHOR)

    print()
    print('| method | wall s min/med | MB/s | CPU s | peak RSS MB | out MB | speed vs tar -czf | size vs tar -czf |')
    print('|---|---|---|---|---|---|---|---|')
    for m in ms:
        speed = anchor.median / m.median
        print('| %s | %.2f/%.2f | %.0f | %.1f | %.0f | %s | %s | %s |' % (
            m.name + (' (%s)' % m.note if m.note else ''), min(m.walls), m.median, total / m.median / MB,
            statistics.median(m.cpu), m.rss / MB, '%.1f' % (m.size / MB) if m.size else '–',
            '%.1fx' % speed if m.size else '–', '%.3fx' % (m.size / anchor.size) if m.size else '–'))

    print()
    by = {m.name: m for m in ms}

    def target(label, method, min_speed=None, max_size=None, size_within=None):
        m = by.get(method)
        if m is None:
            print('SKIP  %s: %s did not run here' % (label, method))
            return
        speed, size = anchor.median / m.median, m.size / anchor.size
        ok = (min_speed is None or speed >= min_speed) and (max_size is None or size <= max_size) and \
            (size_within is None or abs(size - 1) <= size_within)
        print('%s  %s: %.1fx tar -czf, %.3fx its size' % ('PASS' if ok else 'FAIL', label, speed, size))

    if _gzip.available_compressors()['isal']:
        target('default settings with ISA-L >= 8x tar -czf, size <= 1.10x', 'module compressor=auto', 8, 1.10)
    else:
        print('SKIP  default settings with ISA-L: the isal package is not importable here')
    target('pigz path >= 2.2x tar -czf at level 6, size within 2%', 'module compressor=pigz', 2.2, size_within=0.02)
    target('stdlib-only (zlib) path >= 1.1x tar -czf', 'module compressor=zlib', 1.1)
    worst = max((m for m in ms if m.module), key=lambda m: m.rss)
    print('%s  peak RSS <= 100 MB on every module path: worst %.0f MB (%s)'
          % ('PASS' if worst.rss <= 100 * MB else 'FAIL', worst.rss / MB, worst.name))
    shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
