#!/usr/bin/env bash
# Schedule eemt-cleanup: one marked line in this user's crontab, or systemd units (the
# timer pair, or the daemon). `setup_cleanup_cron.sh --help` explains every command.
#
# What it never does: touch a crontab line it did not write, overwrite or remove a unit file
# it did not write (unless --force), or change anything before every check has passed.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
TEMPLATES=${SCRIPT_DIR%/*}/deploy/systemd
# The paths the shipped units name; install-systemd puts this machine's in their place.
TEMPLATE_BIN=/usr/local/bin/eemt-cleanup
TEMPLATE_CONFIG=/etc/eemt-cleanup/cleanup_config.yaml
MARKER='# eemt-cleanup: managed by setup_cleanup_cron.sh'
UNIT_MARKER='# Installed by setup_cleanup_cron.sh'
DEFAULT_SCHEDULE='0 2 * * *'
TIMER_UNITS=(eemt-cleanup.service eemt-cleanup.timer)
DAEMON_UNIT=eemt-cleanup-daemon.service
# Characters a path may hold here: it is written into a crontab line (where % is a newline)
# and into a unit's ExecStart= (where % and $ are expanded), so anything else is refused
# rather than escaped three different ways.
SAFE_PATH='^/[A-Za-z0-9 ._+,:@=/-]*$'
BARE_WORD='^[A-Za-z0-9_./:@=+,-]+$'
CRON_ITEM='(\*|[0-9]+(-[0-9]+)?|[A-Za-z]{3}(-[A-Za-z]{3})?)(/[0-9]+)?'

usage() {
    cat <<EOF
Usage: $PROG COMMAND [OPTIONS]

Run eemt-cleanup on a schedule: from this user's crontab, or from systemd units.

Commands:
  install          Add the crontab line, or replace it when it is already there:
                     SCHEDULE umask 027; flock -n LOCK PROGRAM run --config CONFIG
                       --quiet --trigger cron >> LOGS/cleanup.log 2>&1 MARKER
                   (one line; MARKER is "$MARKER").
                   LOGS is paths.logs of the config (created 0750 when missing). Every
                   other line of the crontab (comments, variables, other jobs, blank
                   lines) is kept byte for byte; installing twice leaves one line.
  status           The crontab line, the systemd units with their state, and the next
                   fire times (eemt-cleanup schedule). Exit 1 when nothing is installed.
  remove           Remove the marked crontab line (none there: says so, exit 0).
  install-systemd  Write eemt-cleanup.service and eemt-cleanup.timer (with --daemon:
                   eemt-cleanup-daemon.service) from deploy/systemd/, with this program
                   and config in ExecStart= and the schedule as OnCalendar=, then
                   systemctl daemon-reload and systemctl enable --now.
  remove-systemd   systemctl disable --now, remove the units this script wrote (the
                   timer pair; with --daemon the daemon), then systemctl daemon-reload.

Options:
  -c, --config PATH  The config file (else \$EEMT_CLEANUP_CONFIG, ./cleanup_config.yaml,
                     /etc/eemt-cleanup/cleanup_config.yaml). It must validate
                     (eemt-cleanup config validate); it is named by its absolute path.
  --schedule "EXPR"  Five cron fields, minute hour day-of-month month day-of-week
                     (default: schedule.cron of the config, else "$DEFAULT_SCHEDULE"),
                     checked with 'eemt-cleanup schedule --cron EXPR'. cron reads it in
                     the system's time zone; for the timer it becomes OnCalendar= (in
                     schedule.timezone); for the daemon, --cron in ExecStart=.
  --bin PATH         The eemt-cleanup program (default: the one on PATH, else
                     $TEMPLATE_BIN).
  --mail             install: leave the output to cron's mail instead of appending it to
                     LOGS/cleanup.log (--quiet prints only when something failed; the
                     program logs every run to that file itself).
  --lock-file PATH   install: the file flock -n holds (default for root
                     /run/eemt-cleanup.cron.lock, else ~/.eemt-cleanup.cron.lock).
  --user             systemd user units: ~/.config/systemd/user, systemctl --user
                     (the default when not root).
  --system           systemd system units: /etc/systemd/system (the default for root).
  --unit-dir DIR     Write and remove the units in DIR instead.
  --daemon           install-systemd/remove-systemd: the daemon's service (eemt-cleanup
                     daemon) instead of the timer pair. Install one or the other.
  --force            Replace or remove unit files of the same name this script did not
                     write (such as copies made by hand from deploy/systemd/).
  -n, --dry-run      Print every command and file it would write; change nothing.
  -h, --help         This help.

Examples:
  $PROG install --config /srv/eemt/cleanup_config.yaml
  $PROG install --config /srv/eemt/cleanup_config.yaml --schedule "30 3 * * *" --dry-run
  $PROG status
  $PROG install-systemd --system --config /etc/eemt-cleanup/cleanup_config.yaml
  $PROG install-systemd --daemon --config /etc/eemt-cleanup/cleanup_config.yaml
  $PROG remove && $PROG remove-systemd

Environment: cron and systemd do not pass this shell's EEMT_* variables to the program, so
they are left out of every check here too: what is installed reads only the config file.

The output is appended to LOGS/cleanup.log only where nobody else could swap that file for
a symbolic link (every directory on the way writable by root or you alone): as root, such a
link would aim root's output at any file. Otherwise install refuses and says so: use
--mail, or fix the directory's owner and mode.

Exit codes: 0 done (or nothing to do); 1 status found nothing installed, or crontab or
systemctl failed while applying; 2 bad command or option, a config that does not validate,
a bad schedule or a missing program (nothing was changed).
EOF
}

# --------------------------------------------------------------------------- messages

fail() { # fail MESSAGE: a usage, config or input error; nothing was changed
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit 2
}

usage_error() {
    fail "$1 (see '$PROG --help')"
}

fail_step() { # fail_step MESSAGE: a step of applying the change failed
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit 1
}

note() {
    printf '%s: note: %s\n' "$PROG" "$1" >&2
}

dry() { ((DRY_RUN)); }

run() { # run COMMAND...: run it, or with --dry-run print it
    if dry; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

show_file() { # show_file PATH CONTENT_FILE: what --dry-run would write
    printf '+ write %q:\n' "$1"
    sed 's/^/    | /' -- "$2"
}

# --------------------------------------------------------------------------- options

COMMAND=''
CONFIG_OPTION=''
SCHEDULE_OPTION=''
BIN_OPTION=''
LOCK_OPTION=''
UNIT_DIR_OPTION=''
MODE=''
MAIL=0
DAEMON=0
FORCE=0
DRY_RUN=0
ZONE=() # --timezone for eemt-cleanup schedule: cron fires in the system's zone
SCHEDULE_REPORT=''

set_value() { # set_value OPTION VALUE
    [[ -n $2 ]] || usage_error "$1: needs a value, got an empty one"
    case $1 in
        -c | --config) CONFIG_OPTION=$2 ;;
        --schedule) SCHEDULE_OPTION=$2 ;;
        --bin) BIN_OPTION=$2 ;;
        --lock-file) LOCK_OPTION=$2 ;;
        --unit-dir) UNIT_DIR_OPTION=$2 ;;
    esac
}

set_mode() {
    [[ -z $MODE || $MODE == "$1" ]] || usage_error "--user and --system exclude each other"
    MODE=$1
}

parse_options() {
    while (($#)); do
        case $1 in
            -h | --help)
                usage
                exit 0
                ;;
            -n | --dry-run) DRY_RUN=1 ;;
            --mail) MAIL=1 ;;
            --daemon) DAEMON=1 ;;
            --force) FORCE=1 ;;
            --user) set_mode user ;;
            --system) set_mode system ;;
            -c | --config | --schedule | --bin | --lock-file | --unit-dir)
                (($# >= 2)) || usage_error "$1: needs a value"
                set_value "$1" "$2"
                shift
                ;;
            --config=* | --schedule=* | --bin=* | --lock-file=* | --unit-dir=*)
                set_value "${1%%=*}" "${1#*=}"
                ;;
            -*) usage_error "unknown option: $1" ;;
            *)
                [[ -z $COMMAND ]] || usage_error "one command at a time, got '$COMMAND' and '$1'"
                COMMAND=$1
                ;;
        esac
        shift
    done
    [[ -n $COMMAND ]] || usage_error "no command given"
    case $COMMAND in
        install | status | remove | install-systemd | remove-systemd) ;;
        *) usage_error "unknown command: $COMMAND" ;;
    esac
    only_for "$MAIL" --mail install
    [[ -z $LOCK_OPTION ]] || only_for 1 --lock-file install
    only_for "$DAEMON" --daemon install-systemd remove-systemd
    only_for "$FORCE" --force install-systemd remove-systemd
    [[ -z $SCHEDULE_OPTION ]] || only_for 1 --schedule install install-systemd
    [[ -z $MODE ]] || only_for 1 "--$MODE" install-systemd remove-systemd status
    [[ -z $UNIT_DIR_OPTION ]] || only_for 1 --unit-dir install-systemd remove-systemd status
}

only_for() { # only_for GIVEN OPTION COMMAND...: refuse OPTION with any other command
    local given=$1 option=$2 command
    shift 2
    ((given)) || return 0
    for command in "$@"; do
        [[ $COMMAND == "$command" ]] && return 0
    done
    local commands="$*"
    usage_error "$option applies to ${commands// / and } only, not to $COMMAND"
}

# --------------------------------------------------------------------------- paths

absolute() { # absolute PATH: made absolute against the working directory, links kept
    realpath -m -s -- "$1"
}

check_path() { # check_path WHAT PATH
    [[ $2 =~ $SAFE_PATH ]] || fail "$1: $2 holds characters this script does not write into \
a crontab line or a unit (allowed: letters, digits, space and ._+,:@=/-)"
}

word() { # word PATH: PATH as one shell word (single quotes only when needed)
    if [[ $1 =~ $BARE_WORD ]]; then printf '%s' "$1"; else printf "'%s'" "$1"; fi
}

unit_word() { # unit_word PATH: PATH as one ExecStart= word
    if [[ $1 =~ $BARE_WORD ]]; then printf '%s' "$1"; else printf '"%s"' "$1"; fi
}

need() { # need PROGRAM PACKAGE
    command -v -- "$1" >/dev/null || fail "$1 not found (install the package $2)"
}

resolve_bin() {
    local candidate=$BIN_OPTION
    if [[ -z $candidate ]]; then
        candidate=$(command -v eemt-cleanup || true)
        [[ -n $candidate ]] || candidate=$TEMPLATE_BIN
    fi
    [[ -f $candidate && -x $candidate ]] || fail "the program $candidate is missing or not \
executable: install eemt-cleanup (README.md, \"Installing for production\") or give --bin PATH"
    BIN=$(absolute "$candidate")
    check_path --bin "$BIN"
}

resolve_config() {
    local candidate=$CONFIG_OPTION from=--config
    if [[ -z $candidate ]]; then
        if [[ -n ${EEMT_CLEANUP_CONFIG:-} ]]; then
            candidate=$EEMT_CLEANUP_CONFIG from=EEMT_CLEANUP_CONFIG
        elif [[ -f ./cleanup_config.yaml ]]; then
            candidate=./cleanup_config.yaml
        elif [[ -f $TEMPLATE_CONFIG ]]; then
            candidate=$TEMPLATE_CONFIG
        else
            fail "no config file: give --config PATH (looked at \$EEMT_CLEANUP_CONFIG, \
./cleanup_config.yaml and $TEMPLATE_CONFIG); the schedule names it by its absolute path"
        fi
    fi
    [[ -f $candidate ]] || fail "$from: no such file: $candidate"
    CONFIG=$(absolute "$candidate")
    check_path --config "$CONFIG"
}

# --------------------------------------------------------------------------- the program

cli() { # cli ARGS...: the program from /, without this shell's EEMT_* variables
    local -a unset_env=()
    local name
    while IFS= read -r name; do
        [[ $name == EEMT_* ]] && unset_env+=(-u "$name")
    done < <(compgen -e)
    (cd / && env "${unset_env[@]}" "$BIN" "$@")
}

note_environment() {
    local -a names=()
    local name
    while IFS= read -r name; do
        [[ $name == EEMT_* ]] && names+=("$name")
    done < <(compgen -e)
    ((${#names[@]} == 0)) || note "not passed on (cron and systemd do not see this shell's \
environment; the schedule reads only $CONFIG): ${names[*]}"
}

validate_config() { # the config validates; CONFIG_JSON holds its effective values
    local output
    if ! output=$(cli config validate "$CONFIG" 2>&1); then
        [[ -z $output ]] || printf '%s\n' "$output" >&2
        fail "the config does not validate: $CONFIG (nothing was changed)"
    fi
    # Valid, but worth knowing (a database not created yet...).
    printf '%s\n' "$output" | grep '^warning: ' >&2 || true
    if ! CONFIG_JSON=$(cli config show --config "$CONFIG" --json 2>"$WORK/show.err"); then
        cat "$WORK/show.err" >&2
        fail "eemt-cleanup config show failed for $CONFIG"
    fi
    note_environment
}

config_value() { # config_value KEY: the effective value of KEY ('' when absent)
    local pattern value
    pattern='"key": *"'${1//./\\.}'", *"value": *("(([^"\\]|\\.)*)"|[A-Za-z0-9.+-]+)'
    [[ $CONFIG_JSON =~ $pattern ]] || return 0
    value=${BASH_REMATCH[1]}
    if [[ $value == \"* ]]; then
        value=${BASH_REMATCH[2]}
        [[ $value != *\\* ]] || fail "$1 of $CONFIG holds characters this script does not \
write into a crontab line or a unit (non-ASCII, quotes or control characters)"
    fi
    printf '%s' "$value"
}

# --------------------------------------------------------------------------- the schedule

resolve_schedule() { # SCHEDULE: --schedule, else schedule.cron, else the default; checked
    local expression=$SCHEDULE_OPTION from=--schedule
    if [[ -z $expression ]]; then
        expression=$(config_value schedule.cron)
        from="schedule.cron of $CONFIG"
        [[ -n $expression ]] || expression=$DEFAULT_SCHEDULE
    fi
    local -a fields
    read -r -a fields <<<"$expression"
    SCHEDULE=${fields[*]}
    ((${#fields[@]} == 5)) || fail "$from: a cron expression has 5 fields (minute hour \
day-of-month month day-of-week), got ${#fields[@]}: '$expression'"
    local field
    for field in "${fields[@]}"; do
        [[ $field =~ ^$CRON_ITEM(,$CRON_ITEM)*$ ]] || fail "$from: '$field' is not a cron \
field both cron and eemt-cleanup read (numbers, names, *, ranges a-b, lists a,b, steps /n): \
'$expression'"
    done
    # Its next fire times are kept for the report: one start of the program less.
    if ! SCHEDULE_REPORT=$(cli schedule --config "$CONFIG" --cron "$SCHEDULE" --count 3 \
        "${ZONE[@]}" 2>&1); then
        [[ -z $SCHEDULE_REPORT ]] || printf '%s\n' "$SCHEDULE_REPORT" >&2
        fail "$from: eemt-cleanup schedule refused '$SCHEDULE'"
    fi
}

next_runs() { # next_runs CONFIG [SCHEDULE]: the next fire times, indented
    local -a arguments=(schedule --config "$1" --count 3 "${ZONE[@]}")
    [[ -z ${2:-} ]] || arguments+=(--cron "$2")
    local output='eemt-cleanup not found'
    if [[ -n ${2:-} && ${2:-} == "${SCHEDULE:-}" && -n $SCHEDULE_REPORT ]]; then
        output=$SCHEDULE_REPORT # checked a moment ago
        printf '  next runs:\n'
        printf '%s\n' "$output" | sed 's/^/    /'
    elif [[ -n ${BIN:-} ]] && output=$(cli "${arguments[@]}" 2>&1); then
        printf '  next runs:\n'
        printf '%s\n' "$output" | sed 's/^/    /'
    else
        printf '  next runs: unknown (%s)\n' "$(printf '%s\n' "$output" | head -n 1)"
    fi
}

field_number() { # field_number TOKEN NAMES FIRST: a number, or a name's place in NAMES
    local token=${1,,} index=$3 name
    if [[ $token =~ ^[0-9]+$ ]]; then
        printf '%d' "$((10#$token))"
        return 0
    fi
    for name in $2; do
        if [[ $name == "$token" ]]; then
            printf '%d' "$index"
            return 0
        fi
        index=$((index + 1))
    done
    return 1
}

expand_field() { # expand_field FIELD LOW HIGH NAMES FIRST: EXPANDED = the values it matches
    local field=$1 low=$2 high=$3 item range step start end value
    local -a items seen=()
    IFS=, read -r -a items <<<"$field"
    for item in "${items[@]}"; do
        range=${item%%/*} step=1
        [[ $item != */* ]] || step=$((10#${item#*/}))
        ((step > 0)) || return 1
        if [[ $range == '*' ]]; then
            start=$low end=$high
        elif [[ $range == *-* ]]; then
            start=$(field_number "${range%%-*}" "$4" "$5") || return 1
            end=$(field_number "${range#*-}" "$4" "$5") || return 1
        else
            start=$(field_number "$range" "$4" "$5") || return 1
            end=$start
            [[ $item != */* ]] || end=$high
        fi
        ((low <= start && start <= end && end <= high)) || return 1
        for ((value = start; value <= end; value += step)); do
            seen[value]=1
        done
    done
    EXPANDED=("${!seen[@]}")
}

join_numbers() { # join_numbers LOW HIGH: EXPANDED as systemd writes it (* when it is all)
    if ((${#EXPANDED[@]} == $2 - $1 + 1)); then
        printf '*'
        return 0
    fi
    join_runs '%02d' "${EXPANDED[@]}"
}

join_runs() { # join_runs FORMAT VALUE...: ascending values as a,b,c..d (runs of 3 or more)
    local format=$1 separator='' start end value
    shift
    while (($#)); do
        start=$1 end=$1
        shift
        while (($#)) && (($1 == end + 1)); do
            end=$1
            shift
        done
        if ((end - start >= 2)); then
            # shellcheck disable=SC2059 # the format is this script's own
            printf "%s$format..$format" "$separator" "$start" "$end"
        else
            for ((value = start; value <= end; value++)); do
                # shellcheck disable=SC2059
                printf "%s$format" "$separator" "$value"
                separator=,
            done
        fi
        separator=,
    done
}

on_calendar() { # ON_CALENDAR: SCHEDULE as OnCalendar= values (cron's rules, systemd's words)
    local zone
    zone=$(config_value schedule.timezone)
    [[ $zone != local && $zone != null ]] || zone=''
    local -a fields lines weekday_seen=()
    local -a names=(Sun Mon Tue Wed Thu Fri Sat)
    local minute hour day month weekdays='' value
    read -r -a fields <<<"$SCHEDULE"
    expand_field "${fields[0]}" 0 59 '' 0 || untranslatable "${fields[0]}"
    minute=$(join_numbers 0 59)
    expand_field "${fields[1]}" 0 23 '' 0 || untranslatable "${fields[1]}"
    hour=$(join_numbers 0 23)
    expand_field "${fields[2]}" 1 31 '' 1 || untranslatable "${fields[2]}"
    day=$(join_numbers 1 31)
    expand_field "${fields[3]}" 1 12 'jan feb mar apr may jun jul aug sep oct nov dec' 1 ||
        untranslatable "${fields[3]}"
    month=$(join_numbers 1 12)
    expand_field "${fields[4]}" 0 7 'sun mon tue wed thu fri sat' 0 || untranslatable "${fields[4]}"
    for value in "${EXPANDED[@]}"; do
        weekday_seen[value % 7]=1
    done
    if ((${#weekday_seen[@]} < 7)); then
        weekdays=$(join_runs '%s' "${!weekday_seen[@]}")
        for value in 6 5 4 3 2 1 0; do # 0 -> Sun ... 6 -> Sat
            weekdays=${weekdays//$value/${names[value]}}
        done
    fi
    local time="$hour:$minute:00"
    if [[ ${fields[2]} == \** || ${fields[4]} == \** ]]; then
        # A day field that starts with * narrows the other one (both must match).
        lines=("${weekdays:+$weekdays }*-$month-$day $time")
    elif [[ -z $weekdays || $day == '*' ]]; then
        lines=("*-$month-* $time") # either field matching is enough, and one matches every day
    else
        # Both restricted: cron fires on a day that matches either; systemd ANDs the parts of
        # one OnCalendar=, so that is two of them.
        lines=("*-$month-$day $time" "$weekdays *-$month-* $time")
    fi
    ON_CALENDAR=()
    for value in "${lines[@]}"; do
        ON_CALENDAR+=("$value${zone:+ $zone}")
    done
}

untranslatable() {
    fail "--schedule: cannot write '$1' of '$SCHEDULE' as a systemd OnCalendar= value"
}

# --------------------------------------------------------------------------- cron

read_crontab() { # read_crontab FILE: the current table into FILE (empty when there is none)
    if ! crontab -l >"$1" 2>"$WORK/crontab.err"; then
        if grep -qi 'no crontab' "$WORK/crontab.err"; then
            : >"$1"
        else
            cat "$WORK/crontab.err" >&2
            fail_step "crontab -l failed"
        fi
    fi
}

rewrite_crontab() { # rewrite_crontab OLD NEW LINE: NEW = OLD with the marked line LINE
    # (in place of the first marked line, or at the end; LINE empty: marked lines dropped)
    NEW_LINE=$3 MARKER=$MARKER LC_ALL=C awk '
        BEGIN { line = ENVIRON["NEW_LINE"]; marker = ENVIRON["MARKER"] }
        {
            text = $0
            sub(/[ \t\r]+$/, "", text)
            if (length(text) >= length(marker) &&
                substr(text, length(text) - length(marker) + 1) == marker) {
                if (!done && line != "") print line
                done = 1
                next
            }
            print
        }
        END { if (!done && line != "") print line }
    ' "$1" >"$2"
}

marked_lines() { # marked_lines FILE: the lines this script wrote
    MARKER=$MARKER LC_ALL=C awk '
        BEGIN { marker = ENVIRON["MARKER"] }
        {
            text = $0
            sub(/[ \t\r]+$/, "", text)
            if (length(text) >= length(marker) &&
                substr(text, length(text) - length(marker) + 1) == marker) print
        }
    ' "$1"
}

install_crontab() { # install_crontab FILE
    if dry; then
        show_file "the crontab of $(id -un)" "$1"
        run crontab "$1"
    else
        crontab "$1" || fail_step "crontab refused the new table (it was not changed)"
    fi
}

trusted_entry() { # trusted_entry DIR NAME: only root or we could have put DIR/NAME there
    [[ -d $1 ]] || return 0 # created by this script
    local owner group mode entry_owner
    read -r owner group mode < <(stat -c '%u %g %a' -- "$1")
    mode=$((8#$mode))
    if [[ $owner == 0 || $owner == "$EUID" ]] &&
        ! ((mode & 8#002)) && { ! ((mode & 8#020)) || [[ $group == 0 ]]; }; then
        return 0
    fi
    # A sticky directory (such as /tmp): others may not rename or remove what is ours.
    if ((mode & 8#1000)) && [[ -e $1/$2 || -L $1/$2 ]]; then
        entry_owner=$(stat -c '%u' -- "$1/$2")
        [[ $entry_owner == 0 || $entry_owner == "$EUID" ]] && return 0
    fi
    return 1
}

check_trusted() { # check_trusted PATH: every entry on the way, symlinks followed, is trusted
    local -a pending rest
    local current=/ name candidate target followed=0
    IFS=/ read -r -a pending <<<"${1#/}"
    while ((${#pending[@]})); do
        name=${pending[0]}
        pending=("${pending[@]:1}")
        [[ -n $name && $name != . ]] || continue
        if [[ $name == .. ]]; then
            current=$(dirname -- "$current")
            continue
        fi
        candidate=${current%/}/$name
        trusted_entry "$current" "$name" || fail "refusing to append cron's output to $1: \
$current can be written by a user other than root or you, who could put a symbolic link at \
$candidate and so aim the output at any file; use --mail, or make $current owned by root (or \
you) and writable by its owner alone"
        if [[ -L $candidate ]]; then
            followed=$((followed + 1))
            ((followed <= 40)) || fail "$1: too many levels of symbolic links"
            target=$(readlink -- "$candidate")
            [[ $target == /* ]] || target=${current%/}/$target
            IFS=/ read -r -a rest <<<"${target#/}"
            pending=("${rest[@]}" "${pending[@]}")
            current=/
            continue
        fi
        current=$candidate
    done
}

cron_line() { # NEW_LINE: the crontab line for SCHEDULE, LOCK_FILE, BIN and CONFIG
    local flock_path
    flock_path=$(command -v flock)
    local command
    command="$(word "$flock_path") -n $(word "$LOCK_FILE") $(word "$BIN") run --config \
$(word "$CONFIG") --quiet --trigger cron"
    if ((MAIL)); then
        NEW_LINE="$SCHEDULE $command $MARKER"
    else
        # umask: a log file the shell creates gets the program's own mode (0640), not cron's.
        NEW_LINE="$SCHEDULE umask 027; $command >> $(word "$LOG_FILE") 2>&1 $MARKER"
    fi
}

cmd_install() {
    need crontab cron
    need flock util-linux
    ZONE=(--timezone local)
    resolve_bin
    resolve_config
    validate_config
    resolve_schedule
    if [[ -n $LOCK_OPTION ]]; then
        LOCK_FILE=$(absolute "$LOCK_OPTION")
    elif ((EUID == 0)); then
        LOCK_FILE=/run/eemt-cleanup.cron.lock
    else
        LOCK_FILE=$HOME/.eemt-cleanup.cron.lock
    fi
    check_path --lock-file "$LOCK_FILE"
    local zone
    zone=$(config_value schedule.timezone)
    [[ -z $zone || $zone == local || $zone == null ]] || note "schedule.timezone is $zone, \
but cron fires in the system's time zone: install-systemd or the daemon honour it"
    [[ $(config_value schedule.enabled) != false ]] || note "schedule.enabled is false in \
$CONFIG: that switch is the daemon's; this crontab line runs regardless"
    if ! ((MAIL)); then
        local logs
        logs=$(config_value paths.logs)
        [[ -n $logs ]] || fail "paths.logs is missing from 'eemt-cleanup config show --json'"
        check_path paths.logs "$logs"
        LOG_FILE=${logs%/}/cleanup.log
        check_trusted "$LOG_FILE"
        [[ ! -e $LOG_FILE || -f $LOG_FILE ]] || fail "$LOG_FILE is not a regular file"
    fi
    cron_line

    read_crontab "$WORK/old"
    rewrite_crontab "$WORK/old" "$WORK/new" "$NEW_LINE"
    # The redirection needs the directory before the program (which would create it) starts.
    if ! ((MAIL)) && [[ ! -d ${LOG_FILE%/*} ]]; then
        run mkdir -p -m 0750 -- "${LOG_FILE%/*}"
    fi
    if cmp -s "$WORK/old" "$WORK/new"; then
        printf 'already installed, unchanged, in the crontab of %s:\n  %s\n' "$(id -un)" "$NEW_LINE"
    else
        install_crontab "$WORK/new"
        if dry; then
            printf 'would install in the crontab of %s:\n  %s\n' "$(id -un)" "$NEW_LINE"
        else
            printf 'installed in the crontab of %s:\n  %s\n' "$(id -un)" "$NEW_LINE"
        fi
    fi
    next_runs "$CONFIG" "$SCHEDULE"
}

cmd_remove() {
    need crontab cron
    read_crontab "$WORK/old"
    local lines
    lines=$(marked_lines "$WORK/old")
    if [[ -z $lines ]]; then
        printf 'no eemt-cleanup line in the crontab of %s: nothing to remove\n' "$(id -un)"
        return 0
    fi
    rewrite_crontab "$WORK/old" "$WORK/new" ''
    install_crontab "$WORK/new"
    if dry; then
        printf 'would remove from the crontab of %s:\n' "$(id -un)"
    else
        printf 'removed from the crontab of %s:\n' "$(id -un)"
    fi
    printf '%s\n' "$lines" | sed 's/^/  /'
}

# --------------------------------------------------------------------------- systemd

resolve_units() { # SCOPE (systemctl's --user or nothing) and UNIT_DIR
    [[ -n $MODE ]] || { if ((EUID == 0)); then MODE=system; else MODE=user; fi; }
    if [[ $MODE == user ]]; then
        SCOPE=(--user)
        UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
    else
        SCOPE=()
        UNIT_DIR=/etc/systemd/system
    fi
    [[ -z $UNIT_DIR_OPTION ]] || UNIT_DIR=$(absolute "$UNIT_DIR_OPTION")
}

ours() { # ours UNIT_FILE: written by this script
    local first
    IFS= read -r first <"$1" || true
    [[ $first == "$UNIT_MARKER"* ]]
}

render_unit() { # render_unit NAME: deploy/systemd/NAME with this machine's values, on stdout
    local template=$TEMPLATES/$1 line calendar_done=0 value
    [[ -f $template ]] || fail "the template $template is missing: run this script from the \
eemt-cleanup checkout"
    printf '%s from deploy/systemd/%s; remove-systemd removes it.\n' "$UNIT_MARKER" "$1"
    printf '# Program %s, config %s. The next install-systemd replaces edits made here.\n' \
        "$BIN" "$CONFIG"
    while IFS= read -r line || [[ -n $line ]]; do
        case $line in
            ExecStart=*)
                [[ $line == *"$TEMPLATE_BIN "*"--config $TEMPLATE_CONFIG"* ]] || fail "$template: \
ExecStart= no longer names $TEMPLATE_BIN and --config $TEMPLATE_CONFIG"
                line=${line//"$TEMPLATE_BIN"/$(unit_word "$BIN")}
                line=${line//"$TEMPLATE_CONFIG"/$(unit_word "$CONFIG")}
                if ((DAEMON)) && [[ -n $SCHEDULE_OPTION ]]; then
                    line+=" --cron \"$SCHEDULE\""
                fi
                ;;
            OnCalendar=*)
                ((calendar_done)) && continue
                calendar_done=1
                for value in "${ON_CALENDAR[@]}"; do
                    printf 'OnCalendar=%s\n' "$value"
                done
                continue
                ;;
            WantedBy=multi-user.target)
                [[ $MODE != user ]] || line=WantedBy=default.target
                ;;
        esac
        printf '%s\n' "$line"
    done <"$template"
}

write_unit() { # write_unit NAME RENDERED: 0 when it changed the file, 1 when unchanged
    local target=$UNIT_DIR/$1 temporary
    if [[ -e $target || -L $target ]]; then
        if [[ -f $target ]] && cmp -s "$2" "$target"; then
            printf 'unchanged: %s\n' "$target"
            return 1
        fi
    fi
    if dry; then
        show_file "$target" "$2"
        return 0
    fi
    temporary=$(mktemp "$UNIT_DIR/.$1.XXXXXX")
    cat "$2" >"$temporary"
    chmod 0644 "$temporary"
    mv -f -- "$temporary" "$target"
    printf 'wrote %s\n' "$target"
}

check_replaceable() { # check_replaceable NAME: a unit file there is ours, or --force
    local target=$UNIT_DIR/$1
    [[ -e $target || -L $target ]] || return 0
    ((FORCE)) && return 0
    [[ -f $target ]] && ours "$target" && return 0
    fail "$target exists and was not written by this script: remove it, or give --force \
to $2 it"
}

systemctl_step() { # systemctl_step ARGS...: systemctl [--user] ARGS, or the failure
    if dry; then
        run systemctl "${SCOPE[@]}" "$@"
    else
        systemctl "${SCOPE[@]}" "$@" || fail_step "systemctl ${SCOPE[*]:+${SCOPE[*]} }$* failed"
    fi
}

cmd_install_systemd() {
    need systemctl systemd
    resolve_bin
    resolve_config
    validate_config
    resolve_units
    local -a units
    local main other
    if ((DAEMON)); then
        units=("$DAEMON_UNIT")
        main=$DAEMON_UNIT
        other=eemt-cleanup.timer
        [[ -z $SCHEDULE_OPTION ]] || resolve_schedule
        [[ $(config_value schedule.enabled) != false ]] || note "schedule.enabled is false in \
$CONFIG: the daemon will not start scheduled runs"
    else
        units=("${TIMER_UNITS[@]}")
        main=eemt-cleanup.timer
        other=$DAEMON_UNIT
        resolve_schedule
        on_calendar
    fi
    local unit
    for unit in "${units[@]}"; do
        check_replaceable "$unit" replace
        render_unit "$unit" >"$WORK/$unit"
    done
    [[ ! -e $UNIT_DIR/$other ]] || note "$UNIT_DIR/$other is installed too: both would start \
cleanups (the run lock keeps them apart): remove-systemd removes the timer pair, \
remove-systemd --daemon the daemon"
    [[ -d $UNIT_DIR ]] || run mkdir -p -- "$UNIT_DIR"
    local existed=0 changed=0
    [[ ! -e $UNIT_DIR/$main ]] || existed=1
    for unit in "${units[@]}"; do
        if write_unit "$unit" "$WORK/$unit"; then changed=1; fi
    done
    systemctl_step daemon-reload
    systemctl_step enable --now "$main"
    if ((DAEMON && existed && changed)); then
        systemctl_step try-restart "$main" # a running daemon starts again with the new unit
    fi
    local verb=enabled
    dry && verb="would enable"
    if ((DAEMON)); then
        printf '%s %s: eemt-cleanup daemon, config %s\n' "$verb" "$main" "$CONFIG"
        next_runs "$CONFIG" "${SCHEDULE_OPTION:+$SCHEDULE}"
    else
        printf '%s %s:\n' "$verb" "$main"
        printf '  OnCalendar=%s\n' "${ON_CALENDAR[@]}"
        next_runs "$CONFIG" "$SCHEDULE"
    fi
}

cmd_remove_systemd() {
    resolve_units
    local -a units present=()
    local main unit
    if ((DAEMON)); then
        units=("$DAEMON_UNIT")
        main=$DAEMON_UNIT
    else
        units=(eemt-cleanup.timer eemt-cleanup.service)
        main=eemt-cleanup.timer
    fi
    for unit in "${units[@]}"; do
        if [[ -e $UNIT_DIR/$unit || -L $UNIT_DIR/$unit ]]; then
            check_replaceable "$unit" remove
            present+=("$unit")
        fi
    done
    if ((${#present[@]} == 0)); then
        printf 'no %s in %s: nothing to remove\n' "${units[*]}" "$UNIT_DIR"
        return 0
    fi
    need systemctl systemd
    [[ ! -e $UNIT_DIR/$main ]] || systemctl_step disable --now "$main"
    for unit in "${present[@]}"; do
        run rm -f -- "$UNIT_DIR/$unit"
        dry || printf 'removed %s\n' "$UNIT_DIR/$unit"
    done
    systemctl_step daemon-reload
}

# --------------------------------------------------------------------------- status

cmd_status() {
    local found=0 line config schedule pattern
    local -a fields
    BIN=''
    # Without the program the state is still shown, only not the next fire times.
    if (resolve_bin) 2>/dev/null; then resolve_bin; fi
    if command -v crontab >/dev/null; then
        read_crontab "$WORK/old"
        line=$(marked_lines "$WORK/old" | head -n 1)
        if [[ -n $line ]]; then
            found=1
            printf 'cron: installed in the crontab of %s:\n  %s\n' "$(id -un)" "$line"
            read -r -a fields <<<"$line"
            schedule=${fields[*]:0:5}
            pattern="--config ('([^']*)'|([^ ]+))"
            if [[ $line =~ $pattern ]]; then
                config=${BASH_REMATCH[2]:-${BASH_REMATCH[3]}}
                ZONE=(--timezone local)
                next_runs "$config" "$schedule"
                ZONE=()
            fi
        else
            printf 'cron: no eemt-cleanup line in the crontab of %s\n' "$(id -un)"
        fi
    else
        printf 'cron: crontab not found (package cron)\n'
    fi
    resolve_units
    local unit state answer
    for unit in eemt-cleanup.timer eemt-cleanup.service "$DAEMON_UNIT"; do
        [[ -e $UNIT_DIR/$unit ]] || continue
        found=1
        if ours "$UNIT_DIR/$unit"; then state='written by this script'; else
            state='not written by this script'
        fi
        printf 'systemd: %s (%s)\n' "$UNIT_DIR/$unit" "$state"
        if [[ $unit != eemt-cleanup.service ]] && command -v systemctl >/dev/null; then
            for state in is-enabled is-active; do
                answer=$(systemctl "${SCOPE[@]}" "$state" "$unit" 2>&1 | head -n 1) || true
                printf '  %s: %s\n' "${state#is-}" "${answer:-unknown}"
            done
        fi
        if [[ $unit == eemt-cleanup.timer ]]; then
            sed -n 's/^OnCalendar=/  OnCalendar=/p' -- "$UNIT_DIR/$unit"
        elif [[ $unit == "$DAEMON_UNIT" ]]; then
            pattern='--config ("([^"]*)"|([^ ]+))'
            if [[ $(grep -m 1 '^ExecStart=' -- "$UNIT_DIR/$unit") =~ $pattern ]]; then
                next_runs "${BASH_REMATCH[2]:-${BASH_REMATCH[3]}}"
            fi
        fi
    done
    if ((!found)); then
        printf 'nothing installed (no crontab line, no units in %s)\n' "$UNIT_DIR"
        return 1
    fi
}

# --------------------------------------------------------------------------- main

main() {
    parse_options "$@"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/setup_cleanup_cron.XXXXXX")
    trap 'rm -rf -- "$WORK"' EXIT
    case $COMMAND in
        install) cmd_install ;;
        status) cmd_status ;;
        remove) cmd_remove ;;
        install-systemd) cmd_install_systemd ;;
        remove-systemd) cmd_remove_systemd ;;
    esac
}

main "$@"
