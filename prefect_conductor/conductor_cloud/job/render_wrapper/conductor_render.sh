# Run one render task on a Conductor render node: prepare, then hand over to the host renderer.
#
# Uploaded with every job and called by the default task template with `sh`, so it needs no
# execute bit and nothing the node may lack (POSIX sh only: it runs under dash and bash alike):
#
#   sh conductor_render.sh --mkdir DIR... -- cnode PACKAGE -image ... -config_file FILE ...
#
# Before the render it
#
# * creates every folder given with --mkdir (the images' output folders): the host's renderer
#   fails when an output folder is missing, and nothing else creates them on a fresh node;
# * stops with one line when the file after -config_file is missing, instead of rendering with
#   other preferences;
# * drops `-tile_rendering 1 K`, because the host writes tile numbers into the output file names
#   whenever the flag is present;
# * changes into the render package's folder and names the package by its file name only, because
#   the host's renderer cannot open a project whose path holds a space.
#
# It then replaces itself with the host command (exec), so the exit status, signals and log lines
# are the renderer's own.

say() {
    printf 'conductor_render: %s\n' "$*"
}

fail() {
    say "$*" >&2
    exit 2
}

if [ "$1" = "--mkdir" ]; then
    shift
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        if [ -n "$1" ] && ! mkdir -p -- "$1"; then
            fail "cannot create output folder $1"
        fi
        shift
    done
fi
[ "$1" = "--" ] || fail "no host command; put it after --"
shift
[ $# -ge 2 ] || fail "no host command and render package after --"

program=$1
package=$2
shift 2
case $package in
    */*) folder=${package%/*}; name=${package##*/} ;;
    *) folder=.; name=$package ;;
esac
[ -n "$folder" ] || folder=/
[ -n "$name" ] || fail "the render package $package names a folder, not a file"

# Rebuild the arguments in place (POSIX sh has no arrays): each pass takes the first argument
# off the front and puts what stays at the back, so after $count passes they are in order again.
count=$#
while [ "$count" -gt 0 ]; do
    word=$1
    shift
    count=$((count - 1))
    if [ "$word" = "-tile_rendering" ] && [ "$count" -ge 2 ] && [ "$1" = "1" ]; then
        shift 2
        count=$((count - 2))
        continue
    fi
    if [ "$word" = "-config_file" ] && [ "$count" -ge 1 ] && [ ! -f "$1" ]; then
        fail "config file $1 is missing"
    fi
    set -- "$@" "$word"
done

cd -- "$folder" || fail "cannot enter the render package's folder $folder"
[ -f "$name" ] || fail "render package $package is missing"
say "running $program $name $* (in $folder)"
exec "$program" "$name" "$@"
