# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_users: one resolver for the host's users and for an Alation shell's own /etc/passwd and /etc/group."""

import pytest

from ansible_collections.alation.backup.plugins.module_utils._users import Accounts, UnknownAccount, parse_passwd

PASSWD = """root:x:0:0:root:/root:/bin/bash
# a comment
alation:x:1500:1501:Alation:/home/alation:/bin/bash
alationadmin:x:1502:1503::/home/alationadmin:/bin/bash
broken-line
+nis
"""
GROUP = "root:x:0:\nalation:x:1501:\nalationadmin:x:1503:\nbackup:x:1600:alation\n"


@pytest.fixture
def shell(tmp_path):
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc/passwd').write_text(PASSWD)
    (tmp_path / 'etc/group').write_text(GROUP)
    return str(tmp_path)


def test_parse_passwd_skips_comments_and_malformed_lines():
    assert parse_passwd(PASSWD) == {'root': (0, 0), 'alation': (1500, 1501), 'alationadmin': (1502, 1503)}


@pytest.mark.parametrize('value,expected', [(None, None), ('', None), ('root', 0), ('0', 0), (0, 0), ('12345', 12345)])
def test_host_uid(value, expected):
    assert Accounts().uid(value) == expected


@pytest.mark.parametrize('value,expected', [(None, None), ('root', 0), ('0', 0), ('54321', 54321)])
def test_host_gid(value, expected):
    assert Accounts().gid(value) == expected


def test_unknown_names_are_named_with_the_option_and_where_looked():
    with pytest.raises(UnknownAccount, match="owner 'no-such-user-x' is not a user on this host"):
        Accounts().uid('no-such-user-x')
    with pytest.raises(ValueError, match="group 'no-such-group-x' is not a group on this host"):
        Accounts().gid('no-such-group-x')
    with pytest.raises(UnknownAccount, match="run_as 'x' is not a user on this host"):
        Accounts('/').user('x', 'run_as')


def test_shell_names_come_from_the_shells_files(shell):
    accounts = Accounts(shell)
    assert accounts.user('alation') == (1500, 1501)
    assert accounts.uid('alationadmin') == 1502
    assert accounts.gid('backup') == 1600
    assert accounts.owner_ids('alation', 'backup') == (1500, 1600)
    assert accounts.owner_ids(None, None) == (-1, -1)
    assert accounts.user_name(1502) == 'alationadmin' and accounts.group_name(1600) == 'backup'
    assert accounts.user_name(4242) == '' and accounts.group_name(4242) == ''


def test_numeric_user_takes_its_primary_group_only_when_known(shell):
    # Not gid = uid: a numeric user unknown to the shell leaves the group alone (-1).
    assert Accounts(shell).user('1500') == (1500, 1501)
    assert Accounts(shell).user('4321') == (4321, -1)


def test_a_host_user_is_not_a_shell_user(shell):
    # root exists on the host and in the shell; nobody is only on the host.
    with pytest.raises(UnknownAccount, match=r"owner 'nobody' is not a user in .*/etc/passwd \(the Alation shell's users\)"):
        Accounts(shell).uid('nobody')
    with pytest.raises(UnknownAccount, match=r"group 'nogroup' is not a group in .*/etc/group \(the Alation shell's groups\)"):
        Accounts(shell).gid('nogroup')


def test_missing_shell_files_say_so(tmp_path):
    with pytest.raises(UnknownAccount, match='cannot read .*/etc/passwd.*is .* the Alation shell'):
        Accounts(str(tmp_path)).uid('alation')


def test_an_owner_without_a_group_gets_its_primary_group_in_the_shell(shell):
    assert Accounts(shell).owner_ids('alationadmin', None) == (1502, 1503)
    assert Accounts(shell).owner_ids('alationadmin', '') == (1502, 1503)
    assert Accounts(shell).owner_ids(None, 'backup') == (-1, 1600)


def test_conflicts_name_missing_users_and_host_users_with_other_uids(shell, tmp_path):
    # root exists on the host as uid 0; make the shell's root another uid to see the refusal.
    (tmp_path / 'etc/passwd').write_text(PASSWD.replace('root:x:0:0', 'root:x:7:0'))
    problems = Accounts(shell).conflicts(['alation', 'root', 'ghost', None, '4501'])
    assert len(problems) == 2
    assert problems[0].startswith("user 'root' is uid 7 in the Alation shell")
    assert 'but uid 0 on the host' in problems[0]
    assert problems[1].startswith("user 'ghost' is not a user in %s/etc/passwd" % shell)
    # Without a shell there is nothing to conflict with: only missing users count.
    missing = "user 'ghost-x' is not a user on this host: create the user first or give a numeric uid"
    assert Accounts().conflicts(['root', 'ghost-x']) == [missing]
