# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's data set: what an Alation backup packs, at realistic size.

A stopped PostgreSQL 15 data directory filled by ``pgbench -i`` (the pg staging
dir), plus many small text/JSON/HTML files and some already-compressed files
(the staging dir). Built once under ``.bench/<size>/`` and reused: building the
full set takes a few minutes, mostly pgbench.
"""

import gzip
import json
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'support'))

from pgcluster import PgCluster  # noqa: E402

SIZES = {
    # pgbench scale 62 is ~1 GB of data directory.
    'full': dict(scale=62, small_files=20000, compressed_mb=14),
    'quick': dict(scale=3, small_files=2000, compressed_mb=2),
}
READY = 'READY.json'

WORDS = ('catalog article schema table column query steward glossary lineage policy data source '
         'domain owner trust flag endorsement deprecation warning conversation mention user group '
         'search index popularity join filter certified report dashboard metric customer order '
         'invoice revenue region product warehouse snowflake redshift postgres oracle hive tableau '
         'the a of to and in is for on with by as at from this that be are was it not or').split()


def _text_pool(rng, size):
    """Word soup with numbers and ids: compresses like real catalog text (about 3-4x)."""
    out = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.08:
            w = '%08x-%04x' % (rng.getrandbits(32), rng.getrandbits(16))
        elif r < 0.18:
            w = str(rng.randint(0, 10 ** rng.randint(1, 7)))
        else:
            w = rng.choice(WORDS)
            if rng.random() < 0.1:
                w = w.capitalize()
        out.append(w)
        n += len(w) + 1
    return ' '.join(out)


def _small_file(rng, pool, i):
    size = rng.randint(1024, 20 * 1024)
    start = rng.randrange(0, len(pool) - size)
    text = pool[start:start + size]
    kind = i % 3
    if kind == 0:
        records = []
        n = 0
        while n < size:
            rec = dict(id=rng.getrandbits(40), name=text[n:n + 40], updated='2024-%02d-%02dT%02d:%02d:00Z' % (
                rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59)),
                score=round(rng.random() * 100, 3), description=text[n + 40:n + 400])
            records.append(rec)
            n += 400
        return 'json', json.dumps(records, indent=1).encode()
    if kind == 1:
        paras = ''.join('<p class="body">%s</p>\n' % text[j:j + 300] for j in range(0, size, 300))
        return 'html', ('<!DOCTYPE html>\n<html><head><title>%s</title></head>\n<body>\n%s</body></html>\n'
                        % (text[:60], paras)).encode()
    return 'txt', '\n'.join(text[j:j + 100] for j in range(0, size, 100)).encode()


def build(root, size='full', log=print):
    """Build (or reuse) the data set under ``root``; return its description."""
    ready = os.path.join(root, READY)
    if os.path.exists(ready):
        with open(ready) as f:
            return json.load(f)
    spec = SIZES[size]
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    os.chmod(root, 0o755)
    rng = random.Random(20240501)
    t0 = time.time()

    log('building %s data set in %s: pgbench -i -s %d ...' % (size, root, spec['scale']))
    cluster = PgCluster(os.path.join(root, 'pg')).start()
    try:
        # Keep pg_wal near its usual size (not the 1 GB pgbench -i leaves behind).
        cluster.psql("ALTER SYSTEM SET max_wal_size = '96MB'")
        cluster.psql("ALTER SYSTEM SET min_wal_size = '64MB'")
        cluster.psql('SELECT pg_reload_conf()')
        cluster.pgbench_init(scale=spec['scale'])
        cluster.psql('CHECKPOINT')
        cluster.psql('CHECKPOINT')
    finally:
        cluster.stop()

    staging = os.path.join(root, 'staging')
    log('writing %d small files ...' % spec['small_files'])
    pool = _text_pool(rng, 4 * 1024 * 1024)
    for i in range(spec['small_files']):
        d = os.path.join(staging, 'catalog', 'part%03d' % (i // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        ext, data = _small_file(rng, pool, i)
        with open(os.path.join(d, 'object_%05d.%s' % (i, ext)), 'wb') as f:
            f.write(data)

    log('writing %d MB of already-compressed files ...' % spec['compressed_mb'])
    cdir = os.path.join(staging, 'uploads')
    os.makedirs(cdir)
    written = 0
    i = 0
    while written < spec['compressed_mb'] * 1024 * 1024:
        start = rng.randrange(0, len(pool) - 2 * 1024 * 1024)
        blob = gzip.compress(pool[start:start + rng.randint(1, 2) * 1024 * 1024].encode(), 9, mtime=0)
        name = os.path.join(cdir, 'export_%03d.json.gz' % i)
        with open(name, 'wb') as f:
            f.write(blob)
        written += len(blob)
        i += 1
    os.symlink('uploads/export_000.json.gz', os.path.join(staging, 'latest_export.json.gz'))

    desc = dict(size=size, sources=[dict(path=cluster.pgdata, arcname='pgbackup'),
                                    dict(path=staging, arcname='tmp')],
                built_s=round(time.time() - t0, 1))
    total = entries = 0
    for src in desc['sources']:
        for dirpath, dirnames, filenames in os.walk(src['path']):
            entries += 1 + len(filenames)
            total += sum(os.lstat(os.path.join(dirpath, n)).st_size for n in filenames)
    desc.update(bytes=total, entries=entries)
    with open(ready, 'w') as f:
        json.dump(desc, f, indent=2)
    log('data set ready: %.0f MB, %d entries, built in %.0f s' % (total / 1e6, entries, desc['built_s']))
    return desc


if __name__ == '__main__':
    which = sys.argv[1] if len(sys.argv) > 1 else 'full'
    print(json.dumps(build(os.path.join(REPO, '.bench', which), which), indent=2))
