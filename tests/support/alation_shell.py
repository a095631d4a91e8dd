# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Alation shell to test against: a Debian 12 chroot with users and PostgreSQL of its own.

On an Alation host the shell is a chroot at /opt/alation/alation with its own
OS: its users ``alation`` (owns PostgreSQL) and ``alationadmin`` exist in the
shell's /etc/passwd, not necessarily on the host, and PostgreSQL,
pg_probackup and alation_conf run inside it. This builds such a shell:

- a base, built once with ``debootstrap --variant=minbase bookworm`` plus
  PostgreSQL 15, with ``alation`` and ``alationadmin`` created inside it only,
  under uids the host does not have; cached (``$ALATION_SHELL_CACHE``, default
  /var/cache/alation-backup-test) and rebuilt when its recipe changes;
- for each use, an overlay of the base at ROOT (so every test session starts
  from the same clean shell), with Alation's version file, the alation_conf
  double at /usr/local/bin/alation_conf (the one double: it stands in for
  Alation's own command), /data2/tmp and /data2/backup owned as on a real host,
  the host's pg_probackup copied in when there is one, and PostgreSQL 15
  initialised at /data1/pgsql/data and started inside the shell as ``alation``
  on a free loopback port.

    python alation_shell.py build               # the cached base (~65 s fresh, nothing when cached)
    python alation_shell.py up ROOT [--scale N] # the shell at ROOT, PostgreSQL running; prints role vars as JSON
                                                # (again on a shell that is up: the same vars)
    python alation_shell.py down ROOT [--purge] # stop PostgreSQL, unmount (--purge: forget the shell's changes)
"""

import argparse
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SUITE = 'bookworm'
MIRROR = os.environ.get('ALATION_SHELL_MIRROR', 'http://deb.debian.org/debian')
PACKAGES = ('postgresql-15',)
# Users of the shell only: uids and gids no Debian host hands out by itself.
USERS = (('alation', 4501), ('alationadmin', 4502))
PG_BIN = '/usr/lib/postgresql/15/bin'
PGDATA = '/data1/pgsql/data'
PG_LOG = '/data1/pgsql/server.log'
VERSION = ('5', '17', '0', '116556')
VERSION_FILE = '/opt/alation/django/main/alation_version.py'
CONF = '/usr/local/bin/alation_conf'
# Changing any of these builds a new base.
RECIPE = dict(format=1, suite=SUITE, packages=PACKAGES, users=USERS)
CACHE = os.environ.get('ALATION_SHELL_CACHE', '/var/cache/alation-backup-test')


def log(msg):
    sys.stderr.write('alation_shell: %s\n' % msg)
    sys.stderr.flush()


def run(argv, **kwargs):
    kwargs.setdefault('check', True)
    try:
        # check is in kwargs (set above).
        return subprocess.run(argv, **kwargs)  # pylint: disable=subprocess-run-check
    except subprocess.CalledProcessError as e:
        raise SystemExit('alation_shell: %s exited %d%s' % (' '.join(argv), e.returncode, (
            '; see %s' % kwargs['stdout'].name) if hasattr(kwargs.get('stdout'), 'name') else ''))


def recipe_id():
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def base_path():
    return os.path.join(CACHE, 'shell-%s' % recipe_id())


def host_has_ids():
    """The shell's uids that the host also has (they must not: the tests prove lookups go to the shell)."""
    taken = []
    for name, uid in USERS:
        try:
            taken.append('%d (%s on the host)' % (uid, pwd.getpwuid(uid).pw_name))
        except KeyError:
            pass
    return taken


def build():
    """The path of the cached base, built first when missing or stale."""
    base = base_path()
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, '.build.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(base, '.alation_shell_complete')):
            return base
        taken = host_has_ids()
        if taken:
            raise SystemExit('alation_shell: the host has uid %s; the shell users must exist only in the shell: '
                             'change USERS in %s' % (', '.join(taken), __file__))
        started = time.monotonic()
        tmp = '%s.tmp-%d' % (base, os.getpid())
        shutil.rmtree(tmp, ignore_errors=True)
        log('building the Alation shell base in %s (debootstrap %s, then %s)' % (base, SUITE, ' '.join(PACKAGES)))
        build_log = open(os.path.join(CACHE, 'build.log'), 'w')
        quiet = dict(stdout=build_log, stderr=subprocess.STDOUT)
        run(['debootstrap', '--variant=minbase', SUITE, tmp, MIRROR], **quiet)
        # No cluster of Debian's own, and no service started by a package inside the chroot.
        os.makedirs(os.path.join(tmp, 'etc/postgresql-common/createcluster.d'), exist_ok=True)
        with open(os.path.join(tmp, 'etc/postgresql-common/createcluster.d/alation-shell.conf'), 'w') as f:
            f.write('create_main_cluster = false\n')
        with open(os.path.join(tmp, 'usr/sbin/policy-rc.d'), 'w') as f:
            f.write('#!/bin/sh\nexit 101\n')
        os.chmod(os.path.join(tmp, 'usr/sbin/policy-rc.d'), 0o755)
        shutil.copy('/etc/resolv.conf', os.path.join(tmp, 'etc/resolv.conf'))
        # /proc only while apt runs, in a mount namespace of its own: nothing is left mounted.
        script = ('mount -t proc proc %s/proc && DEBIAN_FRONTEND=noninteractive chroot %s apt-get install -y -q '
                  '--no-install-recommends %s && chroot %s apt-get clean'
                  % (tmp, tmp, ' '.join(PACKAGES), tmp))
        run(['unshare', '--mount', '--propagation', 'private', 'sh', '-ec', script], **quiet)
        for name, uid in USERS:
            run(['chroot', tmp, 'groupadd', '-g', str(uid), name], **quiet)
            run(['chroot', tmp, 'useradd', '-u', str(uid), '-g', str(uid), '-m', '-s', '/bin/bash', name], **quiet)
        build_log.close()
        with open(os.path.join(tmp, '.alation_shell_complete'), 'w') as f:
            json.dump(dict(RECIPE, built=time.time()), f)
        os.rename(tmp, base)
        log('built in %.0f s' % (time.monotonic() - started))
        return base


# -- one shell at ROOT ------------------------------------------------------------

def _state_dir(root):
    return os.path.abspath(root).rstrip('/') + '.overlay'


def _mounted(path):
    with open('/proc/self/mountinfo') as f:
        return any(line.split(' ')[4] == path for line in f)


def in_shell(root, user, argv, **kwargs):
    """Run argv inside the shell at ROOT as one of its users (resolved in the shell's passwd)."""
    return run(['chroot', '--userspec=%s:%s' % (user, user), root] + list(argv), **kwargs)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def find_pg_probackup():
    explicit = os.environ.get('PG_PROBACKUP')
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which('pg_probackup') or shutil.which('pg_probackup-15')


def shell_ids(root, name):
    with open(os.path.join(root, 'etc/passwd')) as f:
        for line in f:
            fields = line.split(':')
            if fields[0] == name:
                return int(fields[2]), int(fields[3])
    raise KeyError(name)


def far_schedule():
    """Alation's own backup schedule (alation_conf keys) for a test shell: daily, 12 hours from now (UTC).

    Far outside the backup role's alation_backup_alation_schedule_margin whenever
    a test runs; the schedule's own tests write theirs.
    """
    return {'alation.backup.scheduled_minute': '2',
            'alation.backup.scheduled_hour': str((time.gmtime().tm_hour + 12) % 24),
            'alation.backup.scheduled_day': '*'}


def lay_out(root, data_temp_dir='/data2/tmp'):
    """Alation's files in the shell: version file, the alation_conf double and its store, the data dirs."""
    def host(path):
        return os.path.join(root, path.lstrip('/'))

    os.makedirs(os.path.dirname(host(VERSION_FILE)), exist_ok=True)
    with open(host(VERSION_FILE), 'w') as f:
        f.write("# Written by tests/support/alation_shell.py, in the form of Alation's own file.\n")
        for name, value in zip(('MAJOR', 'MINOR', 'PATCH', 'BUILD'), VERSION):
            f.write('ALATION_%s_VERSION = %s\n' % (name, value))
    shutil.copy2(os.path.join(HERE, 'alation_conf_double'), host(CONF))
    os.chmod(host(CONF), 0o755)
    with open(host(CONF) + '.store', 'w') as f:
        conf = dict(far_schedule(), **{'alation.backup.data_temp_dir': data_temp_dir})
        f.write(''.join('%s = %s\n' % item for item in sorted(conf.items())))
    admin = shell_ids(root, 'alationadmin')
    owner = shell_ids(root, 'alation')
    for path, ids, mode in ((data_temp_dir, admin, 0o700), ('/data2/backup', admin, 0o755),
                            ('/data1/pgsql', owner, 0o700)):
        os.makedirs(host(path), exist_ok=True)
        os.chown(host(path), *ids)
        os.chmod(host(path), mode)
    # The double's store is rewritten by alationadmin with alation_conf -s.
    os.chown(host(CONF) + '.store', *admin)
    os.chown(os.path.dirname(host(CONF)), *admin)
    probackup = find_pg_probackup()
    if probackup:
        shutil.copy2(probackup, host('/usr/local/bin/pg_probackup'))
    return probackup


def start_postgres(root, port, scale):
    def host(path):
        return os.path.join(root, path.lstrip('/'))

    if not os.path.exists(host(PGDATA + '/PG_VERSION')):
        in_shell(root, 'alation', [PG_BIN + '/initdb', '-D', PGDATA, '-U', 'alation', '--auth=trust',
                                   '--encoding=UTF8', '--locale=C'], stdout=subprocess.DEVNULL)
        with open(host(PGDATA + '/pg_hba.conf'), 'w') as f:
            # Alation's database user may connect over loopback, replication included
            # (pg_probackup --stream and pg_basebackup need it).
            f.write('local all all trust\n'
                    'host all all 127.0.0.1/32 trust\n'
                    'local replication alation trust\n'
                    'host replication alation 127.0.0.1/32 trust\n')
    with open(host(PGDATA + '/postgresql.auto.conf'), 'w') as f:
        f.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '/tmp'\n"
                "wal_level = replica\nmax_wal_senders = 10\nfsync = off\n" % port)
    in_shell(root, 'alation', [PG_BIN + '/pg_ctl', '-D', PGDATA, '-l', PG_LOG, '-w', '-t', '60', 'start'],
             stdout=subprocess.DEVNULL)
    if scale:
        in_shell(root, 'alation', [PG_BIN + '/pgbench', '-i', '-q', '-s', str(scale), '-h', '127.0.0.1',
                                   '-p', str(port), '-U', 'alation', 'postgres'],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def role_vars(root, port):
    """What the roles need besides their defaults: where the shell is and the database port."""
    return dict(alation_backup_root=root, alation_backup_pg_port=port,
                alation_restore_root=root)


def up(root, scale=1):
    """The shell at ROOT (an overlay of the base), PostgreSQL running inside it. Returns the role vars."""
    root = os.path.abspath(root)
    base = build()
    state = _state_dir(root)
    state_file = os.path.join(state, 'state.json')
    if not _mounted(root):
        for d in ('upper', 'work'):
            os.makedirs(os.path.join(state, d), exist_ok=True)
        os.makedirs(root, exist_ok=True)
        run(['mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=%s,upperdir=%s,workdir=%s'
             % (base, os.path.join(state, 'upper'), os.path.join(state, 'work')), root])
    fresh = not os.path.exists(state_file)
    if fresh:
        lay_out(root)
    running = not fresh and subprocess.run(
        ['chroot', '--userspec=alation:alation', root, PG_BIN + '/pg_ctl', '-D', PGDATA, 'status'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0
    if running:
        with open(state_file) as f:
            port = json.load(f)['port']
    else:
        port = free_port()
        start_postgres(root, port, scale if fresh else 0)
    info = dict(root=root, port=port, base=base, pg_probackup=os.path.exists(
        os.path.join(root, 'usr/local/bin/pg_probackup')))
    with open(state_file, 'w') as f:
        json.dump(info, f)
    return role_vars(root, port)


def stop_postgres(root):
    if os.path.exists(os.path.join(root, PGDATA.lstrip('/'), 'postmaster.pid')):
        in_shell(root, 'alation', [PG_BIN + '/pg_ctl', '-D', PGDATA, '-m', 'fast', '-w', 'stop'],
                 check=False, stdout=subprocess.DEVNULL)


def down(root, purge=False):
    root = os.path.abspath(root)
    if _mounted(root):
        stop_postgres(root)
        run(['umount', root])
    if purge:
        shutil.rmtree(_state_dir(root), ignore_errors=True)
        if os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)


class ShellHost(object):
    """A shell brought up by ``up``, for tests: its root, the role vars, and PostgreSQL inside it."""

    def __init__(self, root, role_vars):
        self.root = os.path.abspath(root)
        self.role_vars = role_vars
        self.port = role_vars['alation_backup_pg_port']

    def path(self, shell_path):
        return os.path.join(self.root, shell_path.lstrip('/'))

    def run(self, argv, user='alation', **kwargs):
        kwargs.setdefault('stdout', subprocess.PIPE)
        kwargs.setdefault('stderr', subprocess.PIPE)
        kwargs.setdefault('universal_newlines', True)
        return in_shell(self.root, user, argv, **kwargs)

    def psql(self, sql, dbname='postgres'):
        return self.run([PG_BIN + '/psql', '-X', '-A', '-t', '-h', '127.0.0.1', '-p', str(self.port), '-U', 'alation',
                         '-d', dbname, '-c', sql]).stdout.strip()

    def stop_postgres(self):
        stop_postgres(self.root)

    def start_postgres(self):
        start_postgres(self.root, self.port, 0)

    def is_running(self):
        return self.run([PG_BIN + '/pg_ctl', '-D', PGDATA, 'status'], check=False).returncode == 0

    def user_name(self, uid):
        """The shell's name for ``uid`` ('' when it has none)."""
        with open(self.path('/etc/passwd')) as f:
            for line in f:
                fields = line.split(':')
                if len(fields) > 2 and fields[2] == str(uid):
                    return fields[0]
        return ''

    @property
    def has_pg_probackup(self):
        return os.path.exists(self.path('/usr/local/bin/pg_probackup'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    sub.add_parser('build', help='build the cached base (nothing when it is there)')
    u = sub.add_parser('up', help='the shell at ROOT with PostgreSQL running; print the role vars as JSON')
    u.add_argument('root')
    u.add_argument('--scale', type=int, default=1, help='pgbench -i scale for a new cluster')
    d = sub.add_parser('down', help='stop PostgreSQL and unmount ROOT')
    d.add_argument('root')
    d.add_argument('--purge', action='store_true', help="forget the shell's changes")
    args = p.parse_args(argv)
    if args.cmd == 'build':
        print(build())
    elif args.cmd == 'up':
        json.dump(up(args.root, args.scale), sys.stdout, indent=2)
        print()
    else:
        down(args.root, args.purge)
    return 0


if __name__ == '__main__':
    sys.exit(main())
