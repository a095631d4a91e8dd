# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's role variable tables are what the roles' meta/argument_specs.yml say (tools/role_tables.py, make docs)."""

import importlib.util
import os
import shutil

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


role_tables = _load('role_tables', os.path.join(ROOT, 'tools', 'role_tables.py'))


def _readme():
    with open(os.path.join(ROOT, 'README.md')) as handle:
        return handle.read()


def _options(role):
    options = {}
    for spec in role_tables.load_spec(role).values():
        options.update(spec.get('options') or {})
    return options


def test_readme_tables_are_the_specs():
    readme = _readme()
    assert role_tables.render(readme) == readme, 'README.md role tables differ from roles/*/meta/argument_specs.yml: run make docs'


@pytest.mark.parametrize('role', role_tables.ROLES)
def test_every_option_has_one_row(role):
    readme = _readme()
    block = readme[readme.index(role_tables.BEGIN.format(role=role)):readme.index(role_tables.END.format(role=role))]
    rows = [line.split('|')[1].strip().strip('`') for line in block.splitlines() if line.startswith('| `')]
    assert rows == list(_options(role))


def test_a_changed_spec_is_caught(tmp_path):
    """The check is not vacuous: a default changed in a spec alone makes the README differ."""
    for role in role_tables.ROLES:
        os.makedirs(str(tmp_path / 'roles' / role / 'meta'))
        shutil.copy(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml'),
                    str(tmp_path / 'roles' / role / 'meta' / 'argument_specs.yml'))
    readme = _readme()
    assert role_tables.render(readme, str(tmp_path)) == readme
    path = tmp_path / 'roles' / 'backup' / 'meta' / 'argument_specs.yml'
    spec = yaml.safe_load(path.read_text())
    spec['argument_specs']['main']['options']['alation_backup_keep_count']['default'] = 8
    path.write_text(yaml.safe_dump(spec))
    changed = role_tables.render(readme, str(tmp_path))
    assert changed != readme
    assert '| `alation_backup_keep_count` | int | `8` |' in changed


def test_markers_missing_is_an_error():
    with pytest.raises(ValueError, match='lacks the markers'):
        role_tables.render('# no tables here\n')


@pytest.mark.parametrize('text, markdown', [
    ('C(/data2/tmp) and O(alation_restore_confirm=YES), V(0)', '`/data2/tmp` and `alation_restore_confirm=YES`, `0`'),
    ('C(ssh://[user@]host[:port]/path)', '`ssh://[user@]host[:port]/path`'),
    ('C(gpg --armor --export <fingerprint>)', '`gpg --armor --export <fingerprint>`'),
    ('a | b', 'a \\| b'),
])
def test_markup(text, markdown):
    assert role_tables.markup(text) == markdown


def test_backup_defaults_are_the_spec():
    """defaults/main.yml (what the role uses) and the spec (what the table shows) give every variable the same default."""
    with open(os.path.join(ROOT, 'roles', 'backup', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    options = _options('backup')
    assert set(defaults) == set(options)
    assert {k: o.get('default') for k, o in options.items()} == defaults
