# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""archive_info, archive_extract, pgdata_restore and temp_postgres through AnsibleModule (set_module_args harness).

The cores are tested in tests/unit/plugins/module_utils; here: the options
reach them, check mode reaches them, and a refusal becomes fail_json with
the partial result.
"""

import hashlib
import io
import json
import os
import tarfile

import pytest

from .utils import run_module

from ansible_collections.alation.backup.plugins.modules import (
    archive_extract, archive_info, pgdata_restore, temp_postgres)

NAME = '202405011230_5-17-0-1_alation_backup.tar.gz'


def run(module, args, check=False):
    return run_module(module.main, dict(args, _ansible_check_mode=check))


@pytest.fixture
def archive(tmp_path):
    path = str(tmp_path / NAME)
    manifest = dict(sources=[dict(arcname='tmp', present=True, entries=2, files=1, dirs=1, symlinks=0, hardlinks=0,
                                  bytes=5)])
    with tarfile.open(path, 'w:gz') as tar:
        for name, data in (('alation_backup_manifest.json', json.dumps(manifest).encode()), ('tmp', None),
                           ('tmp/site.conf', b'12345')):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(path + '.sha256', 'w') as f:
        f.write('%s  %s\n' % (digest, NAME))
    return path


def test_archive_info_finds_and_checks(archive, tmp_path):
    failed, result = run(archive_info, dict(dir=str(tmp_path), checksum=True), check=True)
    assert not failed and not result['changed'] and result['path'] == archive
    assert result['sha256'] == result['sha256_recorded'] and result['manifest']['sources'][0]['arcname'] == 'tmp'


def test_archive_info_failure_keeps_what_it_found(archive):
    os.unlink(archive + '.sha256')
    failed, result = run(archive_info, dict(path=archive, checksum=True))
    assert failed and '.sha256 is missing' in result['msg'] and result['path'] == archive


def test_archive_extract_check_mode_then_the_change_then_the_refused_repeat(archive, tmp_path):
    dest = str(tmp_path / 'out')
    failed, preview = run(archive_extract, dict(path=archive, dest=dest), check=True)
    assert not failed and preview['changed'] and not os.path.exists(dest)
    assert preview['executed_commands'][0].endswith('(check mode: not run)')
    failed, done = run(archive_extract, dict(path=archive, dest=dest, mode='u=rwx,g=rx,o='))
    assert not failed and done['changed'], done
    assert oct(os.stat(dest).st_mode & 0o777) == '0o750'  # symbolic modes as Ansible's file module takes them
    assert done['sources'][0]['found']['bytes'] == 5
    failed, again = run(archive_extract, dict(path=archive, dest=dest))
    assert failed and 'is not empty' in again['msg'] and again['dest'] == dest


def test_archive_extract_refuses_an_unknown_owner(archive, tmp_path):
    failed, result = run(archive_extract, dict(path=archive, dest=str(tmp_path / 'out'), owner='no_such_user_here'))
    assert failed and "owner 'no_such_user_here' is not a user" in result['msg']


def test_pgdata_restore_plans_in_check_mode_and_refuses_a_missing_source(tmp_path):
    args = dict(source=str(tmp_path / 'pgbackup'), engine='pg_basebackup', pgdata=str(tmp_path / 'pgdata'))
    failed, preview = run(pgdata_restore, args, check=True)
    assert not failed and preview['changed'] and len(preview['executed_commands']) == 2
    failed, result = run(pgdata_restore, args)
    assert failed and 'has no base.tar' in result['msg'] and result['pgdata'] == args['pgdata']
    assert not os.path.exists(args['pgdata'])


def test_pgdata_restore_unknown_run_as(tmp_path):
    src = tmp_path / 'pgbackup'
    src.mkdir()
    for name in ('base.tar', 'pg_wal.tar'):
        with tarfile.open(str(src / name), 'w'):
            pass
    failed, result = run(pgdata_restore, dict(source=str(src), engine='pg_basebackup', pgdata=str(tmp_path / 'p'),
                                              run_as='no_such_user_here'))
    assert failed and "run_as 'no_such_user_here' is not a user" in result['msg']


def test_temp_postgres_stop_with_nothing_running_and_start_in_check_mode(tmp_path):
    args = dict(pgdata=str(tmp_path / 'pgdata'), socket_dir=str(tmp_path / 'socket'))
    failed, stopped = run(temp_postgres, dict(args, state='stopped'))
    assert not failed and not stopped['changed'] and stopped['log_file'] == str(tmp_path / 'socket' / 'postgresql.log')
    failed, preview = run(temp_postgres, args, check=True)
    assert not failed and preview['changed'] and preview['pg_version'] is None


def test_temp_postgres_refuses_to_start_on_what_is_no_data_directory(tmp_path):
    failed, result = run(temp_postgres, dict(pgdata=str(tmp_path), socket_dir=str(tmp_path / 'socket')))
    assert failed and 'no PG_VERSION' in result['msg'] and result['socket_dir'] == str(tmp_path / 'socket')


def test_archive_extract_reads_and_removes_its_key_files_first_and_never_shows_them(tmp_path):
    from ansible_collections.alation.backup.plugins.modules import archive_extract
    key, phrase = tmp_path / 'key', tmp_path / 'phrase'
    key.write_text('-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret-key-body\n')
    phrase.write_text('secret-passphrase')
    failed, result = run_module(archive_extract.main, dict(
        path=str(tmp_path / 'missing.tar.gz.gpg'), dest=str(tmp_path / 'out'),
        decrypt_key_file=str(key), decrypt_passphrase_file=str(phrase)))
    assert failed
    assert not key.exists() and not phrase.exists()
    assert 'secret-key-body' not in repr(result) and 'secret-passphrase' not in repr(result)


def test_archive_extract_says_which_key_file_is_missing(tmp_path):
    from ansible_collections.alation.backup.plugins.modules import archive_extract
    failed, result = run_module(archive_extract.main, dict(
        path=str(tmp_path / 'a.tar.gz.gpg'), dest=str(tmp_path / 'out'), decrypt_key_file=str(tmp_path / 'gone')))
    assert failed and 'decrypt_key_file %s cannot be read' % (tmp_path / 'gone') in result['msg']
