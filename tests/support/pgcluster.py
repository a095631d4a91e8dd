# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throwaway PostgreSQL 15 cluster for tests, the benchmark and ``make demo``.

initdb refuses to run as root, so when we are root the cluster is owned by a
non-root OS user (created on first use). It listens on 127.0.0.1 only, on a
free port, with its socket inside its own directory, and allows replication
connections from loopback (pg_probackup --stream and pg_basebackup need them).

As a library: ``PgCluster(base_dir).start()`` / ``.stop()``.
As a command: ``python pgcluster.py start DIR [--scale N]`` prints the cluster
as JSON; ``python pgcluster.py stop DIR``.
"""

import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time

PG_BIN = os.environ.get('PG_BIN', '/usr/lib/postgresql/15/bin')
DEFAULT_OS_USER = 'alation_pg_test'
STATE_FILE = 'cluster.json'


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def ensure_os_user(name=DEFAULT_OS_USER):
    """The OS user that owns test clusters: ourselves unless we are root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(['useradd', '--system', '--no-create-home', '--shell', '/bin/sh', name], check=True)
    return name


def _chown_tree(path, user):
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PgCluster:
    def __init__(self, base_dir, port=None, os_user=None):
        self.base_dir = os.path.abspath(base_dir)
        self.pgdata = os.path.join(self.base_dir, 'data')
        self.socket_dir = self.base_dir
        self.os_user = os_user or ensure_os_user()
        self.port = port or free_port()
        self.host = '127.0.0.1'
        # initdb makes the OS user the superuser role.
        self.db_user = self.os_user

    # -- plumbing -----------------------------------------------------------
    def as_owner(self, argv, **kwargs):
        """Run argv as the cluster's OS user."""
        if os.geteuid() == 0 and self.os_user != 'root':
            argv = ['runuser', '-u', self.os_user, '--'] + list(argv)
        check = kwargs.pop('check', True)
        kwargs.setdefault('capture_output', True)
        kwargs.setdefault('text', True)
        return subprocess.run(argv, check=check, **kwargs)

    def bin(self, name):
        return os.path.join(PG_BIN, name)

    def conn_env(self):
        env = dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.db_user, PGDATABASE='postgres')
        return env

    def describe(self):
        return dict(base_dir=self.base_dir, pgdata=self.pgdata, host=self.host, port=self.port,
                    os_user=self.os_user, db_user=self.db_user, pg_bin=PG_BIN)

    # -- lifecycle ----------------------------------------------------------
    def init(self):
        os.makedirs(self.base_dir, exist_ok=True)
        _chown_tree(self.base_dir, self.os_user)
        os.chmod(self.base_dir, 0o755)
        self.as_owner([self.bin('initdb'), '-D', self.pgdata, '-U', self.db_user, '--auth=trust',
                       '--encoding=UTF8', '--locale=C'])
        with open(os.path.join(self.pgdata, 'postgresql.auto.conf'), 'a') as f:
            f.write("listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "wal_level = replica\n"
                    "max_wal_senders = 10\n"
                    "fsync = off\n"
                    "full_page_writes = on\n" % (self.port, self.socket_dir))
        with open(os.path.join(self.pgdata, 'pg_hba.conf'), 'w') as f:
            f.write('local all all trust\n'
                    'local replication all trust\n'
                    'host all all 127.0.0.1/32 trust\n'
                    'host replication all 127.0.0.1/32 trust\n')
        self._save()
        return self

    def start(self):
        if not os.path.exists(os.path.join(self.pgdata, 'PG_VERSION')):
            self.init()
        self.as_owner([self.bin('pg_ctl'), '-D', self.pgdata, '-l', os.path.join(self.base_dir, 'server.log'),
                       '-o', '-p %d -k %s' % (self.port, self.socket_dir), '-w', '-t', '60', 'start'])
        self._save()
        return self

    def stop(self, mode='fast'):
        if os.path.exists(os.path.join(self.pgdata, 'postmaster.pid')):
            self.as_owner([self.bin('pg_ctl'), '-D', self.pgdata, '-m', mode, '-w', 'stop'], check=False)
        return self

    def destroy(self):
        self.stop('immediate')
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def is_running(self):
        return self.as_owner([self.bin('pg_ctl'), '-D', self.pgdata, 'status'], check=False).returncode == 0

    def _save(self):
        with open(os.path.join(self.base_dir, STATE_FILE), 'w') as f:
            json.dump(self.describe(), f, indent=2)

    @classmethod
    def load(cls, base_dir):
        with open(os.path.join(base_dir, STATE_FILE)) as f:
            d = json.load(f)
        return cls(d['base_dir'], port=d['port'], os_user=d['os_user'])

    # -- data ---------------------------------------------------------------
    def psql(self, sql, dbname='postgres'):
        """Run SQL; return stdout (unaligned, tuples only)."""
        r = self.as_owner([self.bin('psql'), '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', self.host,
                           '-p', str(self.port), '-U', self.db_user, '-d', dbname, '-c', sql])
        return r.stdout.strip()

    def pgbench_init(self, scale=1, dbname='postgres'):
        self.as_owner([self.bin('pgbench'), '-i', '-q', '-s', str(scale), '-h', self.host, '-p', str(self.port),
                       '-U', self.db_user, dbname])
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.as_owner([self.bin('pg_isready'), '-h', self.host, '-p', str(self.port)],
                             check=False).returncode == 0:
                return True
            time.sleep(0.2)
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('start', help='init (if new) and start a cluster in DIR; print it as JSON')
    s.add_argument('dir')
    s.add_argument('--scale', type=int, default=0, help='pgbench -i scale to fill a new cluster with (0: none)')
    s.add_argument('--port', type=int)
    t = sub.add_parser('stop', help='stop the cluster in DIR')
    t.add_argument('dir')
    d = sub.add_parser('destroy', help='stop the cluster in DIR and remove DIR')
    d.add_argument('dir')
    args = p.parse_args(argv)
    if args.cmd == 'start':
        fresh = not os.path.exists(os.path.join(args.dir, STATE_FILE))
        c = PgCluster(args.dir, port=args.port) if fresh else PgCluster.load(args.dir)
        if fresh:
            c.init()
        c.start()
        if fresh and args.scale:
            c.pgbench_init(args.scale)
        json.dump(c.describe(), sys.stdout, indent=2)
        print()
    elif args.cmd == 'stop':
        PgCluster.load(args.dir).stop()
    else:
        if os.path.exists(os.path.join(args.dir, STATE_FILE)):
            PgCluster.load(args.dir).destroy()
    return 0


if __name__ == '__main__':
    sys.exit(main())
