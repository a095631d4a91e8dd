# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault suite's bad inputs (issue 11): what an admin could mistype, tried on a real Alation shell.

``CASES`` lists each bad input: role variables (and alation_conf keys) set as
an admin could mistype them, a host prepared in an odd way (a FIFO among the
extra paths, an immutable or read-only backup storage dir, a staging dir
reached through a symlink), and odd but legal inputs. Each expects either
``('refused', <regex the run's error must match>)``: a clear error that
names the value and what to do, before anything is touched; or
``('ok', None)``: a correct backup.

``run_cases(host, cases, check_sentinels)`` runs them against a shell from
tests/support/alation_shell.py and returns ``(case_id, held, detail)`` per
case. Cases refused without any preparation run together, as the hosts of one
ansible-playbook run (one inventory host per case, each with its own vars);
cases with a setup, or expected to back up, run one by one.

    python tests/faults/bad_inputs.py [ROOT] [-k SUBSTRING]   # brings a shell up at ROOT, runs every case
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SUPPORT = os.path.join(REPO, 'tests', 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

import alation_shell  # noqa: E402  pylint: disable=wrong-import-position
from playbook import COLLECTIONS  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_ROOT = '/tmp/bad-inputs-shell'
# alation_conf as lay_out writes it; a case's conf overrides these keys (None drops one).
BASE_CONF = dict(alation_shell.far_schedule(), **{'alation.backup.data_temp_dir': '/data2/tmp'})
ADMIN_IDS = dict(alation_shell.USERS)['alationadmin']
# Nothing on the message means "refused before anything ran" more than this.
NOTHING_TOUCHED = 'nothing was touched'


def refused(regex):
    return ('refused', regex)


OK = ('ok', None)


def outside(host):
    """A host dir outside the shell, where the symlinks of the cases lead."""
    return host.root.rstrip('/') + '.outside'


# -- setups -----------------------------------------------------------------------------

def _rm(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def symlink(shell_link, to_outside=True, target=None):
    """Setup and teardown: ``shell_link`` in the shell, a symlink to the host dir outside it (or to ``target``)."""
    def setup(host):
        dest = target or outside(host)
        os.makedirs(outside(host), exist_ok=True)
        link = host.path(shell_link)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(dest, link)

    def teardown(host):
        _rm(host.path(shell_link))
    return setup, teardown


def fifo(shell_path):
    def setup(host):
        os.mkfifo(host.path(shell_path))
    return setup, lambda host: _rm(host.path(shell_path))


def dir_with_socket(shell_dir):
    def setup(host):
        d = host.path(shell_dir)
        os.makedirs(d)
        with open(os.path.join(d, 'app.conf'), 'w') as f:
            f.write('x = 1\n')
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(d, 'app.sock'))
        s.close()
    return setup, lambda host: _rm(host.path(shell_dir))


def a_file(shell_path, size=16):
    def setup(host):
        with open(host.path(shell_path), 'wb') as f:
            f.write(b'x' * size)
    return setup, lambda host: _rm(host.path(shell_path))


def fake_data_dir(shell_dir):
    """A dir that looks like a data directory (PG_VERSION), served by no server."""
    def setup(host):
        os.makedirs(host.path(shell_dir))
        shutil.copy2(host.path(alation_shell.PGDATA + '/PG_VERSION'), host.path(shell_dir + '/PG_VERSION'))
    return setup, lambda host: _rm(host.path(shell_dir))


def chattr(shell_dir, flag):
    def setup(host):
        subprocess.run(['chattr', '+' + flag, host.path(shell_dir)], check=True)

    def teardown(host):
        subprocess.run(['chattr', '-' + flag, host.path(shell_dir)], check=False)
    return setup, teardown


def read_only_mount(shell_dir):
    def setup(host):
        path = host.path(shell_dir)
        subprocess.run(['mount', '--bind', path, path], check=True)
        subprocess.run(['mount', '-o', 'remount,bind,ro', path], check=True)

    def teardown(host):
        subprocess.run(['umount', host.path(shell_dir)], check=False)
    return setup, teardown


def small_staging_and_big_file(shell_file, size):
    """The staging dir on a 1 MiB tmpfs, and an extra path of ``size`` bytes."""
    def setup(host):
        with open(host.path(shell_file), 'wb') as f:
            f.write(b'x' * size)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0700,uid=%d,gid=%d' % (ADMIN_IDS, ADMIN_IDS),
                        'bad-inputs', host.path('/data2/tmp')], check=True)

    def teardown(host):
        subprocess.run(['umount', host.path('/data2/tmp')], check=False)
        _rm(host.path(shell_file))
    return setup, teardown


def both(*pairs):
    def setup(host):
        for s, dummy in pairs:
            s(host)

    def teardown(host):
        for dummy, t in reversed(pairs):
            t(host)
    return setup, teardown


def case(id, what, expect, vars=None, conf=None, conf_script=None, setup=None):  # pylint: disable=redefined-builtin
    c = dict(id=id, what=what, vars=vars or {}, expect=expect)
    if conf is not None:
        c['conf'] = conf
    if conf_script is not None:
        c['conf_script'] = conf_script
    if setup:
        c['setup'], c['teardown'] = setup
    return c


# -- the catalogue -------------------------------------------------------------------

SYMLINK_RE = r'resolves through a symlink to .* on the host: give the real directory'
ARGSPEC_CHOICE = r'must be one of: %s, got: %s'
NOT_INT = r"alation_backup_%s.* cannot be converted to an int|alation_backup_%s.*invalid literal for int"
RANGE_RE = r'a role variable is out of range; .*alation_backup_%s'
UNKNOWN_USER = r"user '%s' is not a user in .*/etc/passwd \(the Alation shell's users\): create the user first"
NOT_BOOL = r"argument 'alation_backup_%s' is of type str and we were unable to convert to bool"
CANNOT_CONNECT = r'cannot connect to PostgreSQL: .*Check host, port, user and password'

CASES = [
    # The staging dir (alation_backup_staging_dir): emptied at every run.
    case('staging-is-storage', 'staging dir typed as the backup storage dir',
         refused(r'the staging dir /data2/backup is the backup storage dir /data2/backup: .*delete the archives'),
         {'alation_backup_staging_dir': '/data2/backup'}),
    case('staging-data2', 'staging dir /data2, above the archives',
         refused(r'the staging dir /data2 is a top-level dir of the Alation shell'),
         {'alation_backup_staging_dir': '/data2'}),
    case('staging-root', 'staging dir /',
         refused(r'the staging dir / is the root of the Alation shell'), {'alation_backup_staging_dir': '/'}),
    case('staging-in-storage', 'staging dir inside the backup storage dir',
         refused(r'the staging dir /data2/backup/tmp lies inside the backup storage dir /data2/backup'),
         {'alation_backup_staging_dir': '/data2/backup/tmp'}),
    case('staging-is-pg-staging', 'staging dir typed as the pg staging dir',
         refused(r'the staging dir /data2/backup/pgbackup (is|lies inside) the (pg staging|backup storage) dir'),
         {'alation_backup_staging_dir': '/data2/backup/pgbackup'}),
    case('staging-in-pgdata', 'staging dir inside PGDATA',
         refused(r'the staging dir /data1/pgsql/data/tmp lies inside the PGDATA /data1/pgsql/data'),
         {'alation_backup_staging_dir': '/data1/pgsql/data/tmp'}),
    case('staging-above-pgdata', 'staging dir holding PGDATA',
         refused(r'the staging dir /data1/pgsql contains the PGDATA /data1/pgsql/data'),
         {'alation_backup_staging_dir': '/data1/pgsql'}),
    case('staging-relative', 'staging dir without its leading /',
         refused(r"staging_dir: shell path 'data2/tmp' is not absolute"), {'alation_backup_staging_dir': 'data2/tmp'}),
    case('staging-dotdot', 'staging dir with ..',
         refused(r"staging_dir: shell path '/data2/tmp/../backup' contains \"..\""),
         {'alation_backup_staging_dir': '/data2/tmp/../backup'}),
    case('staging-etc', "staging dir /etc, a system dir of the shell",
         refused(r"the staging dir /etc is or contains the Alation shell's system dir /etc"),
         {'alation_backup_staging_dir': '/etc'}),
    case('staging-in-tmp', 'staging dir under /tmp of the shell',
         refused(r"the staging dir /tmp/staging lies inside the Alation shell's system dir /tmp"),
         {'alation_backup_staging_dir': '/tmp/staging'}),
    case('staging-in-usr', 'staging dir under /usr',
         refused(r"the staging dir /usr/local/stage lies inside the Alation shell's system dir /usr"),
         {'alation_backup_staging_dir': '/usr/local/stage'}),
    case('staging-symlink', 'staging dir is a symlink leading out of the shell',
         refused(r'the staging dir /data2/stage-link ' + SYMLINK_RE),
         {'alation_backup_staging_dir': '/data2/stage-link'}, setup=symlink('/data2/stage-link')),
    case('staging-parent-symlink', 'staging dir below a symlink leading out of the shell',
         refused(r'the staging dir /data2/lnk/tmp ' + SYMLINK_RE),
         {'alation_backup_staging_dir': '/data2/lnk/tmp'}, setup=symlink('/data2/lnk')),
    case('staging-is-file', 'staging dir names a file',
         refused(r'the staging dir /data2/stage.file is not a directory .*remove the file or choose another dir'),
         {'alation_backup_staging_dir': '/data2/stage.file'}, setup=a_file('/data2/stage.file')),
    case('staging-trailing-slash', 'staging dir with a trailing slash and doubled slashes', OK,
         {'alation_backup_staging_dir': '//data2//tmp/'}),
    case('staging-with-space', 'staging dir with a space in its name', OK,
         {'alation_backup_staging_dir': '/data2/my tmp'}),

    # alation_conf's alation.backup.data_temp_dir: where the staging dir is when the role variable is empty.
    case('conf-storage', 'data_temp_dir typed as the backup storage dir',
         refused(r'the staging dir /data2/backup is the backup storage dir /data2/backup: .*'
                 r'alation.backup.data_temp_dir'),
         conf={'alation.backup.data_temp_dir': '/data2/backup'}),
    case('conf-data2', 'data_temp_dir /data2',
         refused(r'the staging dir /data2 is a top-level dir'), conf={'alation.backup.data_temp_dir': '/data2'}),
    case('conf-root', 'data_temp_dir /',
         refused(r'the staging dir / is the root of the Alation shell'), conf={'alation.backup.data_temp_dir': '/'}),
    case('conf-relative', 'data_temp_dir relative',
         refused(r"alation.backup.data_temp_dir is 'data2/tmp': .*not absolute.* alation_conf "
                 r"alation.backup.data_temp_dir -s <absolute path>"),
         conf={'alation.backup.data_temp_dir': 'data2/tmp'}),
    case('conf-dotdot', 'data_temp_dir with ..',
         refused(r"alation.backup.data_temp_dir is '/data2/tmp/../backup': .*contains"),
         conf={'alation.backup.data_temp_dir': '/data2/tmp/../backup'}),
    case('conf-pgdata', 'data_temp_dir typed as PGDATA',
         refused(r'the staging dir /data1/pgsql/data is the PGDATA /data1/pgsql/data'),
         conf={'alation.backup.data_temp_dir': '/data1/pgsql/data'}),
    case('conf-pg-staging', 'data_temp_dir typed as the pg staging dir',
         refused(r'the staging dir /data2/backup/pgbackup (lies inside|is) the'),
         conf={'alation.backup.data_temp_dir': '/data2/backup/pgbackup'}),
    case('conf-var', 'data_temp_dir under /var',
         refused(r"the staging dir /var/tmp lies inside the Alation shell's system dir /var"),
         conf={'alation.backup.data_temp_dir': '/var/tmp'}),
    case('conf-symlink', 'data_temp_dir is a symlink leading out of the shell',
         refused(r'the staging dir /data2/conf-link ' + SYMLINK_RE),
         conf={'alation.backup.data_temp_dir': '/data2/conf-link'}, setup=symlink('/data2/conf-link')),
    case('conf-symlink-to-storage', 'data_temp_dir is a symlink to the backup storage dir',
         refused(r'the staging dir /data2/tmp-to-backup resolves through a symlink to .*/data2/backup'),
         conf={'alation.backup.data_temp_dir': '/data2/tmp-to-backup'},
         setup=symlink('/data2/tmp-to-backup', target='/data2/backup')),
    case('conf-hang', 'alation_conf hangs',
         refused(r'alation_conf did not answer within 3 s: .*alation_conf_bi_\d+ alation.backup.data_temp_dir.* was '
                 r'stopped \(alation_conf_timeout, role variable alation_backup_alation_conf_timeout\)'),
         {'alation_backup_alation_conf_timeout': 3}, conf_script='#!/bin/sh\nexec sleep 300\n'),
    case('conf-empty', 'data_temp_dir set to an empty value: Alation\'s default /data2/tmp', OK,
         conf={'alation.backup.data_temp_dir': ''}),
    case('conf-unset', 'data_temp_dir not set: /data2/tmp, with a warning', OK,
         conf={'alation.backup.data_temp_dir': None}),
    case('conf-spaces', 'data_temp_dir with spaces around and inside', OK,
         conf={'alation.backup.data_temp_dir': '  /data2/alation tmp  '}),

    # The pg staging dir (alation_backup_pg_staging_dir).
    case('pgstage-is-storage', 'pg staging dir typed as the backup storage dir',
         refused(r'the pg staging dir /data2/backup is the backup storage dir /data2/backup: .*delete the archives'),
         {'alation_backup_pg_staging_dir': '/data2/backup'}),
    case('pgstage-data2', 'pg staging dir /data2',
         refused(r'the pg staging dir /data2 is a top-level dir'), {'alation_backup_pg_staging_dir': '/data2'}),
    case('pgstage-root', 'pg staging dir /',
         refused(r'the pg staging dir / is the root'), {'alation_backup_pg_staging_dir': '/'}),
    case('pgstage-is-pgdata', 'pg staging dir typed as PGDATA',
         refused(r'the pg staging dir /data1/pgsql/data is the PGDATA /data1/pgsql/data'),
         {'alation_backup_pg_staging_dir': '/data1/pgsql/data'}),
    case('pgstage-above-pgdata', 'pg staging dir holding PGDATA',
         refused(r'the pg staging dir /data1/pgsql contains the PGDATA'), {'alation_backup_pg_staging_dir': '/data1/pgsql'}),
    case('pgstage-in-pgdata', 'pg staging dir inside PGDATA',
         refused(r'the pg staging dir /data1/pgsql/data/pgbackup lies inside the PGDATA'),
         {'alation_backup_pg_staging_dir': '/data1/pgsql/data/pgbackup'}),
    case('pgstage-is-staging', 'pg staging dir typed as the staging dir',
         refused(r'the staging dir /data2/tmp is the pg staging dir /data2/tmp'),
         {'alation_backup_pg_staging_dir': '/data2/tmp'}),
    case('pgstage-relative', 'pg staging dir relative',
         refused(r"pg_staging_dir: shell path 'data2/backup/pgbackup' is not absolute"),
         {'alation_backup_pg_staging_dir': 'data2/backup/pgbackup'}),
    case('pgstage-symlink', 'pg staging dir is a symlink leading out of the shell',
         refused(r'the pg staging dir /data2/pg-link ' + SYMLINK_RE),
         {'alation_backup_pg_staging_dir': '/data2/pg-link'}, setup=symlink('/data2/pg-link')),
    case('pgstage-elsewhere', 'pg staging dir outside the backup storage dir', OK,
         {'alation_backup_pg_staging_dir': '/data2/pgstage'}),

    # The backup storage dir (alation_backup_storage_dir).
    case('storage-root', 'backup storage dir /',
         refused(r'the backup storage dir / is the root'), {'alation_backup_storage_dir': '/'}),
    case('storage-data2', 'backup storage dir /data2',
         refused(r'the backup storage dir /data2 is a top-level dir'), {'alation_backup_storage_dir': '/data2'}),
    case('storage-in-staging', 'backup storage dir inside the staging dir',
         refused(r'the staging dir /data2/tmp contains the backup storage dir /data2/tmp/backup'),
         {'alation_backup_storage_dir': '/data2/tmp/backup'}),
    case('storage-above-pgdata', 'backup storage dir holding PGDATA',
         refused(r'the backup storage dir /data1/pgsql contains the PGDATA /data1/pgsql/data'),
         {'alation_backup_storage_dir': '/data1/pgsql'}),
    case('storage-in-pgdata', 'backup storage dir inside PGDATA',
         refused(r'the backup storage dir /data1/pgsql/data/backup lies inside the PGDATA'),
         {'alation_backup_storage_dir': '/data1/pgsql/data/backup'}),
    case('storage-relative', 'backup storage dir relative',
         refused(r"backup_storage_dir: shell path 'data2/backup' is not absolute"),
         {'alation_backup_storage_dir': 'data2/backup'}),
    case('storage-symlink', 'backup storage dir is a symlink leading out of the shell',
         refused(r'the backup storage dir /data2/backup-link ' + SYMLINK_RE),
         {'alation_backup_storage_dir': '/data2/backup-link'}, setup=symlink('/data2/backup-link')),
    case('storage-immutable', 'backup storage dir made immutable (chattr +i)',
         refused(r'the backup storage dir /data2/backup is immutable \(chattr \+i\) .*run chattr -i'),
         setup=chattr('/data2/backup', 'i')),
    case('storage-append-only', 'backup storage dir append-only (chattr +a)',
         refused(r'the backup storage dir /data2/backup is append-only \(chattr \+a\)'),
         setup=chattr('/data2/backup', 'a')),
    case('storage-read-only', 'backup storage dir on a read-only mount',
         refused(r'the backup storage dir /data2/backup is on a read-only file system .*remount it read-write'),
         setup=read_only_mount('/data2/backup')),
    case('storage-is-file', 'backup storage dir names a file',
         refused(r'the backup storage dir /data2/backup.file is not a directory'),
         {'alation_backup_storage_dir': '/data2/backup.file', 'alation_backup_pg_staging_dir': '/data2/pgstage'},
         setup=a_file('/data2/backup.file')),

    # PGDATA (alation_backup_pgdata).
    case('pgdata-missing', 'PGDATA that does not exist',
         refused(r'PGDATA /data1/pgsql/dta does not exist .*set alation_backup_pgdata'),
         {'alation_backup_pgdata': '/data1/pgsql/dta'}),
    case('pgdata-parent', 'PGDATA one level too high',
         refused(r'PGDATA /data1/pgsql is not a PostgreSQL data directory: it has no PG_VERSION .*'
                 r'/data1/pgsql/data looks like one'), {'alation_backup_pgdata': '/data1/pgsql'}),
    case('pgdata-file', 'PGDATA names a file',
         refused(r'PGDATA /data1/pgsql/data/PG_VERSION is not a directory'),
         {'alation_backup_pgdata': '/data1/pgsql/data/PG_VERSION'}),
    case('pgdata-relative', 'PGDATA relative',
         refused(r"pgdata: shell path 'data1/pgsql/data' is not absolute"), {'alation_backup_pgdata': 'data1/pgsql/data'}),
    case('pgdata-other-server', 'PGDATA of another cluster than the server on the port',
         refused(r'the PostgreSQL server on this port serves the data directory /data1/pgsql/data, not PGDATA '
                 r'/data1/other: set alation_backup_pgdata'),
         {'alation_backup_pgdata': '/data1/other'}, setup=fake_data_dir('/data1/other')),

    # Extra paths (alation_backup_extra_paths).
    case('extra-missing', 'an extra path that does not exist',
         refused(r'the extra path /etc/alation-site.cnf does not exist .*drop it from alation_backup_extra_paths'),
         {'alation_backup_extra_paths': ['/etc/alation-site.cnf']}),
    case('extra-fifo', 'an extra path that is a FIFO',
         refused(r'the extra path /etc/bi.fifo is a FIFO \(named pipe\)'),
         {'alation_backup_extra_paths': ['/etc/bi.fifo']}, setup=fifo('/etc/bi.fifo')),
    case('extra-dir-with-socket', 'an extra dir holding a socket',
         refused(r'the extra path /etc/bi-app holds what cannot be copied: /etc/bi-app/app.sock \(a socket\)'),
         {'alation_backup_extra_paths': ['/etc/bi-app']}, setup=dir_with_socket('/etc/bi-app')),
    case('extra-dangling', 'an extra path that is a dangling symlink',
         refused(r'the extra path /etc/bi-dangling is a symlink to a missing /nowhere'),
         {'alation_backup_extra_paths': ['/etc/bi-dangling']}, setup=symlink('/etc/bi-dangling', target='/nowhere')),
    case('extra-data2', 'extra path /data2, holding the staging dir',
         refused(r'the extra path /data2 is or contains the staging dir /data2/tmp'),
         {'alation_backup_extra_paths': ['/data2']}),
    case('extra-root', 'extra path /',
         refused(r'the extra path / is or contains the staging dir'), {'alation_backup_extra_paths': ['/']}),
    case('extra-storage', 'extra path the backup storage dir',
         refused(r'the extra path /data2/backup is or contains the (pg staging|backup storage) dir'),
         {'alation_backup_extra_paths': ['/data2/backup']}),
    case('extra-pgdata', 'extra path PGDATA',
         refused(r'the extra path /data1/pgsql/data is or contains the PGDATA'),
         {'alation_backup_extra_paths': ['/data1/pgsql/data']}),
    case('extra-in-staging', 'extra path inside the staging dir',
         refused(r'the extra path /data2/tmp/site.conf lies inside the staging dir'),
         {'alation_backup_extra_paths': ['/data2/tmp/site.conf']}),
    case('extra-relative', 'extra path relative',
         refused(r"extra: shell path 'etc/hosts' is not absolute"), {'alation_backup_extra_paths': ['etc/hosts']}),
    case('extra-dotdot', 'extra path with ..',
         refused(r"extra: shell path '/etc/../data2' contains"), {'alation_backup_extra_paths': ['/etc/../data2']}),
    case('extra-too-big', 'extra paths that do not fit the staging dir',
         refused(r'the extra paths \(4194304 bytes, 4.0 MiB\) do not fit the staging dir /data2/tmp'),
         {'alation_backup_extra_paths': ['/etc/bi-big.bin']},
         setup=small_staging_and_big_file('/etc/bi-big.bin', 4 << 20)),
    case('extra-as-string', 'extra paths given as one string, not a list', OK,
         {'alation_backup_extra_paths': '/etc/debian_version'}),

    # Choices and numbers.
    case('engine-typo', 'engine name misspelt',
         refused(ARGSPEC_CHOICE % ('pg_probackup, pg_basebackup', 'pg_probakup')),
         {'alation_backup_engine': 'pg_probakup'}),
    case('engine-upper', 'engine name in capitals',
         refused(ARGSPEC_CHOICE % ('pg_probackup, pg_basebackup', 'PG_PROBACKUP')),
         {'alation_backup_engine': 'PG_PROBACKUP'}),
    case('incremental-mode-typo', 'incremental mode misspelt',
         refused(ARGSPEC_CHOICE % ('delta, page, ptrack', 'detla')), {'alation_backup_incremental_mode': 'detla'}),
    case('on-broken-chain-typo', 'on_broken_chain misspelt',
         refused(ARGSPEC_CHOICE % ('reset, repair, fail', 'rest')), {'alation_backup_on_broken_chain': 'rest'}),
    case('compressor-typo', 'compressor gzip (not a choice)',
         refused(ARGSPEC_CHOICE % ('auto, isal, igzip, pigz, zlib', 'gzip')), {'alation_backup_compressor': 'gzip'}),
    case('incremental-text', 'incremental neither true nor false',
         refused(NOT_BOOL % 'incremental'),
         {'alation_backup_incremental': 'sometimes'}),
    case('use-chroot-text', 'use_chroot neither true nor false',
         refused(NOT_BOOL % 'use_chroot'), {'alation_backup_use_chroot': 'maybe'}),
    case('level-zero', 'compression level 0',
         refused(ARGSPEC_CHOICE % ('1, 2, 3, 4, 5, 6, 7, 8, 9', '0')), {'alation_backup_compression_level': 0}),
    case('level-ten', 'compression level 10',
         refused(ARGSPEC_CHOICE % ('1, 2, 3, 4, 5, 6, 7, 8, 9', '10')), {'alation_backup_compression_level': 10}),
    case('level-text', 'compression level as a word',
         refused(NOT_INT % ('compression_level', 'compression_level')), {'alation_backup_compression_level': 'best'}),
    case('threads-negative', 'threads -1',
         refused(RANGE_RE % 'threads -1'), {'alation_backup_threads': -1}),
    case('threads-text', 'threads as a word',
         refused(NOT_INT % ('threads', 'threads')), {'alation_backup_threads': 'all'}),
    case('port-zero', 'port 0', refused(RANGE_RE % 'pg_port is 0'), {'alation_backup_pg_port': 0}),
    case('port-huge', 'port 70000', refused(RANGE_RE % 'pg_port is 70000'), {'alation_backup_pg_port': 70000}),
    case('port-text', 'port as a word', refused(NOT_INT % ('pg_port', 'pg_port')), {'alation_backup_pg_port': 'pg'}),
    case('min-interval-negative', 'min_interval -1',
         refused(RANGE_RE % 'min_interval -1'), {'alation_backup_min_interval': -1}),
    case('min-interval-text', 'min_interval as a word',
         refused(NOT_INT % ('min_interval', 'min_interval')), {'alation_backup_min_interval': 'daily'}),
    # alation_info, the first (read-only) call, refuses it before the range check does.
    case('conf-timeout-negative', 'alation_conf timeout -5',
         refused(r'alation_conf_timeout is -5: give the seconds alation_conf may take, or 0 for no limit'),
         {'alation_backup_alation_conf_timeout': -5}),
    case('keep-count-negative', 'keep_count -1', refused(RANGE_RE % 'keep_count -1'), {'alation_backup_keep_count': -1}),
    case('keep-days-negative', 'keep_days -7', refused(RANGE_RE % 'keep_days -7'), {'alation_backup_keep_days': -7}),
    case('full-every-negative', 'full_every -1',
         refused(RANGE_RE % 'full_every -1'), {'alation_backup_full_every': -1}),
    case('full-every-days-negative', 'full_every_days -0.5',
         refused(RANGE_RE % 'full_every_days -0.5'), {'alation_backup_full_every_days': -0.5}),
    case('stale-after-tiny', 'lock_stale_after 1 (a live run would be taken over)',
         refused(RANGE_RE % 'lock_stale_after 1'), {'alation_backup_lock_stale_after': 1}),
    case('notify-timeout-zero', 'notify_timeout 0 (the webhook could never answer)',
         refused(RANGE_RE % 'notify_timeout 0'), {'alation_backup_notify_timeout': 0}),
    case('notify-on-typo', 'notify_on misspelt',
         refused(ARGSPEC_CHOICE % ('failure, always', 'failures')), {'alation_backup_notify_on': 'failures'}),

    # The database connection.
    case('port-wrong', 'a port no server listens on', refused(CANNOT_CONNECT), {'alation_backup_pg_port': 1}),
    case('pg-user-wrong', 'a database user that does not exist',
         refused(CANNOT_CONNECT + r'|role "alatoin" does not exist'), {'alation_backup_pg_user': 'alatoin'}),
    case('pg-dbname-wrong', 'a database that does not exist',
         refused(CANNOT_CONNECT + r'|database "postgers" does not exist'), {'alation_backup_pg_dbname': 'postgers'}),
    case('pg-host-wrong', 'a host the server does not listen on',
         refused(CANNOT_CONNECT), {'alation_backup_pg_host': '127.0.0.2'}),
    case('pg-bindir-wrong', 'a PostgreSQL bindir that does not exist',
         refused(r'psql not found: looked for psql in /usr/lib/postgresql/99/bin.*set bindir'),
         {'alation_backup_pg_bindir': '/usr/lib/postgresql/99/bin'}),

    # Users and groups of the shell.
    case('pg-os-user-missing', 'PostgreSQL OS user misspelt',
         refused(UNKNOWN_USER % 'alatoin'), {'alation_backup_pg_os_user': 'alatoin'}),
    case('owner-missing', 'owner misspelt', refused(UNKNOWN_USER % 'alationadmn'), {'alation_backup_owner': 'alationadmn'}),
    case('alation-user-missing', 'alation_conf user misspelt',
         refused(UNKNOWN_USER % 'alatonadmin'), {'alation_backup_alation_user': 'alatonadmin'}),
    case('group-missing', 'group that the shell does not have',
         refused(r"group 'alationadmns' is not a group in .*/etc/group \(the Alation shell's groups\): create the group"),
         {'alation_backup_group': 'alationadmns'}),

    # The shell.
    case('root-missing', 'shell root that does not exist',
         refused(r'root /opt/alation/alaton is not a directory: give the host path of the Alation shell'),
         {'alation_backup_root': '/opt/alation/alaton'}),
    case('root-is-data2', "shell root typed as the shell's /data2",
         # No shell there: alation_conf cannot run in it (the message says to check root), or no PGDATA.
         refused(r'PGDATA /data1/pgsql/data does not exist \(host path .*/data2/data1/pgsql/data\)'
                 r"|cannot run alation_conf command 'alation_conf' .*check root"),
         {'alation_backup_root': '{root}/data2'}),
    case('conf-command-missing', 'alation_conf command that does not exist: refused rather than quietly staging in '
         '/data2/tmp', refused(r"the staging dir comes from alation_conf key alation.backup.data_temp_dir, and cannot "
                               r"run alation_conf command 'alation_cnof'.*alation_backup_alation_conf_command"),
         {'alation_backup_alation_conf_command': 'alation_cnof'}),
]


# -- running ------------------------------------------------------------------------------

def _python():
    venv = os.path.join(REPO, '.venv', 'bin', 'python')
    return venv if os.path.exists(venv) else sys.executable


def _ansible_playbook():
    mine = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return mine if os.path.exists(mine) else os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')


def _case_vars(host, c, conf_commands):
    v = dict(host.role_vars)
    # A case that expects a backup takes the engine the shell has (a fresh machine has no pg_probackup).
    v.setdefault('alation_backup_engine', 'pg_probackup' if host.has_pg_probackup else 'pg_basebackup')
    for k, value in c['vars'].items():
        v[k] = value.replace('{root}', host.root) if isinstance(value, str) else value
    if c['id'] in conf_commands:
        v['alation_backup_alation_conf_command'] = conf_commands[c['id']]
    return v


def _install_conf(host, cases):
    """A copy of the alation_conf double in the shell for each case with its own conf; {case id: its name}."""
    names = {}
    for n, c in enumerate(cases):
        if 'conf' not in c and 'conf_script' not in c:
            continue
        name = 'alation_conf_bi_%d' % n
        path = host.path('/usr/local/bin/' + name)
        if 'conf_script' in c:
            with open(path, 'w') as f:
                f.write(c['conf_script'])
        else:
            shutil.copy2(os.path.join(SUPPORT, 'alation_conf_double'), path)
            conf = dict(BASE_CONF)
            conf.update(c['conf'])
            with open(path + '.store', 'w') as f:
                f.write(''.join('%s = %s\n' % (k, v) for k, v in sorted(conf.items()) if v is not None))
        os.chmod(path, 0o755)
        names[c['id']] = name
    return names


def _remove_conf(host, names):
    for name in names.values():
        for path in (host.path('/usr/local/bin/' + name), host.path('/usr/local/bin/' + name + '.store')):
            if os.path.exists(path):
                os.unlink(path)


FATAL_RE = re.compile(r'^fatal: \[(?P<host>[^\]]+)\]: FAILED! => (?P<result>\{.*\})\s*$', re.M)


def run_playbook(host, cases, conf_commands, workdir, timeout=900):
    """One ansible-playbook run, one inventory host per case; {case id: (result, error)} and the output."""
    report = os.path.join(workdir, 'report.json')
    inventory = os.path.join(workdir, 'inventory.json')
    hosts = {}
    for c in cases:
        hosts[c['id']] = dict(_case_vars(host, c, conf_commands), ansible_connection='local',
                              ansible_python_interpreter=_python())
    with open(inventory, 'w') as f:
        json.dump({'alation': {'hosts': hosts}}, f)
    with open(os.path.join(workdir, 'vars.json'), 'w') as f:
        json.dump({'alation_backup_become': False, 'alation_backup_report_path': report}, f)
    argv = [_ansible_playbook(), '-i', inventory, os.path.join(REPO, 'playbooks', 'backup.yml'),
            '-e', '@' + os.path.join(workdir, 'vars.json')]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_HOST_KEY_CHECKING='0')
    env.setdefault('ANSIBLE_FORKS', '5')
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout, check=False)
        output = proc.stdout
    except subprocess.TimeoutExpired as e:
        output = (e.output or '') + '\n(ansible-playbook stopped after %d s)' % timeout
    with open(os.path.join(workdir, 'output.txt'), 'w') as f:
        f.write(output)
    outcome = {}
    if os.path.exists(report):
        with open(report) as f:
            for r in json.load(f):
                outcome[r['host']] = (r['result'], r.get('error') or '', r)
    # A host refused before the role's tasks (the argument spec) has no record of its own (none, or one saying
    # it did not run): its fatal line says why.
    for m in FATAL_RE.finditer(output):
        if outcome.get(m.group('host'), ('not run',))[0] not in ('ok', 'failed', 'skipped'):
            try:
                msg = json.loads(m.group('result')).get('msg', m.group('result'))
            except ValueError:
                msg = m.group('result')
            outcome[m.group('host')] = ('failed', str(msg), None)
    return outcome, output


def _verify_backup(host, record):
    """'' when the record's archive is a complete gzip with a matching .sha256, else what is wrong."""
    archive = record.get('archive') or ''
    for candidate in (archive, host.path(archive)):
        if candidate and os.path.isfile(candidate):
            archive = candidate
            break
    else:
        return 'no archive at %r' % archive
    if subprocess.run(['gzip', '-t', archive], stderr=subprocess.PIPE, check=False).returncode != 0:
        return '%s fails gzip -t' % archive
    digest = hashlib.sha256()
    with open(archive, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    with open(archive + '.sha256') as f:
        if digest.hexdigest() not in f.read():
            return '%s does not match its .sha256' % archive
    return ''


def judge(host, c, outcome):
    """(held, detail) of case ``c`` from what its run recorded."""
    kind, regex = c['expect']
    if c['id'] not in outcome:
        return False, 'no record and no failure for this host'
    result, error, record = outcome[c['id']]
    if kind == 'ok':
        if result != 'ok':
            return False, 'expected a backup, got %s: %s' % (result, error)
        problem = _verify_backup(host, record)
        return (not problem), problem or 'backup %s' % os.path.basename(record.get('archive', ''))
    if result != 'failed':
        return False, 'expected a refusal, got %s' % result
    if not re.search(regex, error, re.S):
        return False, 'refused, but the message does not match %r: %s' % (regex, error)
    return True, error


def _changed_detail(changed):
    return 'sentinels changed: %s' % ', '.join(changed[:5]) if changed else ''


def run_cases(host, cases, check_sentinels):
    """Run ``cases`` on ``host``; [(case id, held, detail)], in the order of ``cases``."""
    results = {}
    workroot = tempfile.mkdtemp(prefix='bad-inputs-')
    batch = [c for c in cases if c['expect'][0] == 'refused' and 'setup' not in c]
    single = [c for c in cases if c not in batch]
    conf_commands = _install_conf(host, cases)
    try:
        if batch:
            workdir = os.path.join(workroot, 'batch')
            os.makedirs(workdir)
            snapshot = check_sentinels()
            outcome, dummy = run_playbook(host, batch, conf_commands, workdir)
            changed = check_sentinels(snapshot)
            for c in batch:
                held, detail = judge(host, c, outcome)
                if changed:
                    held, detail = False, _changed_detail(changed) + '; ' + detail
                results[c['id']] = (held, detail)
        for c in single:
            workdir = os.path.join(workroot, c['id'])
            os.makedirs(workdir)
            started = time.monotonic()
            try:
                if c.get('setup'):
                    c['setup'](host)
                snapshot = check_sentinels()
                outcome, dummy = run_playbook(host, [c], conf_commands, workdir)
                changed = check_sentinels(snapshot)
            finally:
                if c.get('teardown'):
                    c['teardown'](host)
            held, detail = judge(host, c, outcome)
            if changed:
                held, detail = False, _changed_detail(changed) + '; ' + detail
            results[c['id']] = (held, '%s (%.0f s)' % (detail, time.monotonic() - started))
    finally:
        _remove_conf(host, conf_commands)
    shutil.rmtree(workroot, ignore_errors=True)
    return [(c['id'],) + results[c['id']] for c in cases]


# -- a sentinel tree, for runs of this module on its own -------------------------------

SENTINELS = ('/bi-sentinel-root.txt', '/data2/bi-sentinel.txt', '/data2/backup/bi-sentinel.txt',
             '/data1/pgsql/data/bi-sentinel.txt', '/etc/bi-sentinel.conf', '/data2/elsewhere/bi-sentinel.txt')


def sentinel_checker(host):
    """Plant sentinel files (in /data2, the shell root, PGDATA, the storage dir, and outside the shell where the
    cases' symlinks lead); return check_sentinels: () -> snapshot, (snapshot) -> [changed paths]."""
    paths = [host.path(p) for p in SENTINELS] + [os.path.join(outside(host), 'bi-sentinel.txt')]
    for p in paths:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'w') as f:
            f.write('sentinel %s\n' % p)
    # A staging dir typed as /data2/elsewhere must not reach it through a link either.
    link = host.path('/data2/elsewhere-link')
    if not os.path.lexists(link):
        os.symlink(host.path('/data2/elsewhere'), link)

    def state(path):
        try:
            st = os.lstat(path)
            with open(path, 'rb') as f:
                return (st.st_mode, st.st_uid, st.st_gid, hashlib.sha256(f.read()).hexdigest())
        except OSError as e:
            return ('missing', e.errno)

    def check(snapshot=None):
        now = dict((p, state(p)) for p in paths)
        if snapshot is None:
            return now
        return [p for p in paths if now[p] != snapshot.get(p)]
    return check


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('root', nargs='?', default=DEFAULT_ROOT, help='where to bring the shell up (default %(default)s)')
    p.add_argument('-k', dest='only', default='', help='only the cases whose id contains one of these (comma-separated)')
    p.add_argument('--keep', action='store_true', help='leave the shell up afterwards')
    args = p.parse_args(argv)
    cases = [c for c in CASES if any(k in c['id'] for k in args.only.split(','))]
    root = os.path.abspath(args.root)
    started = time.monotonic()
    try:
        host = alation_shell.ShellHost(root, alation_shell.up(root, scale=1))
        results = run_cases(host, cases, sentinel_checker(host))
    finally:
        if not args.keep:
            alation_shell.down(root, purge=True)
            shutil.rmtree(root.rstrip('/') + '.outside', ignore_errors=True)
    held = 0
    for case_id, ok, detail in results:
        held += bool(ok)
        print('%-24s %-5s %s' % (case_id, 'held' if ok else 'FAIL', ' '.join(detail.split())[:300]))
    print('bad inputs: tried %d / held %d (%.0f s)' % (len(results), held, time.monotonic() - started))
    return 0 if held == len(results) else 1


if __name__ == '__main__':
    sys.exit(main())
