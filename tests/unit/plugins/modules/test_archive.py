# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""archive through AnsibleModule (set_module_args harness), on real directories."""

import datetime
import os
import tarfile
import time

import pytest

from .utils import run_module

from ansible_collections.alation.backup.plugins.modules.archive import main

NAME = '202405011230_5-17-0-116556_alation_backup.tar.gz'


@pytest.fixture
def dirs(tmp_path):
    src = tmp_path / 'staging'
    (src / 'catalog').mkdir(parents=True)
    (src / 'catalog' / 'a.json').write_text('{"a": 1}\n' * 50)
    os.symlink('catalog/a.json', str(src / 'latest'))
    dest = tmp_path / 'backup'
    dest.mkdir()
    return str(src), str(dest)


def run(args, check=False):
    return run_module(main, dict(args, _ansible_check_mode=check))


def args(src, dest, **kw):
    a = dict(sources=[dict(path=src, arcname='tmp')], dest=dest, version_tag='5.17.0.116556',
             timestamp='202405011230', compressor='zlib')
    a.update(kw)
    return a


def test_check_mode_writes_nothing(dirs):
    src, dest = dirs
    failed, result = run(args(src, dest), check=True)
    assert not failed and result['changed']
    assert result['path'] == os.path.join(dest, NAME)
    assert result['members'] == 5 and result['source_bytes'] == 450 and result['compressor'] == 'zlib'
    assert result['removed_stale_tmp'] == [] and 'sha256' not in result
    assert os.listdir(dest) == []


def test_creates_archive(dirs):
    src, dest = dirs
    failed, result = run(args(src, dest, manifest_extra=dict(pg_backup_id='SABC12', pg_backup_mode='FULL')))
    assert not failed, result
    assert result['changed'] and result['path'] == os.path.join(dest, NAME)
    assert sorted(os.listdir(dest)) == [NAME, NAME + '.sha256']
    assert result['manifest']['pg_backup_id'] == 'SABC12'
    assert result['manifest']['version_tag'] == '5-17-0-116556'
    with tarfile.open(result['path']) as tar:
        assert tar.getnames() == ['alation_backup_manifest.json', 'tmp', 'tmp/catalog', 'tmp/catalog/a.json',
                                  'tmp/latest']
    failed, again = run(args(src, dest))
    assert failed and 'already exists and is never overwritten' in again['msg']


@pytest.mark.parametrize('bad,msg', [
    (dict(version_tag='5.17'), "version_tag: version '5.17' is not an Alation version"),
    (dict(timestamp='2024050112'), "timestamp '2024050112' must be 12 digits"),
    (dict(timestamp='202402301200'), "timestamp '202402301200' is not a real date"),
    (dict(suffix='a/b'), "suffix 'a/b' may only contain"),
    (dict(mode='rw'), "mode 'rw' must be an octal string"),
    (dict(compression_level=0), 'compression_level 0 must be 1 to 9'),
    (dict(compressor='bzip2'), 'value of compressor must be one of'),
    (dict(sources=[]), 'sources is empty'),
    (dict(sources=[dict(path='/nonexistent/x', arcname='tmp')]), 'source /nonexistent/x (tmp) does not exist'),
    (dict(manifest_extra=dict(host='x')), "manifest_extra key 'host' is reserved"),
])
def test_refusals(dirs, bad, msg):
    src, dest = dirs
    failed, result = run(args(src, dest, **bad))
    assert failed and msg in result['msg'], result
    assert os.listdir(dest) == []


def test_dest_dir_is_an_alias_of_dest(dirs):
    """0.1.0 named the option dest_dir; playbooks written for it keep working."""
    src, dest = dirs
    a = args(src, dest)
    a['dest_dir'] = a.pop('dest')
    failed, result = run(a, check=True)
    assert not failed, result
    assert result['path'] == os.path.join(dest, NAME)


def minute():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M')


def test_timestamp_auto_is_the_default_and_check_mode_does_not_wait(dirs):
    src, dest = dirs
    a = args(src, dest)
    del a['timestamp']
    before = minute()
    failed, result = run(a, check=True)
    assert not failed, result
    assert before <= result['timestamp'] <= minute()
    taken = result['path']
    assert taken == os.path.join(dest, '%s_5-17-0-116556_alation_backup.tar.gz' % result['timestamp'])
    open(taken, 'w').close()  # a run earlier in this minute
    started = time.monotonic()
    failed, result = run(dict(a, timestamp='auto'), check=True)
    assert not failed, result
    assert time.monotonic() - started < 10  # reported, not waited for
    assert result['timestamp'] > os.path.basename(taken)[:12]
    assert result['manifest']['timestamp'] == result['timestamp']
    assert os.listdir(dest) == [os.path.basename(taken)]


# -- state=check: what the archive step needs, checked before the run ----------------------

def test_state_check_needs_no_sources_and_writes_nothing(tmp_path):
    failed, result = run(dict(state='check', compressor='zlib'))
    assert not failed and not result['changed'], result
    assert result['compressor'] == 'zlib' and result['encrypted'] is False and result['recipient'] is None
    assert os.listdir(str(tmp_path)) == []


def test_state_check_refuses_a_compressor_that_is_not_there(monkeypatch):
    from ansible_collections.alation.backup.plugins.module_utils import _archive
    monkeypatch.setattr(_archive, 'available_compressors', lambda: dict(zlib=True))
    failed, result = run(dict(state='check', compressor='pigz'))
    assert failed and 'compressor pigz was asked for but is not available on this host' in result['msg']


def test_state_check_refuses_a_recipient_that_is_no_fingerprint():
    failed, result = run(dict(state='check', encrypt_recipient='backup@example.com', encrypt_public_key='x'))
    assert failed and "encrypt_recipient 'backup@example.com' must be the full fingerprint" in result['msg']


def test_state_present_still_needs_what_it_packs():
    failed, result = run(dict(compressor='zlib'))
    assert failed and 'state is present but all of the following are missing: sources, storage_dir, version_tag' \
        in result['msg']
