# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lay out a plain directory tree that stands in for an Alation host's shell.

The real Alation shell is a chroot at /opt/alation/alation; here a plain tree
holds what the collection reads and writes there: the version file, the
alation_conf double (with its key store), /data2/tmp, /data2/backup, and a real
PostgreSQL 15 cluster at /data1/pgsql (PGDATA /data1/pgsql/data). Used by
``make demo``, the molecule scenarios and the end-to-end tests.

    python fake_alation.py up ROOT [--scale N]   # lay out + start PostgreSQL; prints vars as JSON
    python fake_alation.py down ROOT             # stop PostgreSQL
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from alation_shell import far_schedule  # noqa: E402  pylint: disable=wrong-import-position
from pgcluster import PgCluster  # noqa: E402  pylint: disable=wrong-import-position

VERSION = ('5', '17', '0', '116556')
VERSION_FILE = 'opt/alation/django/main/alation_version.py'
DOUBLE = 'usr/local/bin/alation_conf'
PG_BASE = 'data1/pgsql'


def lay_out(root, data_temp_dir='/data2/tmp', version=VERSION):
    """Create the tree (idempotent). Return the double's host path."""
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    version_path = os.path.join(root, VERSION_FILE)
    os.makedirs(os.path.dirname(version_path), exist_ok=True)
    with open(version_path, 'w') as f:
        f.write('# Written by tests/support/fake_alation.py, in the form of Alation\'s own file.\n')
        for name, value in zip(('MAJOR', 'MINOR', 'PATCH', 'BUILD'), version):
            f.write('ALATION_%s_VERSION = %s\n' % (name, value))
    double = os.path.join(root, DOUBLE)
    os.makedirs(os.path.dirname(double), exist_ok=True)
    shutil.copy2(os.path.join(HERE, 'alation_conf_double'), double)
    os.chmod(double, 0o755)
    with open(double + '.store', 'w') as f:
        # The double's store: the lines alation_conf prints; Alation's own schedule far from now.
        conf = dict(far_schedule(), **{'alation.backup.data_temp_dir': data_temp_dir})
        f.write(''.join('%s = %s\n' % item for item in sorted(conf.items())))
    for d in (data_temp_dir.lstrip('/'), 'data2/backup', PG_BASE):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    return double


def role_vars(root, cluster, double):
    """The backup role's variables for this tree (a plain tree: no chroot)."""
    return dict(
        alation_backup_root=os.path.abspath(root),
        alation_backup_use_chroot=False,
        alation_backup_alation_conf_command=double,
        alation_backup_alation_user=None,
        alation_backup_owner=None,
        alation_backup_pgdata='/' + PG_BASE + '/data',
        alation_backup_pg_os_user=cluster.os_user,
        alation_backup_pg_user=cluster.db_user,
        alation_backup_pg_host=cluster.host,
        alation_backup_pg_port=cluster.port,
        alation_backup_pg_bindir='/usr/lib/postgresql/15/bin',
    )


def up(root, scale=1):
    double = lay_out(root)
    base = os.path.join(os.path.abspath(root), PG_BASE)
    fresh = not os.path.exists(os.path.join(base, 'cluster.json'))
    cluster = PgCluster(base) if fresh else PgCluster.load(base)
    if fresh:
        cluster.init()
    cluster.start()
    if fresh and scale:
        cluster.pgbench_init(scale)
    return role_vars(root, cluster, double)


def down(root):
    base = os.path.join(os.path.abspath(root), PG_BASE)
    if os.path.exists(os.path.join(base, 'cluster.json')):
        PgCluster.load(base).stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    u = sub.add_parser('up', help='lay out ROOT and start its PostgreSQL; print the role vars as JSON')
    u.add_argument('root')
    u.add_argument('--scale', type=int, default=1, help='pgbench -i scale for a new cluster')
    d = sub.add_parser('down', help="stop ROOT's PostgreSQL")
    d.add_argument('root')
    args = p.parse_args(argv)
    if args.cmd == 'up':
        json.dump(up(args.root, args.scale), sys.stdout, indent=2)
        print()
    else:
        down(args.root)
    return 0


if __name__ == '__main__':
    sys.exit(main())
