#!/bin/sh
# Entrypoint of the runtime image (runtime/Dockerfile): prepares the data directory, then runs
# the command it is given (the image's CMD: python -m runtime).
#
#   <data>/state        the runtime's own state
#   <data>/convos       the conversation binding; convos/cli is the convos CLI's home (its
#                       XMTP identity and database, 0700: the identity holds the wallet key)
#   <data>/workspace    IDENTITY.md
#   <data>/history      conversation history
#   <data>/credentials  per-claim secrets (0700)
#
# <data> is RUNTIME_DATA_DIR, else RAILWAY_VOLUME_MOUNT_PATH, else /data (the runtime's own order).
# Started as root (e.g. a platform that mounts a root-owned volume and runs the container as
# uid 0), it gives the data directory to the unprivileged user (RUNTIME_RUN_AS, default `app`)
# and drops to it with setpriv (util-linux, in every Debian image). Started as that user (the
# image's USER), it only creates what is missing.
#
# It never prints the value of an environment variable: no `set -x`, no `env`, and messages
# name variables, never their values (a mount path is harmless, but a token is not, and one rule
# is easier to keep than two).
set -eu

data_dir=${RUNTIME_DATA_DIR:-${RAILWAY_VOLUME_MOUNT_PATH:-/data}}
run_as=${RUNTIME_RUN_AS:-app}

fail() {
    echo "entrypoint: $*" >&2
    exit 1
}

# Creates the data directory and its subdirectories, with their modes; error output of the
# tools is dropped because it would contain the path.
prepare() {
    mkdir -p -- "$data_dir" 2>/dev/null \
        || fail "cannot create the data directory (RUNTIME_DATA_DIR / RAILWAY_VOLUME_MOUNT_PATH)"
    # Best effort: a mount point may belong to someone else and still be writable.
    chmod 0750 -- "$data_dir" 2>/dev/null || :
    for sub in state convos workspace history; do
        mkdir -p -- "$data_dir/$sub" 2>/dev/null \
            || fail "cannot create $sub/ in the data directory"
        chmod 0750 -- "$data_dir/$sub" 2>/dev/null \
            || fail "cannot set the mode of $sub/ in the data directory"
    done
    for private in credentials convos/cli; do
        mkdir -p -- "$data_dir/$private" 2>/dev/null \
            || fail "cannot create $private/ in the data directory"
        chmod 0700 -- "$data_dir/$private" 2>/dev/null \
            || fail "cannot make $private/ private (0700) in the data directory"
    done
    [ -w "$data_dir" ] || fail "the data directory is not writable"
}

if [ "$#" -eq 0 ]; then
    fail "no command to run"
fi

if [ "$(id -u)" -eq 0 ]; then
    uid=$(id -u -- "$run_as" 2>/dev/null) || fail "no such user (RUNTIME_RUN_AS)"
    gid=$(id -g -- "$run_as" 2>/dev/null) || fail "no such user (RUNTIME_RUN_AS)"
    [ "$uid" -ne 0 ] || fail "RUNTIME_RUN_AS must not be root"
    prepare
    # Only what is not already the user's; -h changes a symlink itself, never what it points to
    # (a link planted in the volume must not hand the user a file outside it); -xdev stays on
    # the volume.
    find "$data_dir" -xdev \( ! -user "$uid" -o ! -group "$gid" \) \
        -exec chown -h "$uid:$gid" {} + 2>/dev/null \
        || fail "cannot give the data directory to the runtime user"
    home=$(getent passwd "$uid" | cut -d: -f6)
    HOME=${home:-/}
    RUNTIME_DATA_DIR=$data_dir
    export HOME RUNTIME_DATA_DIR
    exec setpriv --reuid="$uid" --regid="$gid" --init-groups --no-new-privs -- "$@"
fi

prepare
RUNTIME_DATA_DIR=$data_dir
export RUNTIME_DATA_DIR
exec "$@"
