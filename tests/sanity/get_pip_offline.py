"""Offline stand-in for pip's get-pip.py, used by ``ansible-test sanity --requirements``.

ansible-test bootstraps pip in each sanity venv by downloading get-pip.py from a
host these machines cannot reach. It first looks for the script in its cache;
``make sanity`` puts this file there, once for each pip version ansible-test
asks for (``get_pip_<version>.py``: ansible-core 2.16 wants 21.3.1 on Python
3.6 and 23.1.2 elsewhere, 2.19 wants 24.2). It runs pip from the wheel of
that version that sits next to it (downloaded from PyPI by the Makefile) to
install the requested packages.
"""
import glob
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ONLY_FOR_REAL_GET_PIP = ('--no-setuptools', '--no-wheel')


def main():
    # get_pip_21_3_1.py -> pip-21.3.1-*.whl
    name = os.path.splitext(os.path.basename(__file__))[0]
    version = '.'.join(name.split('_')[2:]) or '*'
    wheels = sorted(glob.glob(os.path.join(HERE, 'pip-%s-*.whl' % version)))
    if not wheels:
        sys.exit('get_pip_offline: no pip %s wheel in %s; run "make sanity" to fetch it' % (version, HERE))
    sys.path.insert(0, wheels[-1])
    args = [a for a in sys.argv[1:] if a not in ONLY_FOR_REAL_GET_PIP]
    sys.argv = ['pip', 'install'] + args
    runpy.run_module('pip', run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
