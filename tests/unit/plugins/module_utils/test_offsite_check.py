# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""offsite_copy state=check, the copy target checked in preflight: the far side is a local directory whose
scripts run with sh for real (the doubles of test_offsite.py)."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _offsite

from .test_offsite import FarSide, copier


def test_the_probe_makes_the_host_dir_and_leaves_no_file(tmp_path):
    far = FarSide()
    c = copier(tmp_path, far)
    assert _offsite.check_target(c) == dict(result='ok', dest=c.where, method='stream')
    host_dir = tmp_path / 'far' / 'alation-1'
    assert host_dir.is_dir() and os.listdir(str(host_dir)) == []
    assert oct(host_dir.stat().st_mode & 0o777) == '0o700'
    [script] = far.scripts
    assert ': > .alation-backup-probe.' in script and 'rm -f -- .alation-backup-probe.' in script


def test_rsync_is_the_method_when_both_ends_have_it(tmp_path):
    assert _offsite.check_target(copier(tmp_path, FarSide(rsync=True)))['method'] == 'rsync'


def test_rsync_asked_for_but_missing_there_is_refused(tmp_path):
    with pytest.raises(_offsite.CopyError, match='rsync is missing on the backup host backuphost'):
        _offsite.check_target(copier(tmp_path, FarSide(rsync=False), method='rsync', rsync='/usr/bin/rsync'))


def test_an_unknown_host_key_is_refused_saying_what_to_do(tmp_path):
    with pytest.raises(_offsite.CopyError) as e:
        _offsite.check_target(copier(tmp_path, FarSide(host_key_ok=False)))
    msg = str(e.value)
    assert 'writing a probe file in backup@backuphost:%s' % (tmp_path / 'far' / 'alation-1') in msg
    assert 'Host key verification failed' in msg and 'alation_backup_copy_known_hosts' in msg


def test_a_host_dir_that_cannot_be_made_is_refused(tmp_path):
    # A file where the per-host dir should be (root writes into any dir, so no mode would stop it here).
    (tmp_path / 'far').mkdir()
    (tmp_path / 'far' / 'alation-1').write_text('not a dir')
    with pytest.raises(_offsite.CopyError, match='writing a probe file in .* failed \\(exit 1\\)'):
        _offsite.check_target(copier(tmp_path, FarSide()))


def test_check_mode_runs_nothing(tmp_path):
    far = FarSide()
    c = copier(tmp_path, far)
    assert _offsite.check_target(c, check_mode=True)['result'] == 'skipped'
    assert far.scripts == [] and not (tmp_path / 'far').exists()
    assert c.runner.executed_commands[-1].endswith('(check mode: not run)')
