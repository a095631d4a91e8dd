# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""retention: protect and archives named in the future, through the module's options, result and warnings."""

import os

from ansible.module_utils import basic

from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name
from ansible_collections.alation.backup.plugins.modules import retention

import archives  # tests/support

from .utils import run_module


def publish(d, ts):
    return archives.publish(d, ts, repeat=1)


def test_protect_keeps_the_run_s_archive_and_names_in_the_future_are_warned_of(tmp_path, monkeypatch):
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, text: warned.append(text))
    older = [publish(tmp_path, ts) for ts in ('202001010000', '202001020000')]
    future = [publish(tmp_path, ts) for ts in ('209901010000', '209901020000')]
    # A clock that jumped back named the run's own archive before the older ones.
    own = publish(tmp_path, '201901010000')
    failed, result = run_module(retention.main, dict(dir=str(tmp_path), keep_count=2, protect=[own]))
    assert not failed and result['changed'] is True
    assert [r['path'] for r in result['removed']] == [older[0], older[0] + '.sha256']
    assert sorted(k['path'] for k in result['kept']) == sorted([own, older[1]])
    assert result['future_archives'] == future
    [warning] = warned
    assert warning.startswith('retention in %s: 2 archive(s) named more than an hour ahead' % tmp_path)
    assert all(f in warning for f in future)


def test_check_mode_predicts_the_same_and_no_warning_without_future_names(tmp_path, monkeypatch):
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, text: warned.append(text))
    own = publish(tmp_path, '201901010000')
    newer = publish(tmp_path, '202001010000')
    failed, result = run_module(retention.main, dict(dir=str(tmp_path), keep_count=1, protect=[own],
                                                     _ansible_check_mode=True))
    assert not failed and result['removed'] == [] and result['future_archives'] == [] and warned == []
    assert sorted(k['path'] for k in result['kept']) == sorted([own, newer])


def test_keep_count_0_the_default_keeps_every_archive(tmp_path):
    """One default with offsite_copy: 0 is retention off (the role passes alation_backup_keep_count)."""
    for day in range(1, 4):
        (tmp_path / archive_name('2026110%d0102' % day, '5-17-0-116556')).write_bytes(b'x')
    before = sorted(os.listdir(str(tmp_path)))
    failed, result = run_module(retention.main, dict(storage_dir=str(tmp_path)))
    assert not failed and not result['changed'] and result['removed'] == [] and len(result['kept']) == 3
    assert 'retention is off' in result['refused'] and sorted(os.listdir(str(tmp_path))) == before


def test_tiers_pins_and_the_rules_that_keep_each_archive_check_mode_exact(tmp_path):
    stamps = ('202001010000', '202001020000', '202001020600', '202001030000', '202002010000')
    paths = [publish(tmp_path, ts) for ts in stamps]
    (tmp_path / (os.path.basename(paths[0]) + '.keep')).write_text('')
    args = dict(dir=str(tmp_path), keep_count=1, keep_daily=2, keep_monthly=2)
    failed, check = run_module(retention.main, dict(args, _ansible_check_mode=True))
    assert not failed and check['changed'] is True
    assert [(os.path.basename(k['path'])[:12], k['rules']) for k in check['kept']] == [
        ('202001010000', ['pinned (.keep)']),
        ('202001030000', ['daily 2020-01-03', 'monthly 2020-01']),
        ('202002010000', ['newest good', 'count', 'daily 2020-02-01', 'monthly 2020-02'])]
    assert [r['path'] for r in check['removed']] == [paths[1], paths[1] + '.sha256', paths[2], paths[2] + '.sha256']
    assert len(os.listdir(str(tmp_path))) == 11, 'check mode removes nothing'
    failed, result = run_module(retention.main, args)
    assert not failed and result['removed'] == check['removed'] and result['kept'] == check['kept']
    assert not any(os.path.exists(r['path']) for r in result['removed'])


def test_tiers_with_keep_count_0_and_a_bad_pin_are_refused(tmp_path):
    failed, result = run_module(retention.main, dict(dir=str(tmp_path), keep_daily=7))
    assert failed and 'keep_daily=7: keep_count=0 turns retention off' in result['msg']
    publish(tmp_path, '202001010000')
    failed, result = run_module(retention.main, dict(dir=str(tmp_path), keep_count=1, keep_pinned=['june.tar.gz']))
    assert failed and "keep_pinned: 'june.tar.gz' is not an archive name" in result['msg']
