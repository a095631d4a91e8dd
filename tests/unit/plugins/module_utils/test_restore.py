# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_restore: where a restore writes (empty or absent; the old one moved aside, and back when it fails)."""

import datetime
import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _restore
from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._restore import RestoreError


NOW = datetime.datetime(2024, 5, 1, 12, 30, 5, tzinfo=datetime.timezone.utc)


def test_restore_error_is_a_host_error():
    assert issubclass(RestoreError, HostError)


def test_prepare_target_accepts_empty_and_absent(tmp_path):
    (tmp_path / 'empty').mkdir()
    assert _restore.prepare_target(str(tmp_path / 'empty'), False, 'pgdata') is None
    assert _restore.prepare_target(str(tmp_path / 'none'), False, 'pgdata') is None


def test_prepare_target_refuses_a_non_empty_dir_without_force(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'x').write_text('x')
    with pytest.raises(RestoreError, match='pgdata .*/d is not empty.*set force'):
        _restore.prepare_target(str(tmp_path / 'd'), False, 'pgdata')
    assert os.listdir(tmp_path / 'd') == ['x']


def test_prepare_target_with_force_moves_aside_never_deletes(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'x').write_text('x')
    assert _restore.prepare_target(str(tmp_path / 'd'), True, 'pgdata', now=NOW, dry_run=True) == \
        str(tmp_path / 'd.before-restore-20240501T123005Z')
    assert os.listdir(tmp_path / 'd') == ['x']
    aside = _restore.prepare_target(str(tmp_path / 'd'), True, 'pgdata', now=NOW)
    assert os.listdir(aside) == ['x'] and not os.path.exists(tmp_path / 'd')


def test_prepare_target_refuses_to_move_onto_an_earlier_aside(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'x').write_text('x')
    (tmp_path / 'd.before-restore-20240501T123005Z').mkdir()
    with pytest.raises(RestoreError, match='exists already; wait a second'):
        _restore.prepare_target(str(tmp_path / 'd'), True, 'pgdata', now=NOW)
    assert os.listdir(tmp_path / 'd') == ['x']


@pytest.mark.parametrize('kind', ['file', 'link'])
def test_prepare_target_refuses_what_is_no_directory(tmp_path, kind):
    path = tmp_path / 'p'
    if kind == 'file':
        path.write_text('x')
    else:
        os.symlink(str(tmp_path), str(path))
    with pytest.raises(RestoreError, match='give a directory'):
        _restore.prepare_target(str(path), True, 'pgdata')


def test_aside_name_strips_a_trailing_slash():
    assert _restore.aside_name('/data2/pgdata/', NOW) == '/data2/pgdata.before-restore-20240501T123005Z'


def written(path):
    os.makedirs(str(path), exist_ok=True)
    (path / 'new').write_text('restored')
    os.symlink('/etc', str(path / 'link'))


def test_undo_target_puts_back_what_was_moved_aside(tmp_path):
    path, aside = tmp_path / 'pgdata', tmp_path / 'pgdata.before-restore-x'
    aside.mkdir()
    (aside / 'old').write_text('old')
    written(path)
    warnings = []
    _restore.undo_target(str(path), True, str(aside), warnings.append)
    assert os.listdir(path) == ['old'] and not aside.exists() and warnings == []
    assert os.path.isdir('/etc')  # the link was removed, not followed


def test_undo_target_removes_what_it_made_and_empties_what_was_there(tmp_path):
    made, there = tmp_path / 'made', tmp_path / 'there'
    written(made)
    written(there)
    warnings = []
    _restore.undo_target(str(made), True, None, warnings.append)
    _restore.undo_target(str(there), False, None, warnings.append)
    assert not made.exists() and os.listdir(there) == [] and warnings == []


def test_undo_and_remove_made_only_warn_when_they_cannot(tmp_path):
    warnings = []
    path = tmp_path / 'file'
    path.write_text('x')  # no directory: clear_tree refuses
    assert _restore.remove_made(str(path), warnings.append) is False
    _restore.undo_target(str(path), True, str(tmp_path / 'aside'), warnings.append)
    _restore.undo_target(str(path), False, None, warnings.append)
    assert len(warnings) == 3 and 'could not remove' in warnings[0] and 'could not empty' in warnings[2]
    assert _restore.remove_made(str(tmp_path / 'never-made'), warnings.append) is True
