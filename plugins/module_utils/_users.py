# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one resolver of users and groups: names to ids and back, for the host or an Alation shell.

The Alation shell is a chroot with its own ``/etc/passwd`` and ``/etc/group``:
its ``alation`` and ``alationadmin`` may not exist on the host, or exist there
with other ids. Files the shell's programs use must carry the shell's ids, so
with ``root`` set every lookup reads the shell's own files; without it, the
host's (through ``pwd``/``grp``). Standard library only.
"""

import grp
import os
import pwd

from ansible_collections.alation.backup.plugins.module_utils._host import HostError


class UnknownAccount(HostError, ValueError):
    """A user or group name that the system in question does not have."""


def _in_shell(root):
    return bool(root) and os.path.normpath(root) != '/'


def parse_passwd(text):
    """{name: (uid, gid)} of passwd-format text (also /etc/group: name, gid in the 3rd field)."""
    entries = {}
    for line in text.splitlines():
        fields = line.split(':')
        if len(fields) > 3 and fields[0] and not fields[0].startswith(('#', '+', '-')) \
                and fields[2].isdigit() and fields[3].isdigit():
            entries.setdefault(fields[0], (int(fields[2]), int(fields[3])))
    return entries


def parse_group(text):
    """{name: gid} of group-format text."""
    entries = {}
    for line in text.splitlines():
        fields = line.split(':')
        if len(fields) > 2 and fields[0] and not fields[0].startswith(('#', '+', '-')) and fields[2].isdigit():
            entries.setdefault(fields[0], int(fields[2]))
    return entries


class Accounts(object):
    """Users and groups as the programs of one system see them.

    ``root`` is the host path of the Alation shell (its ``etc/passwd`` and
    ``etc/group`` are read), or None or ``/`` for the host itself. Numeric
    names are ids as they are. Unknown names raise UnknownAccount naming
    the file looked in.
    """

    def __init__(self, root=None):
        self.root = os.path.normpath(root) if _in_shell(root) else None
        self._users = self._groups = None

    @property
    def where(self):
        """Where names are looked up, for messages."""
        if self.root:
            return "in %s (the Alation shell's users)" % os.path.join(self.root, 'etc/passwd')
        return 'on this host'

    def _read(self, name):
        path = os.path.join(self.root, 'etc', name)
        try:
            with open(path, errors='replace') as f:
                return f.read()
        except OSError as e:
            raise UnknownAccount('cannot read %s: %s; is %s the Alation shell?' % (path, e.strerror or e, self.root))

    def _user_table(self):
        if self._users is None:
            self._users = parse_passwd(self._read('passwd'))
        return self._users

    def _group_table(self):
        if self._groups is None:
            self._groups = parse_group(self._read('group'))
        return self._groups

    def user(self, name, what='user'):
        """(uid, primary gid) of user ``name``; a numeric name is the uid (its gid from passwd, else -1).

        ``what`` names the option for the message (owner, run_as).
        """
        name = str(name)
        if name.isdigit():
            uid = int(name)
            return uid, self._primary_gid(uid)
        if self.root:
            entry = self._user_table().get(name)
        else:
            try:
                pw = pwd.getpwnam(name)
                entry = (pw.pw_uid, pw.pw_gid)
            except KeyError:
                entry = None
        if entry is None:
            raise UnknownAccount("%s '%s' is not a user %s: create the user first or give a numeric uid"
                                 % (what, name, self.where))
        return entry

    def _primary_gid(self, uid):
        if self.root:
            return next((gid for u, gid in self._user_table().values() if u == uid), -1)
        try:
            return pwd.getpwuid(uid).pw_gid
        except KeyError:
            return -1

    def uid(self, name, what='owner'):
        """The uid of ``name`` (None and '' stay None)."""
        return None if name in (None, '') else self.user(name, what)[0]

    def gid(self, name, what='group'):
        """The gid of group ``name`` (None and '' stay None)."""
        if name in (None, ''):
            return None
        name = str(name)
        if name.isdigit():
            return int(name)
        if self.root:
            gid = self._group_table().get(name)
        else:
            try:
                gid = grp.getgrnam(name).gr_gid
            except KeyError:
                gid = None
        if gid is None:
            where = self.where.replace('passwd', 'group').replace("users)", "groups)")
            raise UnknownAccount("%s '%s' is not a group %s: create the group first or give a numeric gid"
                                 % (what, name, where))
        return gid

    def owner_ids(self, owner, group=None):
        """(uid, gid) for chown, -1 for what stays as it is.

        An empty ``group`` with an ``owner`` is the owner's primary group (of
        the shell, with a root), never the connecting user's; with neither,
        both stay.
        """
        uid, primary = (-1, -1) if owner in (None, '') else self.user(owner, 'owner')
        gid = self.gid(group)
        return uid, primary if gid is None else gid

    def conflicts(self, names):
        """Why each of ``names`` cannot be used as the shell's user: missing in the shell, or the host has it
        under another uid (files the shell's programs use must carry the shell's ids). [] when all is well."""
        problems = []
        for name in names:
            if name in (None, '') or str(name).isdigit():
                continue
            try:
                uid, dummy = self.user(name)
            except UnknownAccount as e:
                problems.append(str(e))
                continue
            if not self.root:
                continue
            try:
                host_uid = pwd.getpwnam(name).pw_uid
            except KeyError:
                continue
            if host_uid != uid:
                problems.append("user '%s' is uid %d in the Alation shell (%s) but uid %d on the host (/etc/passwd): "
                                "files are owned by the shell's uid, so the host's user of that name is never used; "
                                "give the host user the shell's uid, or rename it" % (
                                    name, uid, os.path.join(self.root, 'etc/passwd'), host_uid))
        return problems

    def user_name(self, uid):
        """The name of ``uid`` ('' when it has none)."""
        if self.root:
            return next((n for n, (u, g) in self._user_table().items() if u == uid), '')
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return ''

    def group_name(self, gid):
        """The name of ``gid`` ('' when it has none)."""
        if self.root:
            return next((n for n, g in self._group_table().items() if g == gid), '')
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return ''
