#!/usr/bin/env bash
# The demo in a real X window (Xvfb, 1280x800): run it a few seconds, save docs/screenshot.png.
#
# Installs nothing. Needs Xvfb (Debian package `xvfb`) and the libraries Qt's xcb
# platform plugin loads; on Debian 12 with PySide6 6.10 those missing from a slim
# system were `libxcb-icccm4 libxcb-keysyms1` (QT_DEBUG_PLUGINS=1 names the real
# culprit; Qt's own message blames libxcb-cursor0).
#
#   scripts/screenshot.sh [--tab dashboard|stories|flow] [--theme light|dark|system] [--scale F]
#                         [--stand-in [--stages 1|3]] [--scenario NAME-or-FILE] [--window 60|300|900|3600]
#                         [--wip-limit N [--wip-after S]] [--measure lead|cycle] [OUTPUT.png]
#       (SCREENSHOT_SECONDS=25 by default)
#   scripts/screenshot.sh --tab flow docs/flow.png      the Flow tab under the demo's load
#   scripts/screenshot.sh --theme dark --scale 2 out.png  dark, at 200 % (QT_SCALE_FACTOR; a screen twice as big)
#
# --stand-in shows the app on tools/standin.py (a queueing model of a team behind
# the protocol) instead of a server and the simulator: for checking a layout
# with figures a server does not send yet; `--stages 3` gives it three stages (analysis, build,
# test, test short of people). --scenario runs the demo's server and simulator on a scenario.
# --window is the charts' time window (1 min by default, so a short run fills it). --wip-limit
# sets the server's WIP limit (`storypulse flow --wip-limit`) as soon as it answers, or S seconds
# after the start with --wip-after: a chart shows the flow before the limit and after it. --measure
# cycle has the Flow tab's time chart show cycle time instead of lead time.
#   SCREENSHOT_SECONDS=270 scripts/screenshot.sh --tab flow --scenario bottleneck --window 300 \
#       --wip-limit 8 --wip-after 170 --measure cycle docs/flow.png
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TAB=dashboard
THEME=light
SCALE=1
STAND_IN=""
STAGES=1
SCENARIO=()
WINDOW=60
WIP_LIMIT=""
WIP_AFTER=0
MEASURE=lead
while [ $# -gt 0 ]; do
    case "$1" in
        --tab) TAB=$2; shift 2 ;;
        --theme) THEME=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --stand-in) STAND_IN=1; shift ;;
        --stages) STAGES=$2; shift 2 ;;
        --scenario) SCENARIO=(--scenario "$2"); shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --wip-limit) WIP_LIMIT=$2; shift 2 ;;
        --wip-after) WIP_AFTER=$2; shift 2 ;;
        --measure) MEASURE=$2; shift 2 ;;
        -*) echo "screenshot.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
OUT=${1:-docs/screenshot.png}
RUN_SECONDS=${SCREENSHOT_SECONDS:-25}

command -v Xvfb >/dev/null || { echo "screenshot.sh: needs Xvfb (Debian package xvfb)" >&2; exit 1; }

# The window is 1280x800 in device-independent pixels: the screen grows with the scale.
screen=$("$PYTHON" -c "import sys; s = float(sys.argv[1]); assert 0.5 <= s <= 4, 'scale: 0.5-4'; \
print(f'{round(1280 * s)}x{round(800 * s)}')" "$SCALE") || { echo "screenshot.sh: bad --scale $SCALE" >&2; exit 2; }
work=$(mktemp -d)
# Xvfb picks a free display number itself and writes it to a file (-displayfd): two runs at
# once never race for the same one.
exec 3>"$work/display"
Xvfb -displayfd 3 -screen 0 "${screen}x24" -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb=$!
exec 3>&-
case "$WINDOW" in 60|300|900|3600) ;; *) echo "screenshot.sh: --window is 60, 300, 900 or 3600" >&2; exit 2 ;; esac
case "$MEASURE" in lead|cycle) ;; *) echo "screenshot.sh: --measure is lead or cycle" >&2; exit 2 ;; esac
stand_in=""
wip_setter=""
cleanup() {
    for job in $stand_in $wip_setter; do kill "$job" 2>/dev/null || true; wait "$job" 2>/dev/null || true; done
    kill "$xvfb" 2>/dev/null || true; wait "$xvfb" 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
number=$(tr -dc 0-9 <"$work/display")
[ -n "$number" ] || { cat "$work/xvfb.log" >&2; echo "screenshot.sh: Xvfb did not start" >&2; exit 1; }

# A fresh server on free ports with its own database, and settings that show the
# window asked for (one minute unless told: a short run already fills the charts).
port=$("$PYTHON" - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000)
    try:
        socks = [socket.socket() for _ in range(3)]
        for i, s in enumerate(socks):
            s.bind(("127.0.0.1", base + i))
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY
)
# The Flow tab's time chart shows lead or cycle time (--measure).
printf '[dashboard]\nwindow_s=%s\n[view]\nflow_measure=%s\n' "$WINDOW" "$MEASURE" >"$work/settings.ini"

if [ -n "$WIP_LIMIT" ]; then
    # The limit by a client of its own, like a team lead changing it: the charts mark the change.
    (
        sleep "$WIP_AFTER"
        for _ in $(seq 150); do
            "$PYTHON" -m storypulse flow --server "127.0.0.1:$port" --timeout 1 --wip-limit "$WIP_LIMIT" \
                >/dev/null 2>&1 && exit 0
            sleep 0.2
        done
        echo "screenshot.sh: the server took no WIP limit" >&2
    ) &
    wip_setter=$!
fi

mkdir -p "$(dirname "$OUT")"
if [ -n "$STAND_IN" ]; then
    "$PYTHON" tools/standin.py --port "$port" --stages "$STAGES" &
    stand_in=$!
    DISPLAY=":$number" QT_QPA_PLATFORM=xcb QT_SCALE_FACTOR="$SCALE" "$PYTHON" -m storypulse desktop \
        --server "127.0.0.1:$port" --settings "$work/settings.ini" --tab "$TAB" --theme "$THEME" \
        --quit-after "$RUN_SECONDS" --screenshot "$OUT"
else
    DISPLAY=":$number" QT_QPA_PLATFORM=xcb QT_SCALE_FACTOR="$SCALE" "$PYTHON" -m storypulse demo \
        --port "$port" --db "$work/demo.db" --settings "$work/settings.ini" --tab "$TAB" --theme "$THEME" \
        ${SCENARIO[@]+"${SCENARIO[@]}"} --quit-after "$RUN_SECONDS" --screenshot "$OUT"
fi
echo "saved $OUT"
