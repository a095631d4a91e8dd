# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_basebackup module around the program: the dest it empties or makes, the one shape it returns with
pg_probackup, the table counts after the backup. pg_basebackup and psql are doubles (shell scripts that write
what the real ones write); the runs against a real cluster are in tests/integration/test_pg_basebackup.py."""

import os
import stat

import pytest

from ansible_collections.alation.backup.plugins.modules import pg_basebackup

from .utils import run_module

BASEBACKUP = r'''#!/bin/sh
# pg_basebackup double: refuses a dest that is not empty, as the real one does, and writes its tar files.
while [ $# -gt 0 ]; do case "$1" in -D) d="$2"; shift;; esac; shift; done
if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then
  echo "pg_basebackup: error: directory \"$d\" exists but is not empty" >&2; exit 1
fi
mkdir -p "$d" && printf base > "$d/base.tar" && printf wal > "$d/pg_wal.tar"
'''
PSQL = r'''#!/bin/sh
# psql double: the database list, the server version, a table count.
for a; do last="$a"; done
case "$last" in
  *json_agg*) echo '["alation", "postgres"]';;
  *server_version_num*) echo 150020;;
  *) echo 12;;
esac
'''
PSQL_DOWN = '#!/bin/sh\necho "psql: error: connection to server failed: Connection refused" >&2\nexit 2\n'


def script(path, text):
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def bindir(tmp_path):
    d = tmp_path / 'bin'
    d.mkdir()
    script(d / 'pg_basebackup', BASEBACKUP)
    script(d / 'psql', PSQL)
    return d


@pytest.fixture
def dest(tmp_path):
    """A pg staging dir holding an earlier backup and a link out of it."""
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'precious').write_text('keep')
    d = tmp_path / 'backup' / 'pgbackup'
    (d / 'sub').mkdir(parents=True)
    (d / 'base.tar').write_text('earlier backup')
    (d / 'out').symlink_to(str(outside))
    os.chmod(str(d), 0o755)
    return d


def args(bindir, dest, **more):
    return dict(dict(dest=str(dest), bindir=str(bindir), host='127.0.0.1', port=5432, user='alation'), **more)


def test_empties_the_dest_first_and_returns_the_engines_shape(bindir, dest, tmp_path):
    failed, result = run_module(pg_basebackup.main, args(bindir, dest))
    assert not failed, result
    assert sorted(os.listdir(str(dest))) == ['base.tar', 'pg_wal.tar'] and (dest / 'base.tar').read_text() == 'base'
    assert stat.S_IMODE(os.lstat(str(dest)).st_mode) == 0o700
    assert (tmp_path / 'outside' / 'precious').read_text() == 'keep'
    assert result['emptied'] == dict(removed_files=2, removed_dirs=1, removed_bytes=14, skipped_mounts=[])
    shape = {k: result[k] for k in ('engine', 'mode', 'reason', 'backup_id', 'recovered', 'pruned')}
    assert shape == dict(engine='pg_basebackup', mode='FULL', reason='pg_basebackup always takes a full backup',
                         backup_id='alation_backup', recovered={}, pruned=[])
    assert result['mode_taken'] == 'FULL' and result['label'] == 'alation_backup'
    assert isinstance(result['duration_s'], float) and 'databases' not in result


def test_makes_a_missing_dest_private(bindir, tmp_path):
    dest = tmp_path / 'backup' / 'new' / 'pgbackup'
    failed, result = run_module(pg_basebackup.main, args(bindir, dest))
    assert not failed, result
    assert stat.S_IMODE(os.lstat(str(dest)).st_mode) == 0o700 and (dest / 'base.tar').exists()


def test_check_mode_removes_nothing_and_says_what_would_go(bindir, dest):
    failed, result = run_module(pg_basebackup.main, args(bindir, dest, _ansible_check_mode=True))
    assert not failed and result['changed']
    assert sorted(os.listdir(str(dest))) == ['base.tar', 'out', 'sub']
    assert result['emptied']['removed_files'] == 2 and len(result['executed_commands']) == 1
    assert 'not run' in result['executed_commands'][0]


@pytest.mark.parametrize('shape, words', [
    ('symlink', 'it is a symlink'),
    ('file', 'it exists and is not a directory'),
    ('system', 'directly inside the system directory /etc'),
])
def test_refuses_a_dest_the_staging_rules_refuse(bindir, dest, tmp_path, shape, words):
    if shape == 'symlink':
        target = tmp_path / 'backup' / 'link'
        target.symlink_to(str(dest))
    elif shape == 'file':
        target = tmp_path / 'backup' / 'file'
        target.write_text('x')
    else:
        target = '/etc/pgbackup'
    failed, result = run_module(pg_basebackup.main, args(bindir, target))
    assert failed and words in result['msg'], result['msg']
    assert (dest / 'base.tar').read_text() == 'earlier backup'
    assert not os.path.exists('/etc/pgbackup')


def test_inventory_counts_the_tables_after_the_backup(bindir, dest):
    failed, result = run_module(pg_basebackup.main, args(bindir, dest, inventory=True))
    assert not failed, result
    assert result['databases'] == {'alation': {'tables': 12}, 'postgres': {'tables': 12}}
    assert result['databases_error'] == ''
    # After the backup: pg_basebackup ran first.
    assert 'pg_basebackup' in result['executed_commands'][0] and 'psql' in result['executed_commands'][1]


def test_inventory_that_fails_never_fails_the_backup(bindir, dest):
    script(bindir / 'psql', PSQL_DOWN)
    failed, result = run_module(pg_basebackup.main, args(bindir, dest, inventory=True))
    assert not failed, result
    assert result['databases'] == {} and result['databases_error'].startswith('cannot list the databases: ')
    assert 'Connection refused' in result['databases_error']
    assert (dest / 'base.tar').read_text() == 'base'


def test_a_failed_backup_keeps_the_shape(bindir, dest):
    script(bindir / 'pg_basebackup', '#!/bin/sh\necho "pg_basebackup: error: could not connect" >&2\nexit 1\n')
    failed, result = run_module(pg_basebackup.main, args(bindir, dest))
    assert failed and result['msg'].startswith('pg_basebackup failed with exit code 1')
    assert result['engine'] == 'pg_basebackup' and 'duration_s' in result


def test_mode_is_the_backup_mode_not_the_dirs(bindir, dest):
    # Ansible adds a file's mode to a result with a path or dest; the backup mode must survive that.
    from ansible.module_utils.basic import AnsibleModule
    failed, result = run_module(pg_basebackup.main, args(bindir, dest))
    assert not failed and 'dest' not in result and 'path' not in result
    assert result['pg_staging_dir'] == str(dest)
    assert AnsibleModule.add_path_info(None, dict(result))['mode'] == 'FULL'
