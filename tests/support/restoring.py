# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring archives back in tests: by hand (an independent check of what the roles
do), and through the restore role's playbooks; and damage copies of archives.

Used by the end-to-end tests of the backup and restore roles and by
``make demo`` / ``make demo-verify``.

    python restoring.py restore-vars ROLE_VARS_JSON   # the restore role's vars for a shell, as JSON
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pgcluster import PgCluster, ensure_os_user  # noqa: E402  pylint: disable=wrong-import-position
from playbook import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

MANIFEST = 'alation_backup_manifest.json'


def restore_and_count(archive, workdir, engine, os_user, pg_probackup=None, db_user=None):
    """Extract the archive, rebuild PGDATA the engine's way, start it, count pgbench rows.

    Done by hand with tar and pg_probackup, not with the collection's modules,
    so that it checks them independently.
    """
    ensure_os_user(os_user)  # the first test of a fresh machine may be the first to need it
    extracted = os.path.join(workdir, 'extracted')
    os.makedirs(extracted)
    subprocess.run(['tar', '-xzf', archive, '-C', extracted], check=True)
    # The archive may come from an Alation shell whose users the host lacks: hand it to os_user here.
    subprocess.run(['chown', '-R', os_user, extracted], check=True)
    cluster = PgCluster(os.path.join(workdir, 'restored'), os_user=os_user)
    cluster.db_user = db_user or os_user  # the role the backed-up cluster has
    os.makedirs(cluster.base_dir)
    subprocess.run(['chown', os_user, cluster.base_dir], check=True)
    if engine == 'pg_basebackup':
        os.makedirs(cluster.pgdata, mode=0o700)
        subprocess.run(['tar', '-xf', os.path.join(extracted, 'pgbackup/base.tar'), '-C', cluster.pgdata], check=True)
        subprocess.run(['tar', '-xf', os.path.join(extracted, 'pgbackup/pg_wal.tar'), '-C',
                        os.path.join(cluster.pgdata, 'pg_wal')], check=True)
        subprocess.run(['chown', '-R', os_user, cluster.pgdata], check=True)
    else:
        cluster.as_owner([pg_probackup, 'restore', '-B', os.path.join(extracted, 'pgbackup'),
                          '--instance', 'alation', '-D', cluster.pgdata])
    cluster.start()
    try:
        return int(cluster.psql('select count(*) from pgbench_accounts'))
    finally:
        cluster.stop('immediate')


def table_counts(cluster):
    """{database: {tables: N}} of a running cluster, counted as pg_inventory counts (by hand)."""
    names = cluster.psql("select datname from pg_database where datallowconn and not datistemplate order by 1")
    counts = {}
    for name in names.split('\n'):
        counts[name] = {'tables': int(cluster.psql(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') "
            "and n.nspname not like 'pg\\_toast%'", dbname=name))}
    return counts


def restore_vars(role_vars, **extra):
    """The restore role's variables for the Alation shell the backup role's ``role_vars`` name: its defaults,
    with only the shell's path (and no become: we are root already)."""
    out = dict(alation_restore_root=role_vars['alation_backup_root'], alation_restore_become=False)
    out.update(extra)
    return out


def run_restore_playbook(playbook, variables, check=False, timeout=900):
    """Run verify_backup.yml or restore.yml; the run's records are in ``.records`` (by host)."""
    workdir = tempfile.mkdtemp(prefix='alation-restore-play-')
    report = os.path.join(workdir, 'report.json')
    return run_playbook(playbook, dict(variables, alation_restore_report_path=report), check=check,
                        workdir=workdir, timeout=timeout)


# -- damaged copies ---------------------------------------------------------------

def write_sha256(archive):
    digest = hashlib.sha256()
    with open(archive, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    with open(archive + '.sha256', 'w') as f:
        f.write('%s  %s\n' % (digest.hexdigest(), os.path.basename(archive)))


def copy_archive(archive, dest_dir):
    """A byte copy of the archive and its .sha256 in dest_dir; return the copy's path."""
    copy = os.path.join(dest_dir, os.path.basename(archive))
    for suffix in ('', '.sha256'):
        subprocess.run(['cp', '-p', archive + suffix, copy + suffix], check=True)
    return copy


def flip_byte(path, offset=None):
    """Invert one byte (the middle one by default)."""
    offset = os.path.getsize(path) // 2 if offset is None else offset
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _recount(manifest, tree):
    """Set the manifest's per-source counts to what ``tree`` now holds (as the archive module counts)."""
    for src in manifest['sources']:
        root = os.path.join(tree, src['arcname'])
        if not os.path.isdir(root):
            continue
        counts = dict(entries=0, files=0, dirs=0, symlinks=0, hardlinks=0, bytes=0)
        seen = set()
        for dirpath, dirnames, filenames in os.walk(root):
            counts['entries'] += 1
            counts['dirs'] += 1
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                st = os.lstat(os.path.join(dirpath, name))
                counts['entries'] += 1
                if os.path.islink(os.path.join(dirpath, name)):
                    counts['symlinks'] += 1
                elif st.st_nlink > 1 and st.st_ino in seen:
                    counts['hardlinks'] += 1
                else:
                    seen.add(st.st_ino)
                    counts['files'] += 1
                    counts['bytes'] += st.st_size
        src.update(counts)
    manifest['source_bytes'] = sum(s['bytes'] for s in manifest['sources'])


def tamper_archive(archive, dest_dir, edit, recount=True):
    """A copy of the archive in dest_dir, unpacked, changed by ``edit(tree)``, packed again.

    The manifest stays the first member; with ``recount`` its counts are made
    to match the changed tree (so only the database layer can notice). A new
    .sha256 is written, so the checksum check passes.
    """
    work = tempfile.mkdtemp(prefix='tamper-', dir=dest_dir)
    tree = os.path.join(work, 'tree')
    os.makedirs(tree)
    subprocess.run(['tar', '-xzf', archive, '-C', tree], check=True)
    edit(tree)
    manifest_path = os.path.join(tree, MANIFEST)
    with open(manifest_path) as f:
        manifest = json.load(f)
    if recount:
        _recount(manifest, tree)
        with open(manifest_path, 'w') as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
    copy = os.path.join(dest_dir, os.path.basename(archive))
    names = [MANIFEST] + sorted(n for n in os.listdir(tree) if n != MANIFEST)
    subprocess.run(['tar', '-czf', copy, '-C', tree, '--'] + names, check=True)
    write_sha256(copy)
    subprocess.run(['rm', '-rf', work], check=True)
    return copy


def drop_tar_member(tar_path, predicate):
    """Rewrite an uncompressed tar (pg_basebackup's base.tar) without the first member matching predicate."""
    dropped = None
    tmp = tar_path + '.new'
    with tarfile.open(tar_path) as src, tarfile.open(tmp, 'w', format=tarfile.GNU_FORMAT) as dst:
        for info in src:
            if dropped is None and info.isreg() and predicate(info.name):
                dropped = info.name
                continue
            dst.addfile(info, src.extractfile(info) if info.isreg() else None)
    os.replace(tmp, tar_path)
    return dropped


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == 'restore-vars':
        with open(argv[1]) as f:
            json.dump(restore_vars(json.load(f)), sys.stdout, indent=2)
        print()
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main())
