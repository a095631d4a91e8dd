# shellcheck shell=bash
# Sourced by demo/offsite.sh and demo/cloud.sh: what both demos do alike. They set $py, the venv's Python.

# json FILE KEY...: the value at that path of a JSON file (a list index or a dict key at each step).
json() { "$py" -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v=v[int(k) if isinstance(v, list) else k]
print(v if not isinstance(v, (dict, list)) else json.dumps(v))' "$@"; }

# demo_inventory FILE HOST: an inventory of one Alation host, this machine (a local connection, the venv's Python).
demo_inventory() {
  cat > "$1" <<INV
alation:
  hosts:
    $2:               # this machine, as an Alation host
      ansible_connection: local
      ansible_python_interpreter: $py
INV
}

# demo_gpg_keys PY KEYS: a throwaway GnuPG key pair in a tmpfs home that is removed after; the public key in
# KEYS/backup-pub.asc (for the host), the secret key, passphrase-protected, in KEYS/backup-secret.asc (0600, for the
# drill), and KEYS/drill_vars.json (0600) with the restore role's decrypt key and passphrase. Sets $fingerprint and
# $passphrase.
demo_gpg_keys() {
  local py=$1 keys=$2 gnupg
  echo "== A throwaway GnuPG key pair: the public key goes to the host, the secret key stays here for the drill"
  gnupg=$(mktemp -d /dev/shm/alation-demo-gnupg-XXXXXX)
  passphrase=$("$py" -c 'import secrets; print(secrets.token_urlsafe(18))')
  gpg_() { gpg --homedir "$gnupg" --batch --no-tty --pinentry-mode loopback "$@"; }
  gpg_ --passphrase "$passphrase" --quick-gen-key 'Alation backup demo <backup-demo@example.invalid>' \
    future-default default never 2>/dev/null
  fingerprint=$(gpg_ --with-colons --list-keys 2>/dev/null | awk -F: '$1 == "fpr" {print $10; exit}')
  gpg_ --armor --export "$fingerprint" > "$keys/backup-pub.asc"
  (umask 077; gpg_ --passphrase "$passphrase" --armor --export-secret-keys "$fingerprint" > "$keys/backup-secret.asc")
  gpg_ --list-keys "$fingerprint" 2>/dev/null | sed -n 's/^\(pub\|sub\) /   &/p'
  gpgconf --homedir "$gnupg" --kill gpg-agent
  rm -rf "$gnupg"
  unset -f gpg_
  (umask 077; "$py" -c 'import json,sys; json.dump(dict(alation_restore_decrypt_key=sys.argv[1],
    alation_restore_decrypt_passphrase=sys.argv[2]), open(sys.argv[3], "w"))' \
    "$keys/backup-secret.asc" "$passphrase" "$keys/drill_vars.json")
  echo "   fingerprint $fingerprint; public key $keys/backup-pub.asc, secret key $keys/backup-secret.asc (0600, passphrase-protected)"
}

# demo_copy_result REPORT WHAT: the first host's copy record in the run's REPORT, in a few lines; exits 1 (naming
# WHAT, the copy's destination in words) unless the copy succeeded.
demo_copy_result() {
  "$py" - "$1" <<'PY'
import json, sys
copy = json.load(open(sys.argv[1]))[0]['copy']
print('   copy: %s by %s, %s bytes in %s s%s -> %s' % (
    copy['result'].upper(), copy['method'], copy['bytes'], copy['duration_s'],
    ', verified there by %s' % copy['verified'] if copy.get('verified') else '', copy['dest']))
if copy.get('retention'):
    print('   retention there: %s' % json.dumps(copy['retention'], sort_keys=True))
if copy['error']:
    print('   error: %s' % copy['error'])
PY
  if [ "$(json "$1" 0 copy result)" != ok ]; then
    echo "the copy to $2 did not succeed" >&2
    exit 1
  fi
}
