# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""space_check: a clear refusal, naming the numbers, when the backup storage dir is short of space."""

from ansible_collections.alation.backup.plugins.module_utils import _alation
from ansible_collections.alation.backup.plugins.modules import space_check

from .utils import run_module


def test_enough_space_passes_with_the_figures(tmp_path):
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    failed, result = run_module(space_check.main, dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata')))
    assert not failed and result['changed'] is False
    assert result['needed'] == 200 and result['pgdata_bytes'] == 100


def test_short_of_space_names_the_dir_the_need_and_the_way_out(tmp_path, monkeypatch):
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 10)
    failed, result = run_module(space_check.main, dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata'),
                                                       extra_paths=[str(tmp_path / 'pgdata')]))
    assert failed
    assert result['msg'].startswith('the backup storage dir %s has 10 B free' % tmp_path)
    assert 'alation_backup_space_check=false' in result['msg']


def test_what_retention_would_free_counts_and_is_said(tmp_path, monkeypatch):
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 150)
    args = dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata'))
    failed, result = run_module(space_check.main, dict(args, reclaimable=60))
    assert not failed and result['needs_retention'] is True
    failed, result = run_module(space_check.main, dict(args, reclaimable=10))
    assert failed and 'has 150 B free and retention would free 10 B more' in result['msg']
    assert 'alation_backup_keep_count' in result['msg'] and result['needs_retention'] is False
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 1000)
    failed, result = run_module(space_check.main, dict(args, reclaimable=10))
    assert not failed and result['needs_retention'] is False
