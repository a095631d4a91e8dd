# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_defaults on the collection's action groups, through ansible-playbook (issue 19).

Every key a group's module_defaults set reaches every module of the group: the
"none" values ({} for lease, '' for chroot and the connection) are accepted and
read as unset, a real lease set once for the group is kept and checked by each
module, and the old option names (dir, path, dest) still work beside
storage_dir.
"""

import json
import os

from playbook import HOST, run_playbook

PLAY = '''
- hosts: alation
  gather_facts: false
  vars:
    storage: "%(storage)s"
  module_defaults:
    group/alation.backup.leased:
      lease: {}
    group/alation.backup.shell:
      chroot: ''
    group/alation.backup.postgres:
      host: "%(host)s"
      port: %(port)d
      user: "%(user)s"
      dbname: ''
      bindir: ''
      run_as: "%(os_user)s"
  tasks:
    - name: No lease, a plain host - a staging dir
      alation.backup.staging_dir:
        path: "{{ storage }}/tmp"
        state: empty
      register: staging

    - name: The space check (path, its old name)
      alation.backup.space_check:
        path: "{{ storage }}"
        pgdata: "{{ storage }}/tmp"
      register: space

    - name: The connection from the postgres group, dbname '' is postgres
      alation.backup.pg_ping:
      register: ping

    - name: Its inventory the same way
      alation.backup.pg_inventory:
      register: inventory

    - name: Take the host lock
      alation.backup.backup_lock:
        path: "{{ storage }}/.alation_backup.lock"
        run_id: shape-test
        owner: test
      register: lock

    - name: Work under the lease, set once for the group
      module_defaults:
        group/alation.backup.leased:
          lease:
            path: "{{ storage }}/.alation_backup.lock"
            token: "{{ lock.token }}"
      block:
        - name: Empty the staging dir under the lease
          alation.backup.staging_dir:
            path: "{{ storage }}/tmp"
            state: empty
          register: leased_staging

        - name: Retention (dir, its old name; keep_count 0 is off)
          alation.backup.retention:
            dir: "{{ storage }}"
          register: retention

    - name: Release the host lock
      alation.backup.backup_lock:
        path: "{{ storage }}/.alation_backup.lock"
        state: absent
        token: "{{ lock.token }}"

    - name: Save what each module said
      ansible.builtin.copy:
        dest: "{{ storage }}/results.json"
        content: "{{ dict(staging=staging, space=space, ping=ping, inventory=inventory, lock=lock,
                          leased_staging=leased_staging, retention=retention) | to_json }}"
        mode: '0600'
'''


def test_module_defaults_on_every_group_reach_every_module(pg_cluster, scratch):
    storage = os.path.join(scratch, 'backup')
    os.makedirs(os.path.join(storage, 'tmp', 'old'))
    with open(os.path.join(storage, 'tmp', 'old', 'file'), 'w') as f:
        f.write('left by the last run')
    playbook = os.path.join(scratch, 'shape.yml')
    with open(playbook, 'w') as f:
        f.write(PLAY % dict(storage=storage, host=pg_cluster.host, port=pg_cluster.port, user=pg_cluster.db_user,
                            os_user=pg_cluster.os_user))
    run = run_playbook(playbook, {}, workdir=scratch)
    assert run.rc == 0, run.output
    assert 'ok=' in run.output and HOST in run.output
    with open(os.path.join(storage, 'results.json')) as f:
        r = json.load(f)
    assert r['staging']['changed'] and r['staging']['removed_files'] == 1
    assert r['space']['free'] > 0 and not r['space']['failed']
    assert r['ping']['replication'] is True and r['ping']['server_version_num'] >= 150000
    assert 'postgres' in r['inventory']['databases']
    assert not r['leased_staging']['changed'] and not r['leased_staging'].get('failed')
    assert not r['retention']['changed'] and 'retention is off' in r['retention']['refused']
    assert not os.path.exists(os.path.join(storage, '.alation_backup.lock'))


def test_a_lease_set_for_the_group_is_checked_by_each_module(scratch):
    """The group's lease is the run's: once another run holds the lock, the module stops before emptying."""
    storage = os.path.join(scratch, 'backup')
    os.makedirs(os.path.join(storage, 'tmp', 'keep'))
    with open(os.path.join(storage, 'tmp', 'keep', 'file'), 'w') as f:
        f.write('the other run packs this')
    playbook = os.path.join(scratch, 'lost.yml')
    with open(playbook, 'w') as f:
        f.write('''
- hosts: alation
  gather_facts: false
  tasks:
    - name: A lease that is not (or no longer) this run's
      alation.backup.backup_lock:
        path: "%(storage)s/.alation_backup.lock"
        run_id: the-other-run
        owner: other
      register: other

    - name: Empty the staging dir with a stale token for the group
      module_defaults:
        group/alation.backup.leased:
          lease:
            path: "%(storage)s/.alation_backup.lock"
            token: not-the-token
      alation.backup.staging_dir:
        path: "%(storage)s/tmp"
        state: empty
''' % dict(storage=storage))
    run = run_playbook(playbook, {}, workdir=scratch)
    assert run.rc != 0
    assert 'no longer holds the host lock' in run.output and 'Stopped before emptying the staging dir' in run.output
    assert os.path.exists(os.path.join(storage, 'tmp', 'keep', 'file'))
