#!/usr/bin/env bash
# Renders a Gauntlet HTML report in headless Chromium and checks that it displays: every image
# decoded, every plot rendered with a size, and a screenshot that is not blank.
#
#   bash tests/browser/check_html.sh REPORT.html [SCREENSHOT.png]
#
# Needs `chromium` (Debian: apt-get install -y chromium) or `$CHROMIUM`, and python3.
# Exits 0 when the report renders, 1 when a check fails, 2 on a usage or setup error.
set -euo pipefail

die() { echo "check_html: $*" >&2; exit "${2:-1}"; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 REPORT.html [SCREENSHOT.png]" 2
report=$1
[ -f "$report" ] || die "$report: no such file" 2
report_abs=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")

chrome=${CHROMIUM:-}
if [ -z "$chrome" ]; then
    for c in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$c" >/dev/null 2>&1; then chrome=$(command -v "$c"); break; fi
    done
fi
[ -n "$chrome" ] || die "no Chromium found: install it (apt-get install -y chromium) or set CHROMIUM" 2
command -v python3 >/dev/null 2>&1 || die "python3 is needed to check the screenshot" 2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shot=${2:-$work/screenshot.png}

# No network, no background services: the report must render from the file alone.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
    --disable-component-update --disable-sync --disable-extensions --hide-scrollbars --mute-audio
    --proxy-server=127.0.0.1:9 --virtual-time-budget=10000)

# (a) The DOM after load: the report's inline script records what rendered as attributes of <body>.
timeout 120 "$chrome" "${flags[@]}" --user-data-dir="$work/profile-dom" --dump-dom "file://$report_abs" \
    >"$work/dom.html" 2>"$work/chromium-dom.log" || {
    tail -20 "$work/chromium-dom.log" >&2
    die "chromium failed to load $report"
}
python3 - "$work/dom.html" <<'PY' || exit 1
import re, sys
dom = open(sys.argv[1], encoding="utf-8", errors="replace").read()
body = re.search(r"<body([^>]*)>", dom)
if not body:
    sys.exit("check_html: FAIL: no <body> in the rendered DOM")
attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1)))
if attrs.get("data-ready") != "1":
    sys.exit("check_html: FAIL: the report's load script did not run (no data-ready on <body>)")
n = {k: int(attrs.get(k, "0")) for k in ("data-images-total", "data-images-loaded", "data-svgs-total", "data-svgs")}
print(f"check_html: images {n['data-images-loaded']}/{n['data-images-total']} loaded, "
      f"plots {n['data-svgs']}/{n['data-svgs-total']} rendered with a size")
if n["data-images-loaded"] != n["data-images-total"]:
    sys.exit(f"check_html: FAIL: {n['data-images-total'] - n['data-images-loaded']} image(s) did not load")
if n["data-svgs-total"] == 0:
    sys.exit("check_html: FAIL: the report has no plots")
if n["data-svgs"] != n["data-svgs-total"]:
    sys.exit(f"check_html: FAIL: {n['data-svgs-total'] - n['data-svgs']} plot(s) rendered empty")
PY

# (b) A screenshot: it must exist and show more than a blank page.
timeout 120 "$chrome" "${flags[@]}" --user-data-dir="$work/profile-shot" --window-size=1280,2400 \
    --screenshot="$shot" "file://$report_abs" >"$work/chromium-shot.log" 2>&1 || {
    tail -20 "$work/chromium-shot.log" >&2
    die "chromium failed to take a screenshot of $report"
}
[ -s "$shot" ] || die "FAIL: no screenshot was written"
python3 - "$shot" <<'PY' || exit 1
# Decodes the PNG with the standard library only (8-bit RGB/RGBA, non-interlaced, as Chromium writes).
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("check_html: FAIL: the screenshot is not a PNG")
pos, idat, hdr = 8, b"", None
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    chunk = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        hdr = struct.unpack(">IIBBBBB", chunk)
    elif kind == b"IDAT":
        idat += chunk
    pos += 12 + length
w, h, depth, ctype, _, _, interlace = hdr
if depth != 8 or ctype not in (2, 6) or interlace:
    sys.exit(f"check_html: cannot read this PNG (depth {depth}, colour type {ctype}); check it by eye")
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, colours, nonwhite_rows = bytearray(stride), set(), 0
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    row = {bytes(line[i:i + 3]) for i in range(0, stride, bpp * 4)}
    colours |= row
    if any(px != b"\xff\xff\xff" and px != b"\xf8\xf9\xfa" for px in row):
        nonwhite_rows += 1
    prev = line
print(f"check_html: screenshot {w}x{h}, {len(colours)} distinct colours (sampled), "
      f"{nonwhite_rows} rows with content")
if len(colours) < 16:
    sys.exit(f"check_html: FAIL: the screenshot is blank or nearly so ({len(colours)} colours)")
if nonwhite_rows < h // 4:
    sys.exit(f"check_html: FAIL: only {nonwhite_rows} of {h} screenshot rows show anything")
PY
if [ $# -ge 2 ]; then echo "check_html: OK: $report renders (screenshot: $shot)"; else echo "check_html: OK: $report renders"; fi
