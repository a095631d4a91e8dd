# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gzip back ends: which one runs, at which level, and each one's stream read back by each reader."""

import gzip
import io
import random
import shutil
import zlib

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _gzip as G
from ansible_collections.alation.backup.plugins.module_utils._archive_names import ArchiveError


@pytest.mark.parametrize('compressor,level,expected', [
    ('isal', 1, 1), ('isal', 3, 1), ('isal', 4, 2), ('isal', 6, 2), ('isal', 7, 3), ('isal', 9, 3),
    ('igzip', 6, 2), ('zlib', 6, 6), ('zlib', 1, 1), ('pigz', 9, 9),
])
def test_native_level(compressor, level, expected):
    assert G.native_level(compressor, level) == expected


@pytest.mark.parametrize('level', [0, 10, -1])
def test_level_out_of_range(level):
    with pytest.raises(ArchiveError, match='compression_level .* must be 1 to 9'):
        G.native_level('zlib', level)


ALL = dict(isal=True, igzip=True, pigz=True, zlib=True)
NONE = dict(isal=False, igzip=False, pigz=False, zlib=True)


@pytest.mark.parametrize('available,expected', [
    (ALL, 'isal'),
    (dict(ALL, isal=False), 'igzip'),
    (dict(NONE, pigz=True), 'pigz'),
    (NONE, 'zlib'),
])
def test_auto_picks_fastest_present(available, expected):
    assert G.choose_compressor('auto', available) == expected


@pytest.mark.parametrize('name,hint', [('isal', 'pip install isal'), ('igzip', 'package isal'),
                                       ('pigz', 'apt-get install pigz')])
def test_forced_absent_compressor_says_how_to_install(name, hint):
    with pytest.raises(ArchiveError, match='compressor %s was asked for but is not available.*%s' % (name, hint)):
        G.choose_compressor(name, NONE)
    assert G.choose_compressor(name, ALL) == name


@pytest.mark.parametrize('name', ['bzip2', 'zlib-ng'])
def test_unknown_compressor(name):
    with pytest.raises(ArchiveError, match="compressor '%s' is unknown: use auto or one of isal, igzip, pigz, zlib$"
                       % name):
        G.choose_compressor(name, ALL)


def test_available_compressors_probes():
    found = G.available_compressors(which=lambda name: None, importable=lambda module: False)
    assert found == NONE
    assert G.available_compressors()['zlib'] is True


@pytest.mark.parametrize('available,expected', [
    (ALL, 'isal'), (dict(ALL, isal=False), 'igzip'), (dict(NONE, pigz=True), 'pigz'),
    (dict(NONE, igzip=True, pigz=True), 'igzip'), (NONE, 'zlib'),
])
def test_verifier_for(available, expected):
    assert G.verifier_for(available) == expected


def test_program_argv():
    assert G.program_argv('pigz', 6, 4)[1:] == ['-c', '-n', '-6', '-p', '4']
    assert G.program_argv('igzip', 2, 4)[1:] == ['-c', '-2', '-T', '4']
    assert G.program_argv('pigz')[1:] == ['-dc']


def sample_data(n):
    rng = random.Random(n)
    words = [b'alpha', b'beta', b'catalog', b'schema', b'1234', b'\n']
    text = b' '.join(rng.choice(words) for i in range(n // 5))[:n // 2]
    rest = n - len(text)
    # Random.randbytes is Python 3.9+.
    return text + (rng.getrandbits(8 * rest).to_bytes(rest, 'little') if rest else b'')


@pytest.mark.parametrize('threads', [1, 3])
@pytest.mark.parametrize('size', [0, 1, G.BLOCK_SIZE - 1, G.BLOCK_SIZE, 3 * G.BLOCK_SIZE + 12345])
def test_zlib_block_writer_is_one_gzip_stream(threads, size):
    data = sample_data(size)
    out = io.BytesIO()
    w = G.ZlibBlockWriter(out, 6, threads)
    for i in range(0, len(data), 100000):
        w.write(data[i:i + 100000])
    w.close()
    raw = out.getvalue()
    d = zlib.decompressobj(31)
    assert d.decompress(raw) == data
    assert d.eof and d.unused_data == b''  # exactly one gzip member
    assert gzip.decompress(raw) == data


def test_zlib_block_writer_ratio_like_gzip():
    data = b''.join(b'row %d of the catalog table, steward alice, flag trusted\n' % i for i in range(200000))
    out = io.BytesIO()
    w = G.ZlibBlockWriter(out, 6, 2)
    w.write(data)
    w.close()
    assert len(out.getvalue()) < 1.05 * len(gzip.compress(data, 6))


def test_pipe_compressor_failure_is_reported():
    c = G.PipeCompressor([shutil.which('sh'), '-c', 'echo broken >&2; exit 3'], io.BytesIO())
    with pytest.raises(ArchiveError, match=r"^\S+/sh -c 'echo broken >&2; exit 3' failed with exit code 3: broken$"):
        for i in range(100):
            c.write(b'x' * 65536)
        c.close()


def test_pipe_decompressor_failure_is_reported():
    d = G.PipeDecompressor([shutil.which('sh'), '-c', 'cat >/dev/null; echo "error: not gzip" >&2; exit 1'],
                           io.BytesIO(b'not gzip at all'))
    assert d.read() == b''
    with pytest.raises(ArchiveError, match=r'failed with exit code 1: error: not gzip$'):
        d.close()


def here():
    return [n for n, ok in G.available_compressors().items() if ok]


@pytest.mark.parametrize('compressor', G.COMPRESSORS)
def test_each_compressor_writes_one_gzip_stream_each_reader_reads(compressor):
    if compressor not in here():
        pytest.skip('%s not available here: %s' % (compressor, G.INSTALL_HINTS[compressor]))
    data = sample_data(3 * G.BLOCK_SIZE + 777)
    out = io.BytesIO()
    c = G.open_compressor(compressor, G.native_level(compressor, 6), 2, out)
    c.write(data)
    c.close()
    assert gzip.decompress(out.getvalue()) == data
    for reader in ('isal', 'igzip', 'pigz', 'zlib'):
        if reader in here():
            d = G.open_decompressor(reader, io.BytesIO(out.getvalue()))
            assert d.read() == data
            d.close()
