# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The oldest hosts and controllers the collection admits, for real.

RHEL 8's platform-python is 3.6, and ansible-core 2.16 (the oldest that
meta/runtime.yml's requires_ansible admits) is the last that runs modules on
it. A backup and the drill run inside the real Alation shell with that
controller driving that Python; and role inputs left null behave the same on
2.16 and on the pinned 2.19.
"""

import glob
import os
import subprocess

import pytest

from playbook import HOST, run_playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_216 = os.path.join(REPO, '.venv-ansible-2.16', 'bin', 'ansible-playbook')


def pyenv_python(version):
    try:
        root = subprocess.run(['pyenv', 'root'], stdout=subprocess.PIPE, universal_newlines=True,
                              check=False).stdout.strip()
    except OSError:
        root = os.path.expanduser('~/.pyenv')
    found = sorted(glob.glob(os.path.join(root or os.path.expanduser('~/.pyenv'), 'versions', version + '.*',
                                          'bin', 'python' + version)))
    return found[-1] if found else None


@pytest.fixture(scope='module')
def oldest():
    python36 = pyenv_python('3.6')
    if not os.access(ANSIBLE_216, os.X_OK):
        pytest.skip('ansible-core 2.16 not installed in .venv-ansible-2.16 (make venvs): the oldest controller '
                    'is not tested')
    if not python36:
        pytest.skip('no Python 3.6 under pyenv: the oldest host Python is not tested')
    return dict(ansible_playbook=ANSIBLE_216, interpreter=python36)


def test_ansible_core_2_16_backs_up_and_drills_on_python_3_6(alation_host, oldest):
    host = alation_host
    engine = {} if host.has_pg_probackup else {'alation_backup_engine': 'pg_basebackup'}
    run = run_playbook('backup.yml', dict(host.role_vars, **engine), **oldest)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['archive'], record
    drill = run_playbook('verify_backup.yml', {'alation_restore_root': host.root}, **oldest)
    assert drill.rc == 0, drill.output
    assert set(c['result'] for c in drill.records[HOST]['checks'].values()) == {'ok'}


# Inputs an AWX survey or an inventory may leave empty (null), for each role.
NULL_INPUTS = dict(alation_backup_staging_dir=None, alation_backup_group=None, alation_backup_pg_password=None,
                   alation_backup_pg_probackup_binary=None, alation_backup_pg_bindir=None,
                   alation_backup_extra_paths=None, alation_backup_allowed_roots=None)


@pytest.mark.parametrize('controller', ['2.16', '2.19'])
def test_null_inputs_behave_as_their_defaults(alation_host, oldest, controller):
    host = alation_host
    engine = {} if host.has_pg_probackup else {'alation_backup_engine': 'pg_basebackup'}
    kwargs = dict(oldest) if controller == '2.16' else {}
    variables = dict(host.role_vars, **engine)
    variables.update(NULL_INPUTS)
    run = run_playbook('backup.yml', variables, **kwargs)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok', record
    assert os.path.basename(os.path.dirname(record['archive'])) == 'backup'
    assert os.listdir(host.path('/data2/tmp')) == []
