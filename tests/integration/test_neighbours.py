# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two machines sharing one backup storage dir (an NFS /data2/backup), in a real Alation shell (issue 18).

The other machine is faked by what it leaves in the shared dir: its lease,
renewed just now with another machine id, host name and boot id, or its owner
marker, and its archives and pg_probackup catalog. The role must refuse the
run naming that host and leave everything in the storage dir as it was: no
lease taken over, nothing read into the record or the metrics, nothing counted
or removed.
"""

import hashlib
import json
import os
import re
import time

from playbook import HOST, run_playbook

NEIGHBOUR = dict(machine_id='fedcba9876543210fedcba9876543210', hostname='alation-neighbour')
TAG = '5-17-0-116556'


def storage_state(root):
    """Every path below the storage dir with its size, mode and content hash: what a refused run must not change."""
    found = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            digest = None
            if name in files:
                with open(path, 'rb') as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            found[path] = (st.st_size, st.st_mode, st.st_mtime_ns, digest)
    return found


def neighbours_archives(storage, keep=8):
    """The neighbour's archives, one an hour up to now: retention with keep_count 7 would remove the oldest."""
    names = []
    now = int(time.time()) // 60 * 60
    for hours in range(1, keep + 1):  # none in this minute: that name may be this host's own archive
        ts = time.strftime('%Y%m%d%H%M', time.gmtime(now - hours * 3600))
        name = '%s_%s_alation_backup.tar.gz' % (ts, TAG)
        data = ('the neighbour archive of %s' % ts).encode()
        with open(os.path.join(storage, name), 'wb') as f:
            f.write(data)
        with open(os.path.join(storage, name + '.sha256'), 'w') as f:
            f.write('%s  %s\n# size %d\n' % (hashlib.sha256(data).hexdigest(), name, len(data)))
        names.append(name)
    # Its pg_probackup catalog in the shared pg staging dir.
    for sub in ('backups/alation/TP5HJN', 'wal/alation'):
        os.makedirs(os.path.join(storage, 'pgbackup', sub), exist_ok=True)
    with open(os.path.join(storage, 'pgbackup', 'backups', 'alation', 'TP5HJN', 'backup.control'), 'w') as f:
        f.write('status = OK\n')
    return names


def neighbours_live_lease(path):
    now = time.time()
    with open(path, 'w') as f:
        json.dump(dict(NEIGHBOUR, owner='carol via ansible-playbook (AWX job 77)', run_id='77-1764750000.0',
                       pid=4242, started=now - 300, renewed=now - 2, renewed_boottime=1234.5, stale_after=600,
                       boot_id='00000000-0000-4000-8000-000000000077', token='the-neighbours'), f)


def role_run(host, textfile, **extra):
    # min_interval on: the neighbour's fresh archive must not skip this host's run either.
    variables = dict(host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_min_interval=24,
                     alation_backup_metrics_dir=str(textfile))
    variables.update(extra)
    return run_playbook('backup.yml', variables)


def assert_refused_naming_the_neighbour(run, storage, before, textfile):
    assert run.rc != 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'failed' and record['archive'] == '' and record['skipped_reason'] == ''
    error = record['error']
    assert error.startswith('Preflight | Take the host lock, unless the host was backed up recently'), error
    assert 'host alation-neighbour (machine id fedcba987654...)' in error, error
    assert 'Give each host its own backup storage dir' in error, error
    assert record['retention']['removed'] == [] and record['lock_taken_over'] == ''
    assert storage_state(storage) == before, 'nothing in the shared storage dir changed'
    with open(str(textfile / 'alation_backup.prom')) as f:
        metrics = f.read()
    assert 'alation_backup_last_result{result="failed"} 1.0' in metrics
    assert 'newest_archive' not in metrics and 'archives_kept' not in metrics, "the neighbour's archives are not read"


def test_a_neighbours_live_lease_in_a_shared_storage_dir_is_refused_naming_that_host(alation_host, tmp_path):
    host = alation_host
    storage = host.path('/data2/backup')
    os.makedirs(storage, exist_ok=True)
    neighbours_archives(storage)
    # Another machine's lease with another boot id: once read as "the host rebooted" and taken at once.
    neighbours_live_lease(os.path.join(storage, '.alation_backup.lock'))
    os.makedirs(host.path('/data2/tmp'), exist_ok=True)
    with open(host.path('/data2/tmp/the-neighbour-packs-this'), 'w') as f:
        f.write('staged by a run that holds the lease')
    before = storage_state(storage)
    staged = storage_state(host.path('/data2/tmp'))
    textfile = tmp_path / 'textfile'
    textfile.mkdir()
    run = role_run(host, textfile)
    assert_refused_naming_the_neighbour(run, storage, before, textfile)
    assert 'run 77-1764750000.0 of carol via ansible-playbook (AWX job 77) (pid 4242) on host alation-neighbour' \
        in run.records[HOST]['error']
    assert storage_state(host.path('/data2/tmp')) == staged, 'the staging dir is not emptied'


def test_our_first_run_marks_the_storage_dir_and_a_neighbours_marker_is_refused(alation_host, tmp_path):
    host = alation_host
    storage = host.path('/data2/backup')
    textfile = tmp_path / 'textfile'
    textfile.mkdir()
    run = role_run(host, textfile, alation_backup_min_interval=0)
    assert run.rc == 0, run.output
    with open(os.path.join(storage, '.alation_backup_owner')) as f:
        owner = json.load(f)
    with open('/etc/machine-id') as f:
        assert owner['machine_id'] == f.read().strip()
    assert owner['hostname'] == os.uname()[1]
    ours = run.records[HOST]['archive']
    assert ours and os.path.exists(ours)

    # The dir is the neighbour's now (say, the NFS export was mounted on a second host by mistake and it ran
    # first there): its marker, its archives, its catalog; no lease, it is idle.
    with open(os.path.join(storage, '.alation_backup_owner'), 'w') as f:
        json.dump(NEIGHBOUR, f)
    neighbours_archives(storage)
    before = storage_state(storage)
    run = role_run(host, textfile, alation_backup_keep_count=1)
    assert_refused_naming_the_neighbour(run, storage, before, textfile)
    assert 'its owner marker %s/.alation_backup_owner names' % storage in run.records[HOST]['error']


def this_machines_lease(path, wall_ago, boot_ago, stale_after=600):
    """A lease this machine wrote on this boot: renewed ``boot_ago`` seconds ago by the boot clock, while the wall
    clock (which has jumped since) says ``wall_ago``."""
    with open('/etc/machine-id') as f:
        machine_id = f.read().strip()
    with open('/proc/sys/kernel/random/boot_id') as f:
        boot_id = f.read().strip()
    now = time.time()
    with open(path, 'w') as f:
        json.dump(dict(machine_id=machine_id, hostname=os.uname()[1], owner='admin via ansible-playbook (AWX job 41)',
                       run_id='41-1700000000.0', pid=999999, started=now - wall_ago - 60, renewed=now - wall_ago,
                       renewed_boottime=time.clock_gettime(time.CLOCK_BOOTTIME) - boot_ago, stale_after=stale_after,
                       boot_id=boot_id, token='dead'), f)


def test_a_lease_on_this_boot_is_judged_by_the_boot_clock_whichever_way_the_wall_clock_jumped(alation_host, tmp_path):
    host = alation_host
    lock = host.path('/data2/backup/.alation_backup.lock')
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    textfile = tmp_path / 'textfile'
    textfile.mkdir()
    # Renewed 5 s ago, but the wall clock jumped a day ahead since: still a live run, never taken over.
    this_machines_lease(lock, wall_ago=86400 + 5, boot_ago=5)
    run = role_run(host, textfile, alation_backup_min_interval=0)
    assert run.rc != 0
    error = run.records[HOST]['error']
    silent = re.search(r'last renewed (\d+)s ago', error)
    assert 'another run holds the host lock' in error and silent and int(silent.group(1)) < 300, error
    # Killed 700 s ago (stale after 600), and the wall clock was set back a day since: it frees itself all the same.
    this_machines_lease(lock, wall_ago=-86400 + 700, boot_ago=700)
    run = role_run(host, textfile, alation_backup_min_interval=0)
    assert run.rc == 0, run.output
    taken = run.records[HOST]['lock_taken_over']
    assert 'from run 41-1700000000.0 of admin via ansible-playbook (AWX job 41)' in taken, taken
    assert re.search(r'not renewed for 7\d\ds \(stale after 600s\): that run is gone$', taken), taken
    assert not os.path.exists(lock)
