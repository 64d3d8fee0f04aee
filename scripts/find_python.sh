#!/bin/sh
# Which Python `make setup` builds .venv with.
#
#   sh scripts/find_python.sh [PYTHON]
#
# Prints the interpreter's path on stdout and, on stderr, which one it is and why:
#   1. PYTHON, when given (make setup PYTHON=/path/to/python): used if its version is supported;
#   2. else python3.11 (the version the whole test suite runs on);
#   3. else python3.12, then python3.13 (supported: see README, "Python versions");
#   4. else python3, if it is one of those versions.
# A candidate counts only if it runs and reports its version (a pyenv shim for a version that
# is not selected is on PATH but fails). None fits: one line on stderr, exit 1.
# POSIX sh, shell built-ins only.

SUPPORTED="3.11 3.12 3.13"
SUPPORTED_TEXT="3.11, 3.12 or 3.13"
HOW="install one (Debian/Ubuntu: apt install python3.11-venv, or python3.12-venv / python3.13-venv; or: uv python install 3.11), then: make demo PYTHON=/path/to/python"
# the names also probed only to say what was found
OTHERS="python3.14 python3.10 python3.9"

# "X.Y X.Y.Z executable" of interpreter $1, or nothing when it does not run
probe() {
    "$1" -c 'import platform, sys; print("%d.%d %s %s" % (sys.version_info[0], sys.version_info[1], platform.python_version(), sys.executable))' 2>/dev/null
}

supported() {
    for v in $SUPPORTED; do
        [ "$1" = "$v" ] && return 0
    done
    return 1
}

# sets MINOR, FULL, EXE from probe output $1; fails on anything unexpected
parse() {
    MINOR=${1%% *}
    rest=${1#* }
    FULL=${rest%% *}
    EXE=${rest#* }
    case $MINOR in
        [0-9]*.[0-9]*) ;;
        *) return 1 ;;
    esac
    [ -n "$EXE" ] && [ "$EXE" != "$rest" ] || EXE=$2
    return 0
}

if [ -n "$1" ]; then
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "make setup: PYTHON=$1 not found; podium runs on Python $SUPPORTED_TEXT: $HOW" >&2
        exit 1
    fi
    out=$(probe "$1")
    if [ -z "$out" ] || ! parse "$out" "$1"; then
        echo "make setup: PYTHON=$1 does not run as a Python interpreter; podium runs on Python $SUPPORTED_TEXT: $HOW" >&2
        exit 1
    fi
    if ! supported "$MINOR"; then
        echo "make setup: PYTHON=$1 is Python $FULL; podium runs on Python $SUPPORTED_TEXT: $HOW" >&2
        exit 1
    fi
    echo "make setup: using $EXE (Python $FULL): given as PYTHON" >&2
    echo "$EXE"
    exit 0
fi

found=""
note() {
    if [ -z "$found" ]; then found=$1; else found="$found, $1"; fi
}

for v in $SUPPORTED any; do
    name=python$v
    [ "$v" = any ] && name=python3
    command -v "$name" >/dev/null 2>&1 || continue
    out=$(probe "$name")
    if [ -z "$out" ] || ! parse "$out" "$name"; then
        note "$name (on PATH but does not run)"
        continue
    fi
    if ! supported "$MINOR" || { [ "$v" != any ] && [ "$MINOR" != "$v" ]; }; then
        note "$name = $FULL"
        continue
    fi
    case $v in
        3.11) why="python3.11, the version podium's whole test suite runs on" ;;
        any) why="python3 is $MINOR, a supported version (no working python3.11/3.12/3.13 command)" ;;
        *) why="no working python3.11 on PATH; $v is supported too" ;;
    esac
    echo "make setup: using $EXE (Python $FULL): $why" >&2
    echo "$EXE"
    exit 0
done

for name in $OTHERS; do
    command -v "$name" >/dev/null 2>&1 || continue
    out=$(probe "$name")
    if [ -n "$out" ] && parse "$out" "$name"; then
        note "$name = $FULL"
    else
        note "$name (on PATH but does not run)"
    fi
done

echo "make setup: no supported Python found (podium runs on Python $SUPPORTED_TEXT; found: ${found:-none}): $HOW" >&2
exit 1
