# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The off-host copy's core: the argv (never a secret on it), the temp-name / verify / rename sequence, and
retention on the far side.

The far side here is a local directory: the ssh double runs the remote script with ``sh -c`` for real, so the
shell lines the core sends are tested as a backup host runs them; the stream double pipes the file into it.
The real sshd is in tests/integration/test_offsite_copy.py.
"""

import calendar
import os
import pathlib
import shlex
import subprocess
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive_names as N
from ansible_collections.alation.backup.plugins.module_utils import _offsite as O
from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner

import archives  # tests/support

from .runner_double import ModuleDouble

TAG = archives.TAG
NOW = calendar.timegm(time.strptime('202611301200', '%Y%m%d%H%M'))
KEY = '-----BEGIN OPENSSH PRIVATE KEY-----'


def publish(d, ts, data=None):
    """An archive and its .sha256 as the archive module leaves them (tests/support/archives.py), as a Path."""
    return pathlib.Path(archives.publish(d, ts, data=data, repeat=1))


def sh(script, stdin=None):
    proc = subprocess.run(['sh', '-c', script], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class FarSide(object):
    """Answers for ssh and rsync as a backup host whose per-host dir is a local directory."""

    def __init__(self, rsync=False, host_key_ok=True, corrupt=False, capacity=None):
        self.rsync = rsync
        self.host_key_ok = host_key_ok
        self.corrupt = corrupt
        # A far side of this many bytes (df answers with what its files leave), or the real df.
        self.capacity = capacity
        self.scripts = []
        self.env = []

    def ssh(self, argv):
        if not self.host_key_ok:
            return 255, '', 'Host key verification failed.\r\n'
        script = argv[-1]
        self.scripts.append(script)
        if not self.rsync:
            script = script.replace('command -v rsync', 'command -v rsync-not-here')
        if self.capacity is not None and script.endswith('df -Pk -- .'):
            d = shlex.split(script)[2]
            used = sum(O.blocks(os.path.getsize(os.path.join(d, n))) for n in os.listdir(d))
            free = max(0, self.capacity - used)
            return 0, ('Filesystem 1024-blocks Used Available Capacity Mounted on\n'
                       'far %d %d %d %d%% /far\n' % (self.capacity // 1024, used // 1024, free // 1024,
                                                     100 * used // self.capacity)), ''
        return sh(script)

    def rsync_(self, argv):
        local, remote = argv[-2], argv[-1]
        dest = remote.split(':', 1)[1]
        data = open(local, 'rb').read()
        with open(dest, 'wb') as f:
            f.write(data[:-1] + b'X' if self.corrupt else data)
        return 0, '', ''

    def send(self, runner, argv, path, env):
        self.env.append(env)
        runner.executed_commands.append(' '.join(argv))
        self.scripts.append(argv[-1])
        if not self.host_key_ok:
            return dict(rc=255, stdout='', stderr='Host key verification failed.')
        if self.corrupt:
            with open(path, 'rb') as f, open(shlex.split(argv[-1])[-1], 'wb') as out:
                out.write(f.read()[:-1] + b'X')
            return dict(rc=0, stdout='', stderr='')
        with open(path, 'rb') as f:
            rc, out, err = sh(argv[-1], stdin=f)
        return dict(rc=rc, stdout=out, stderr=err)


class EnvDouble(ModuleDouble):
    def __init__(self, programs):
        super(EnvDouble, self).__init__(programs)
        self.environs = []

    def run_command(self, argv, environ_update=None, data=None, binary_data=False):
        self.environs.append(dict(environ_update or {}))
        return super(EnvDouble, self).run_command(argv, environ_update, data, binary_data)


def copier(tmp_path, far, method='auto', **kwargs):
    module = EnvDouble({'ssh': far.ssh, 'rsync': far.rsync_})
    runner = Runner(module)
    target = O.parse_target('backup@backuphost:%s' % (tmp_path / 'far'))
    kwargs.setdefault('rsync', '/usr/bin/rsync' if far.rsync else None)
    return O.Copier(runner, target, 'alation-1', method=method, ssh='/usr/bin/ssh', send=far.send, **kwargs)


@pytest.fixture
def local(tmp_path):
    d = tmp_path / 'local'
    d.mkdir()
    return publish(d, '202611300102', os.urandom(4096))


def far_files(tmp_path):
    """The per-host dir's files but the owner marker (each copy makes it)."""
    d = tmp_path / 'far' / 'alation-1'
    return sorted(n for n in os.listdir(str(d)) if n != O.OWNER_MARKER) if d.exists() else []


# -- the target and the argv --------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('backup@backuphost:/srv/alation-backups', ('backup', 'backuphost', 22, '/srv/alation-backups')),
    ('backuphost:/srv/b/', ('', 'backuphost', 22, '/srv/b')),
    ('ssh://backup@10.0.0.5:2222/srv/b', ('backup', '10.0.0.5', 2222, '/srv/b')),
    ('backup@[::1]:/srv/b', ('backup', '::1', 22, '/srv/b')),
    ({'host': 'backuphost', 'port': 2200, 'user': 'backup', 'path': '/srv/b'}, ('backup', 'backuphost', 2200, '/srv/b')),
    ({'host': 'backuphost', 'path': '/srv/b'}, ('', 'backuphost', 22, '/srv/b')),
])
def test_parse_target(value, expected):
    assert tuple(O.parse_target(value)) == expected


@pytest.mark.parametrize('value, message', [
    ('backuphost', 'give \\[user@\\]host:/path'),
    ('backuphost:relative/path', 'give'),
    ('-oProxyCommand=x:/srv', 'not a host name'),
    ({'host': 'h', 'path': '/srv', 'pass': 'x'}, 'unknown keys pass'),
    ({'host': 'h', 'path': '/srv', 'port': 70000}, 'port 70000'),
    ({'host': 'h', 'path': 'srv'}, 'absolute path'),
    ({'host': 'h', 'path': '/srv', 'user': 'a b'}, 'not a user name'),
])
def test_parse_target_refuses_with_the_way_out(value, message):
    with pytest.raises(O.CopyError, match=message):
        O.parse_target(value)


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', 'host name'])
def test_host_dir_is_one_safe_name(name):
    with pytest.raises(O.CopyError, match='host_dir'):
        O.host_dir_name(name)


def test_ssh_argv_checks_the_host_key_and_names_the_key_file_only(tmp_path):
    key = tmp_path / 'id'
    key.write_text(KEY + '\nsecret\n')
    argv = O.ssh_options('/usr/bin/ssh', O.parse_target('ssh://backup@h:2222/srv'), str(key), '/etc/kh', 10)
    # No ssh_config is read: a site's ForwardAgent or host-key settings cannot reach the copy.
    assert argv[:7] == ['/usr/bin/ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes']
    assert '-o ForwardAgent=no' in ' '.join(argv)
    joined = ' '.join(argv)
    assert '-o UserKnownHostsFile=/etc/kh -o GlobalKnownHostsFile=/dev/null' in joined
    assert '-i %s -o IdentitiesOnly=yes' % key in joined and '-p 2222 -l backup' in joined
    assert 'secret' not in joined and 'BEGIN' not in joined
    assert 'UserKnownHostsFile="/a b/kh"' in ' '.join(O.ssh_options('ssh', O.parse_target('h:/s'), None, '/a b/kh'))


# -- the copy ----------------------------------------------------------------------------

def test_stream_copy_writes_temp_names_verifies_then_renames(tmp_path, local):
    far = FarSide()
    c = copier(tmp_path, far, ssh_auth_sock='/run/agent.sock')
    changed, record, warnings = O.run_copy(c, str(local))
    assert changed and record['result'] == 'ok' and record['method'] == 'stream' and not warnings
    assert record['bytes'] == 4096 and record['error'] == ''
    assert record['dest'] == 'backup@backuphost:%s/alation-1/%s' % (tmp_path / 'far', local.name)
    assert far_files(tmp_path) == [local.name, local.name + '.sha256']
    far_dir = tmp_path / 'far' / 'alation-1'
    assert (far_dir / local.name).read_bytes() == local.read_bytes()
    assert (far_dir / (local.name + '.sha256')).read_bytes() == (local.parent / (local.name + '.sha256')).read_bytes()
    assert oct(os.stat(str(far_dir / local.name)).st_mode & 0o777) == '0o600'
    # The sequence: make (and claim) the dir, ask df for room, stream each file to a hidden temp name, hash both
    # there, rename archive first.
    steps = far.scripts
    assert steps[0].startswith('umask 077 && mkdir -p -- ')
    assert steps[1].endswith('df -Pk -- .')
    assert steps[2].startswith('umask 077 && cat > ') and '/.%s.' % local.name in steps[2] and steps[2].endswith('.tmp')
    assert '/.%s.sha256.' % local.name in steps[3]
    assert 'sha256sum -- .%s.' % local.name in steps[4]
    mv = steps[5]
    assert mv.index('mv -f -- .%s.' % local.name) < mv.index(' %s.sha256' % local.name)
    # The agent's socket travels in the environment, never on a command line.
    assert far.env == [{'SSH_AUTH_SOCK': '/run/agent.sock'}] * 2
    assert all(e.get('SSH_AUTH_SOCK') == '/run/agent.sock' for e in c.runner.module.environs)
    assert not any('agent.sock' in cmd for cmd in c.runner.executed_commands)


def test_rsync_when_both_ends_have_it(tmp_path, local):
    far = FarSide(rsync=True)
    c = copier(tmp_path, far)
    changed, record, dummy = O.run_copy(c, str(local))
    assert record['result'] == 'ok' and record['method'] == 'rsync'
    rsyncs = [a for a in c.runner.module.calls if os.path.basename(a[0]) == 'rsync']
    assert len(rsyncs) == 2
    argv = rsyncs[0]
    assert argv[argv.index('-e') + 1].startswith('/usr/bin/ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes')
    assert '--inplace' in argv, 'a killed rsync leaves only our temp name, which the next copy knows'
    assert '--protect-args' in argv and argv[-1].startswith('backuphost:%s/alation-1/.%s.' % (tmp_path / 'far', local.name))
    assert far_files(tmp_path) == [local.name, local.name + '.sha256']
    # method=stream is honoured even where rsync is.
    assert copier(tmp_path, FarSide(rsync=True), method='stream').choose_method(True) == 'stream'
    with pytest.raises(O.CopyError, match='rsync is missing on the backup host'):
        copier(tmp_path, FarSide(rsync=True), method='rsync').choose_method(False)


@pytest.mark.parametrize('rsync', [False, True])
def test_a_copy_that_does_not_verify_is_not_kept_and_leaves_no_temp_file(tmp_path, local, rsync):
    before = local.read_bytes()
    far = FarSide(rsync=rsync, corrupt=True)
    changed, record, dummy = O.run_copy(copier(tmp_path, far), str(local))
    assert record['result'] == 'failed' and not changed
    assert 'hashes to' in record['error'] and 'not kept' in record['error']
    assert far_files(tmp_path) == [], 'no temp file and no final name on the far side'
    assert local.read_bytes() == before and os.path.exists(str(local) + '.sha256'), 'the local archive is kept'


def test_a_refused_host_key_fails_the_copy_saying_why(tmp_path, local):
    far = FarSide(host_key_ok=False)
    changed, record, dummy = O.run_copy(copier(tmp_path, far), str(local))
    assert record['result'] == 'failed'
    assert 'Host key verification failed' in record['error'] and 'alation_backup_copy_known_hosts' in record['error']
    assert far_files(tmp_path) == [] and far.scripts == []


def test_an_archive_already_there_and_good_is_not_sent_again(tmp_path, local):
    O.run_copy(copier(tmp_path, FarSide()), str(local))
    far = FarSide()
    changed, record, dummy = O.run_copy(copier(tmp_path, far), str(local))
    assert record['result'] == 'ok' and not changed and record['method'] == ''
    assert not any('cat >' in s for s in far.scripts)


def test_an_archive_without_a_good_sha256_is_not_copied(tmp_path, local):
    os.unlink(str(local) + '.sha256')
    changed, record, dummy = O.run_copy(copier(tmp_path, FarSide()), str(local))
    assert record['result'] == 'failed' and 'cannot be copied without its .sha256' in record['error']


def test_check_mode_sends_nothing(tmp_path, local):
    far = FarSide()
    c = copier(tmp_path, far)
    changed, record, dummy = O.run_copy(c, str(local), dict(keep_count=1), check_mode=True)
    assert changed and record['result'] == 'skipped' and far.scripts == [] and far_files(tmp_path) == []
    assert all(cmd.endswith('(check mode: not run)') for cmd in c.runner.executed_commands)


# -- retention on the far side -----------------------------------------------------------

def far_archives(tmp_path, days):
    d = tmp_path / 'far' / 'alation-1'
    d.mkdir(parents=True, exist_ok=True)
    (d / 'notes.txt').write_text('the backup admin keeps notes here')
    (d / ('.%s.otherhost.1.tmp' % archive_name('202611290102', TAG))).write_bytes(b'another host writing')
    return [publish(d, '202611%02d0102' % day).name for day in days]


def test_far_side_retention_removes_exactly_the_older_copies(tmp_path, local):
    older = far_archives(tmp_path, range(24, 30))
    far_dir = '%s/alation-1/' % (tmp_path / 'far')
    gone = [n for day in older[:4] for n in (day, day + '.sha256')]
    sizes = sum(os.path.getsize(far_dir + n) for n in gone)
    changed, record, warnings = O.run_copy(copier(tmp_path, FarSide()), str(local), dict(keep_count=3))
    assert record['result'] == 'ok' and not warnings
    assert record['retention']['removed'] == [far_dir + n for n in gone]
    assert record['retention']['freed_bytes'] == sizes
    left = far_files(tmp_path)
    assert [n for n in left if n.endswith('.tar.gz')] == older[4:] + [local.name]
    assert 'notes.txt' in left and any(n.endswith('.otherhost.1.tmp') for n in left), 'foreign and temp files stay'


def test_far_side_retention_takes_the_same_tiers_and_pins(tmp_path, local):
    """The rules dict passes through unchanged: tiers, keep_pinned, and a .keep file there, each named in kept."""
    older = far_archives(tmp_path, range(20, 30))
    far_dir = '%s/alation-1/' % (tmp_path / 'far')
    (tmp_path / 'far' / 'alation-1' / (older[0] + '.keep')).write_text('')
    rules = dict(keep_count=1, keep_daily=3, keep_pinned=[older[1]])
    changed, record, warnings = O.run_copy(copier(tmp_path, FarSide()), str(local), rules)
    assert record['result'] == 'ok' and not warnings
    kept = [(os.path.basename(k['path']), k['rules']) for k in record['retention']['kept']]
    assert kept[:2] == [(older[0], ['pinned (.keep)']), (older[1], ['pinned (keep_pinned)'])]
    assert [name for name, dummy in kept[2:]] == older[-2:] + [local.name]
    assert kept[-1][1][:3] == ['newest good', 'this run', 'count']
    assert record['retention']['removed'] == [far_dir + n for day in older[2:-2] for n in (day, day + '.sha256')]
    assert older[0] + '.keep' in far_files(tmp_path), 'a pin stays with its archive'


def test_far_side_retention_verifies_a_newest_it_did_not_copy(tmp_path, local):
    far_archives(tmp_path, range(24, 30))
    # A newer archive on the far side (another clock) that does not match its .sha256: nothing older goes.
    newer = tmp_path / 'far' / 'alation-1' / archive_name('202612010102', TAG)
    publish(newer.parent, '202612010102')
    newer.write_bytes(b'damaged')
    changed, record, warnings = O.run_copy(copier(tmp_path, FarSide()), str(local), dict(keep_count=2))
    assert record['result'] == 'ok' and record['retention']['removed'] == []
    assert 'does not match its .sha256' in record['retention']['refused'] and 'hashes to' in record['retention']['refused']
    assert warnings and 'retention on' in warnings[0]
    # Once the newest there is good again, retention runs.
    publish(newer.parent, '202612010102')
    changed, record, warnings = O.run_copy(copier(tmp_path, FarSide()), str(local), dict(keep_count=2))
    assert len(record['retention']['removed']) == 2 * 6 and not warnings, 'Nov 24..29 go, Nov 30 and Dec 1 stay'


def test_retention_there_is_skipped_when_the_copy_failed(tmp_path, local):
    far_archives(tmp_path, range(24, 30))
    before = far_files(tmp_path)
    changed, record, dummy = O.run_copy(copier(tmp_path, FarSide(corrupt=True)), str(local), dict(keep_count=1))
    assert record['result'] == 'failed' and far_files(tmp_path) == before


def test_parse_listing_ignores_forged_lines():
    files = O.parse_listing('R yes\nF 12 a.tar.gz\nO 0 dir\nF  7 b\nF x c\ngarbage\n')
    assert files == {'a.tar.gz': {'size': 12}, 'dir': None, 'b': {'size': 7}}


# -- the far side: dead temp files, room, the owner ----------------------------------------

def dead_pid():
    """A pid of this host that no process has (one that just exited)."""
    proc = subprocess.Popen(['true'])
    proc.wait()
    return proc.pid


def test_dead_tmp_names_judges_only_our_label_and_our_dead_pids(monkeypatch):
    monkeypatch.setattr(N, 'pid_alive', lambda pid: pid == 7)
    name = archive_name('202611290102', TAG)
    names = ['.%s.web1-abcd1234.6.tmp' % name, '.%s.sha256.web1-abcd1234.6.tmp' % name,
             '.%s.web1-abcd1234.7.tmp' % name, '.%s.web2-ffff0000.6.tmp' % name, '.%s.web1-abcd1234.6.part' % name,
             name, '.%s.web1-abcd1234.6.tmp' % archive_name('202611290102', TAG, suffix='other')]
    assert N.dead_tmp_names(names, host='web1-abcd1234') == sorted(names[:2])


def test_a_copy_first_removes_this_hosts_dead_temp_files_there(tmp_path, local):
    d = tmp_path / 'far' / 'alation-1'
    d.mkdir(parents=True)
    old = archive_name('202611290102', TAG)
    ours_dead = [N.tmp_name(old, pid=dead_pid()), N.tmp_name(old + '.sha256', pid=dead_pid())]
    ours_alive = N.tmp_name(old, pid=os.getppid())
    theirs = N.tmp_name(old, pid=dead_pid(), host='another-host-00000000')
    for n in ours_dead + [ours_alive, theirs]:
        (d / n).write_bytes(b'half a copy')
    far = FarSide()
    changed, record, dummy = O.run_copy(copier(tmp_path, far), str(local))
    assert record['result'] == 'ok' and changed
    assert record['removed_tmp'] == [str(d / n) for n in sorted(ours_dead)]
    assert far_files(tmp_path) == sorted([local.name, local.name + '.sha256', ours_alive, theirs])
    # Removed before anything was sent.
    assert far.scripts[1].startswith('cd -- ') and 'rm -f -- ' in far.scripts[1]


def test_parse_df():
    out = 'Filesystem     1024-blocks  Used Available Capacity Mounted on\ntmpfs 1024 100 924 10% /srv/my backups\n'
    assert O.parse_df(out) == 924 * 1024
    assert O.parse_df('df: .: No such file or directory\n') is None and O.parse_df('') is None


def test_a_full_far_side_runs_retention_first_then_the_copy_fits(tmp_path):
    (tmp_path / 'x').mkdir()
    src = publish(tmp_path / 'x', '202611300102', os.urandom(40000))
    older = far_archives(tmp_path, range(24, 30))
    d = tmp_path / 'far' / 'alation-1'
    used = sum(O.blocks(os.path.getsize(str(p))) for p in d.iterdir())
    # Room for the files there and 10 KiB: the 40 KB archive fits only once retention removed the older copies.
    far = FarSide(capacity=used + 10 * 1024 + 8192)
    changed, record, warnings = O.run_copy(copier(tmp_path, far), str(src), dict(keep_count=3))
    assert record['result'] == 'ok' and changed, record
    # keep_count 3 with the archive about to come: the 2 newest there stay, 4 go (with their .sha256), before the copy.
    gone = [str(d / n) for day in older[:4] for n in (day, day + '.sha256')]
    assert record['retention']['removed'] == gone
    assert record['needed_bytes'] == O.blocks(40000) + 4096 and record['free_bytes'] >= record['needed_bytes']
    first_send = next(i for i, sc in enumerate(far.scripts) if 'cat > ' in sc)
    first_rm = next(i for i, sc in enumerate(far.scripts) if 'rm -f -- ' in sc)
    assert first_rm < first_send
    assert [n for n in far_files(tmp_path) if n.endswith('.tar.gz')] == older[4:] + [src.name]


@pytest.mark.parametrize('keep_count, tried', [(3, 'after retention there removed 8 files'),
                                               (0, 'retention there is off')])
def test_a_copy_that_cannot_fit_fails_naming_free_and_needed_bytes(tmp_path, keep_count, tried):
    (tmp_path / 'x').mkdir()
    src = publish(tmp_path / 'x', '202611300102', os.urandom(400000))
    older = far_archives(tmp_path, range(24, 30))
    d = tmp_path / 'far' / 'alation-1'
    used = sum(O.blocks(os.path.getsize(str(p))) for p in d.iterdir())
    far = FarSide(capacity=used + 100 * 1024)
    changed, record, dummy = O.run_copy(copier(tmp_path, far), str(src), dict(keep_count=keep_count))
    assert record['result'] == 'failed'
    needed = O.blocks(400000) + 4096
    free = int(record['free_bytes'])
    assert 'not enough free space on the backup host' in record['error']
    assert '%d bytes (%s) free, %d bytes (%s) needed' % (free, O.human(free), needed, O.human(needed)) in record['error']
    assert tried in record['error'] and record['needed_bytes'] == needed
    assert not any('cat > ' in sc for sc in far.scripts), 'nothing sent'
    left = [n for n in far_files(tmp_path) if n.endswith('.tar.gz')]
    assert left == (older[4:] if keep_count else older)
    assert len(record['retention']['removed']) == (8 if keep_count else 0)
    assert not any(n.endswith('.tmp') and src.name in n for n in far_files(tmp_path))


def test_the_first_copy_claims_the_dir_and_another_machine_is_refused(tmp_path, local, monkeypatch):
    O.run_copy(copier(tmp_path, FarSide()), str(local))
    marker = tmp_path / 'far' / 'alation-1' / O.OWNER_MARKER
    mid, host = O.this_machine()
    assert O.parse_owner(marker.read_text()) == dict(machine_id=mid or '', host=host)
    # The same machine again: fine.
    changed, record, dummy = O.run_copy(copier(tmp_path, FarSide()), str(local))
    assert record['result'] == 'ok'
    # Another machine with the same host_dir: refused, nothing written, nothing removed.
    monkeypatch.setattr(O, 'this_machine', lambda: ('0123456789abcdef0123456789abcdef', 'alation-1'))
    before = far_files(tmp_path)
    newer = publish(local.parent, '202612010102')
    far = FarSide()
    changed, record, dummy = O.run_copy(copier(tmp_path, far), str(newer), dict(keep_count=1))
    assert record['result'] == 'failed' and not changed
    assert 'belongs to another machine (%s, machine id %s' % (host, mid) in record['error']
    assert 'alation_backup_copy_host_dir' in record['error']
    assert far_files(tmp_path) == before and len(far.scripts) == 1


@pytest.mark.parametrize('text, ok', [
    ('machine_id aaaa\nhost h1\n', True),
    ('machine_id aaaa\nhost other-name\n', True),
    ('machine_id bbbb\nhost h1\n', False),
    ('machine_id -\nhost h1\n', False),
    ('', False),
    ('garbage', False),
])
def test_check_owner_goes_by_machine_id(text, ok):
    if ok:
        O.check_owner(text, 'b@h:/srv/alation-1', machine=('aaaa', 'h1'))
    else:
        with pytest.raises(O.CopyError, match='alation_backup_copy_host_dir'):
            O.check_owner(text, 'b@h:/srv/alation-1', machine=('aaaa', 'h1'))
    # Without machine ids on either side, the host name decides.
    O.check_owner('machine_id -\nhost h1\n', 'w', machine=('', 'h1'))
    with pytest.raises(O.CopyError, match='another machine'):
        O.check_owner('machine_id -\nhost h2\n', 'w', machine=('', 'h1'))


# -- the key on tmpfs -------------------------------------------------------------------------

def tmpfs(path):
    return 'tmpfs'


def test_the_key_dir_is_private_on_tmpfs_and_removed(tmp_path):
    with O.KeyDir(KEY + '\nsecret\n-----END OPENSSH PRIVATE KEY-----', '[h]:22 ssh-ed25519 AAAA',
                  parents=(str(tmp_path / 'none'), str(tmp_path)), kind=tmpfs) as keys:
        name = os.path.basename(keys.path)
        assert name.startswith('%s.%s.%d.' % (O.KEY_DIR_PREFIX, N.host_label(), os.getpid()))
        assert O.KEY_DIR_RE.match(name)
        assert oct(os.stat(keys.path).st_mode & 0o777) == '0o700'
        for f in (keys.identity_file, keys.known_hosts):
            assert oct(os.stat(f).st_mode & 0o777) == '0o600'
        assert open(keys.identity_file).read().endswith('-----END OPENSSH PRIVATE KEY-----\n')
        assert open(keys.known_hosts).read() == '[h]:22 ssh-ed25519 AAAA\n'
        path = keys.path
    assert not os.path.exists(path) and os.listdir(str(tmp_path)) == []
    assert O.KeyDir(None, None).path is None


def test_no_tmpfs_for_the_key_is_refused(tmp_path):
    with pytest.raises(O.CopyError, match='no memory-backed dir'):
        O.KeyDir(KEY, parents=(str(tmp_path),), kind=lambda path: 'ext4')
    assert os.listdir(str(tmp_path)) == []


def test_a_killed_copys_key_dir_is_removed_by_the_next_run(tmp_path):
    label = N.host_label()
    dead = tmp_path / ('%s.%s.%d.abc_12' % (O.KEY_DIR_PREFIX, label, dead_pid()))
    alive = tmp_path / ('%s.%s.%d.abc_12' % (O.KEY_DIR_PREFIX, label, os.getpid()))
    other = tmp_path / ('%s.%s.%d.abc_12' % (O.KEY_DIR_PREFIX, 'another-host', dead_pid()))
    for d in (dead, alive, other):
        d.mkdir()
        (d / 'id').write_text(KEY)
    not_a_dir = tmp_path / ('%s.%s.%d.file' % (O.KEY_DIR_PREFIX, label, dead_pid()))
    not_a_dir.write_text('not a dir')
    assert O.remove_dead_key_dirs(parents=(str(tmp_path), str(tmp_path / 'missing'))) == [str(dead)]
    assert sorted(os.listdir(str(tmp_path))) == sorted([alive.name, other.name, not_a_dir.name])


def test_fs_type_takes_the_last_longest_mount(tmp_path):
    mounts = tmp_path / 'mounts'
    mounts.write_text('/dev/vda / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\nnone /run ext4 rw 0 0\n'
                      'tmpfs /run tmpfs rw 0 0\ntmpfs /srv/a\\040b tmpfs rw 0 0\n')
    assert O.fs_type('/dev/shm', str(mounts)) == 'tmpfs'
    assert O.fs_type('/dev/shmx', str(mounts)) == 'ext4'
    assert O.fs_type('/run', str(mounts)) == 'tmpfs'
    assert O.fs_type('/srv/a b', str(mounts)) == 'tmpfs'


def test_far_side_retention_leaves_names_in_the_future_alone_and_keeps_the_copy(tmp_path, local):
    """A clock that ran ahead named three copies there 2031: the copy just made must not rank below them and go."""
    older = far_archives(tmp_path, range(27, 30))
    future = [publish(tmp_path / 'far' / 'alation-1', '2031010%d0000' % d).name for d in (1, 2, 3)]
    changed, record, warnings = O.run_copy(copier(tmp_path, FarSide()), str(local), dict(keep_count=3))
    assert record['result'] == 'ok' and not warnings
    left = [n for n in far_files(tmp_path) if n.endswith('.tar.gz')]
    assert left == older[1:] + [local.name] + future, 'the copy stays, the future ones are not counted nor removed'


def test_far_side_retention_never_removes_the_copy_after_the_clock_went_back(tmp_path):
    """The copy is named before the copies there (this host's clock went back, under the hour): it stays, and
    counts toward keep_count."""
    def stamp(minutes):
        return time.strftime('%Y%m%d%H%M', time.gmtime(time.time() + minutes * 60))
    (tmp_path / 'local').mkdir()
    local = publish(tmp_path / 'local', stamp(-50))
    far = tmp_path / 'far' / 'alation-1'
    far.mkdir(parents=True)
    there = [publish(far, stamp(m)).name for m in (-40, -30, 20)]
    changed, record, warnings = O.run_copy(copier(tmp_path, FarSide()), str(local), dict(keep_count=3))
    assert record['result'] == 'ok' and not warnings
    assert [n for n in far_files(tmp_path) if n.endswith('.tar.gz')] == [local.name] + there[1:]
