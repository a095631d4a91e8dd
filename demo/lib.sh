# shellcheck shell=bash
# Sourced by demo/offsite.sh and demo/cloud.sh: what both demos do alike.

# demo_gpg_keys PY KEYS: a throwaway GnuPG key pair in a tmpfs home that is removed after; the public key in
# KEYS/backup-pub.asc (for the host), the secret key, passphrase-protected, in KEYS/backup-secret.asc (0600, for the
# drill). Sets $fingerprint and $passphrase.
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
  echo "   fingerprint $fingerprint; public key $keys/backup-pub.asc, secret key $keys/backup-secret.asc (0600, passphrase-protected)"
}
