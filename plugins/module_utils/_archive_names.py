# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one definition of an archive's name, its temporary names, and the regex that finds them.

``<YYYYMMDDHHMM>_<major-minor-patch-build>_<suffix>.tar.gz`` in the backup
storage dir, as Alation's Backup V1 names them, ``.tar.gz.gpg`` when it is
encrypted with GnuPG (encryption at rest); ``.<name>.<host>.<pid>.tmp``
while one is written; its first member, the manifest, is ``MANIFEST_NAME``.
The archive module, the restore modules, the role and the freshness guard all
find archives through here. Standard library only.
"""

import calendar
import datetime
import hashlib
import os
import re
import socket
import stat
import time

from ansible_collections.alation.backup.plugins.module_utils._host import HostError, pid_alive

DEFAULT_SUFFIX = 'alation_backup'
MANIFEST_NAME = 'alation_backup_manifest.json'
TIMESTAMP_RE = re.compile(r'^\d{12}$')
SUFFIX_RE = re.compile(r'^[A-Za-z0-9_-]+$')
# major-minor-patch-build; Alation's dotted form is accepted when reading.
_VERSION = r'\d+(?P<sep>[.-])\d+(?P=sep)\d+(?P=sep)\d+'
# The version tag given to the archive module (ASCII digits only: str.isdigit() and \d also accept other scripts' digits).
_VERSION_TAG = re.compile(r'([0-9]+)([.-])([0-9]+)\2([0-9]+)\2([0-9]+)')
SHA256_LINE_RE = re.compile(r'^(?P<hex>[0-9a-fA-F]{64}) [ *](?P<name>.+)$')
# Written after the sha256sum line of a .sha256 (sha256sum -c skips # lines): the archive's size at publish.
SIZE_LINE_RE = re.compile(r'^# size (?P<size>[0-9]+)$')
HASH_BLOCK = 1024 * 1024
# An encrypted archive (GnuPG, to a public key) ends in .tar.gz.gpg; it is found, kept and removed like the others.
ENCRYPTED_EXT = '.gpg'
ARCHIVE_RE = re.compile(r'^(?P<ts>\d{12})_(?P<version>%s)_(?P<suffix>[A-Za-z0-9_-]+)\.tar\.gz(?P<gpg>\.gpg)?$'
                        % _VERSION)


class ArchiveError(HostError):
    """Something the user must fix; the message says what and how."""


def version_tag(value):
    """Return ``value`` as an archive version tag ``major-minor-patch-build``.

    Accepts ``5-17-0-116556`` or ``5.17.0.116556`` (Alation's version, as alation_info reports it); raises
    ValueError otherwise.
    """
    m = _VERSION_TAG.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(
            'version %r is not an Alation version: expected four numbers joined by "-" or ".", '
            'e.g. 5-17-0-116556 or 5.17.0.116556' % (value,))
    return '-'.join(m.group(i) for i in (1, 3, 4, 5))


def normalize_version_tag(value):
    """``5.17.0.116556`` or ``5-17-0-116556`` -> ``5-17-0-116556``; else the archive module's ArchiveError."""
    try:
        return version_tag(value)
    except ValueError as e:
        raise ArchiveError('version_tag: %s (major-minor-patch-build; alation_info reports it)' % e)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def default_timestamp(now=None):
    return (now or utcnow()).strftime('%Y%m%d%H%M')


def free_timestamp(dest, version_tag, suffix=DEFAULT_SUFFIX, now=None):
    """The timestamp of an archive written ``now`` (UTC) into ``dest``: this minute, or the next one.

    Names have minute resolution, so a run that follows another within the
    same minute takes the next minute (whose start the writer then waits for,
    see seconds_until). Should that name be taken too, it is still returned:
    the writer refuses to overwrite it, saying so.
    """
    minute = (now or utcnow()).replace(second=0, microsecond=0)
    if any(os.path.lexists(os.path.join(dest, archive_name(default_timestamp(minute), version_tag, suffix, enc)))
           for enc in (False, True)):
        minute += datetime.timedelta(minutes=1)
    return default_timestamp(minute)


def seconds_until(timestamp, now=None):
    """Seconds from ``now`` until the minute ``timestamp`` (UTC) starts; 0 once it has."""
    start = datetime.datetime.strptime(timestamp, '%Y%m%d%H%M').replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (start - (now or utcnow())).total_seconds())


def validate_timestamp(value):
    """A ``YYYYMMDDHHMM`` string naming a real minute (UTC)."""
    text = str(value)
    if not TIMESTAMP_RE.match(text):
        raise ArchiveError('timestamp %r must be 12 digits, YYYYMMDDHHMM (UTC), such as 202405011230' % (value,))
    try:
        datetime.datetime.strptime(text, '%Y%m%d%H%M')
    except ValueError:
        raise ArchiveError('timestamp %r is not a real date and time (YYYYMMDDHHMM, UTC)' % (value,))
    return text


def validate_suffix(value):
    if not SUFFIX_RE.match(str(value)):
        raise ArchiveError('suffix %r may only contain letters, digits, "_" and "-" (default %s)'
                           % (value, DEFAULT_SUFFIX))
    return value


def archive_name(timestamp, version_tag, suffix=DEFAULT_SUFFIX, encrypted=False):
    return '%s_%s_%s.tar.gz%s' % (timestamp, version_tag, suffix, ENCRYPTED_EXT if encrypted else '')


def is_encrypted(path):
    """Whether ``path`` is an encrypted archive (.tar.gz.gpg): without the key only its .sha256 can be checked."""
    return os.path.basename(path).endswith('.tar.gz' + ENCRYPTED_EXT)


MACHINE_ID_FILE = '/etc/machine-id'


def machine_id():
    """This machine's id (/etc/machine-id, lower-case hex), or '' when it cannot be read."""
    try:
        with open(MACHINE_ID_FILE) as f:
            return re.sub(r'[^0-9a-f]', '', f.read().strip().lower())
    except OSError:
        return ''


def host_label():
    """This host, as one safe word for temporary file names: its full name and the start of its machine id.

    Hosts on a shared backup storage dir may share a short name (alation-1 in
    two domains): a temporary file is only ever removed by the host that
    wrote it, so the label must tell them apart.
    """
    label = re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname()) or 'host'
    machine = machine_id()[:8]
    return '%s-%s' % (label, machine) if machine else label


def tmp_name(final_name, pid=None, host=None):
    """``.<final>.<host>.<pid>.tmp``: hidden, and says who writes it (a shared dest may be NFS)."""
    return '.%s.%s.%d.tmp' % (final_name, host or host_label(), os.getpid() if pid is None else pid)


def tmp_pattern(suffix=DEFAULT_SUFFIX):
    """Matches exactly our temporary files (archive and .sha256) for this suffix."""
    return re.compile(r'^\.(?P<name>\d{12}_\d+-\d+-\d+-\d+_%s\.tar\.gz(?:\.gpg)?(?:\.sha256)?)'
                      r'\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$' % re.escape(suffix))


def dead_tmp_names(names, suffix=DEFAULT_SUFFIX, host=None):
    """Of ``names``, our temporary files written by this host (its label) whose writer (its pid, here) is gone.

    The pid is one of this host's: only files with this host's label are judged, never another host's."""
    pattern = tmp_pattern(suffix)
    host = host or host_label()
    dead = []
    for name in sorted(names):
        m = pattern.match(name)
        if m and m.group('host') == host and not pid_alive(int(m.group('pid'))):
            dead.append(name)
    return dead


def find_stale_tmp(dest, suffix=DEFAULT_SUFFIX, host=None):
    """Our temporary files in dest left by writers of this host that are gone."""
    stale = []
    for name in dead_tmp_names(os.listdir(dest), suffix, host):
        path = os.path.join(dest, name)
        if stat.S_ISREG(os.lstat(path).st_mode):
            stale.append(path)
    return stale


# -- finding archives -------------------------------------------------------------

# A name is only what some clock said. One more than this many seconds ahead of this host's clock came from a
# clock that ran ahead (or this one jumped back): it is never ranked, neither the newest nor counted, nor removed.
FUTURE_SLACK_S = 3600


def archive_time(path):
    """The archive's time (epoch seconds, UTC) as its name says."""
    return calendar.timegm(time.strptime(ARCHIVE_RE.match(os.path.basename(path)).group('ts'), '%Y%m%d%H%M'))


def is_future(path, now=None):
    """Whether the archive ``path`` is named more than FUTURE_SLACK_S ahead of ``now`` (this host's clock)."""
    return archive_time(path) > (time.time() if now is None else now) + FUTURE_SLACK_S


def future_why(path, now=None):
    """How far in the future the archive ``path`` is named, for warnings and records."""
    now = time.time() if now is None else now
    return 'named %s UTC, %.1f hours ahead of this host\'s clock (%s UTC)' % (
        time.strftime('%Y-%m-%d %H:%M', time.gmtime(archive_time(path))), (archive_time(path) - now) / 3600.0,
        time.strftime('%Y-%m-%d %H:%M', time.gmtime(now)))


def future_archives(directory, suffix=DEFAULT_SUFFIX, now=None):
    """The archives in ``directory`` named in the future (``is_future``), oldest name first."""
    return [path for path in list_archives(directory, suffix) if is_future(path, now)]


def archive_sort_key(name, mtime=0.0):
    m = ARCHIVE_RE.match(name)
    return (m.group('ts') if m else '', mtime, name)


def list_archives(directory, suffix=DEFAULT_SUFFIX):
    """Archives in ``directory`` (regular files named as the archive module names them), oldest first."""
    found = []
    for name in os.listdir(directory):
        m = ARCHIVE_RE.match(name)
        if not m or m.group('suffix') != suffix:
            continue
        path = os.path.join(directory, name)
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            found.append((archive_sort_key(name, st.st_mtime), path))
    return [path for dummy, path in sorted(found)]


# -- the .sha256 beside each archive --------------------------------------------------

def sidecar_text(digest, name, size):
    """The .sha256 of archive ``name``: ``sha256sum -c`` reads the first line, the freshness guard the size."""
    return '%s  %s\n# size %d\n' % (digest, name, size)


def read_sidecar(path, name):
    """(hex digest, size or None) that the .sha256 ``path`` records for archive ``name``; ValueError saying why not."""
    try:
        with open(path) as f:
            lines = [line.rstrip('\n') for line in f if line.strip()]
    except FileNotFoundError:
        raise ValueError('%s is missing' % path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError('%s cannot be read: %s' % (path, e))
    digest = size = None
    for line in lines:
        m = SHA256_LINE_RE.match(line)
        if m and os.path.basename(m.group('name')) == name:
            digest = m.group('hex').lower()
        m = SIZE_LINE_RE.match(line)
        if m:
            size = int(m.group('size'))
    if digest is None:
        raise ValueError('%s has no sha256sum line for %s' % (path, name))
    return digest, size


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(HASH_BLOCK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def newest_good(directory, suffix=DEFAULT_SUFFIX, rehash=False, now=None):
    """(the newest archive that its .sha256 vouches for, or None; what was passed over, as [{path, why}]).

    An archive counts when its .sha256 has a line for it and the size it
    recorded at publish is the file's size (with ``rehash``, when the file also
    hashes to the recorded digest), and its name is not in the future
    (``is_future``, by ``now``). A lone .sha256, a temporary file, a damaged
    archive or one named in the future never counts; each is named with why.
    """
    now = time.time() if now is None else now
    ignored = []
    names = set(os.listdir(directory))
    for name in sorted(names):
        if name.endswith('.sha256') and ARCHIVE_RE.match(name[:-len('.sha256')]) and name[:-len('.sha256')] not in names:
            ignored.append(dict(path=os.path.join(directory, name), why='a .sha256 without its archive'))
    for path in reversed(list_archives(directory, suffix)):
        name = os.path.basename(path)
        if is_future(path, now):
            ignored.append(dict(path=path, why=future_why(path, now) + ': a name in the future is never the newest'))
            continue
        try:
            digest, size = read_sidecar(path + '.sha256', name)
        except ValueError as e:
            ignored.append(dict(path=path, why=str(e)))
            continue
        actual = os.path.getsize(path)
        if size is not None and size != actual:
            ignored.append(dict(path=path, why='it has %d bytes, its .sha256 recorded %d at publish' % (actual, size)))
            continue
        if rehash and sha256_of(path) != digest:
            ignored.append(dict(path=path, why='it does not hash to the sha256 its .sha256 records'))
            continue
        return path, ignored
    return None, ignored


def newest_good_info(directory, suffix=DEFAULT_SUFFIX, rehash=False, now=None):
    """``newest_good`` as the callers report it: {path (None when none counts), age_s (seconds since it was
    written, by its mtime; None), ignored, future_archives}."""
    now = time.time() if now is None else now
    path, ignored = newest_good(directory, suffix, rehash=rehash, now=now)
    return dict(path=path, age_s=round(now - os.path.getmtime(path), 1) if path else None, ignored=ignored,
                future_archives=future_archives(directory, suffix, now))


def too_recent(fresh, min_interval):
    """Why a run skips (its newest good archive, ``newest_good_info``, is younger than ``min_interval`` hours),
    or '' (none counts, it is older, or ``min_interval`` is 0: off)."""
    if not min_interval or not fresh.get('path') or fresh['age_s'] >= min_interval * 3600:
        return ''
    return '%s is younger than alation_backup_min_interval (%g h)' % (os.path.basename(fresh['path']), min_interval)
